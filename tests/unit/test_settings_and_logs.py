"""Settings precedence (env over toml over defaults) and the JSON log formatter with personal-data masking."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ulid import ULID

from hub.connectors.registry import ConnectorRegistry
from hub.errors import ConfigError
from hub.ids import derived_id, new_id
from hub.logs import BOUND_KEYS, JsonFormatter, TextFormatter, bind, configure, mask_personal
from hub.settings import Settings, load_settings

# --- settings -----------------------------------------------------------------------------------

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No GASHUB_* variable from outside, and a working folder without config/gashub.toml."""
    for key in list(os.environ):
        if key.startswith("GASHUB_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


TOML = """\
log_level = "DEBUG"
database_url = "sqlite+aiosqlite:///from-toml.db"
queue_prefix = "tomlq"

[http]
host = "0.0.0.0"
port = 9000

[consumer]
prefetch = 10

[connectors.vendor]
kind = "vendor_push"
path = "/partners/from-toml"
"""


@pytest.fixture
def toml_config(env: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    path = write_config(tmp_path / "custom.toml", TOML)
    env.setenv("GASHUB_CONFIG", str(path))
    return path


def test_defaults_without_any_config(env: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert s.database_url == "sqlite+aiosqlite:///var/gashub.db"
    assert s.http.port == 8080
    assert s.http.host == "127.0.0.1"
    assert s.amqp_url is None
    assert not s.uses_broker
    assert s.ops.token is None
    assert s.connectors == {}
    assert s.routes_dir == Path("routes")


def test_the_default_config_file_is_read_from_the_working_folder(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    write_config(tmp_path / "config" / "gashub.toml", 'log_level = "ERROR"\n')
    assert load_settings().log_level == "ERROR"


def test_toml_over_defaults(toml_config: Path) -> None:
    s = load_settings()
    assert s.log_level == "DEBUG"
    assert s.database_url == "sqlite+aiosqlite:///from-toml.db"
    assert s.http.port == 9000
    assert s.http.host == "0.0.0.0"
    assert s.consumer.prefetch == 10
    # what the file does not set keeps its default, inside a section too
    assert s.consumer.max_batch == 500
    assert s.http.max_body_bytes == 1_048_576
    assert s.exchange == "gashub"


def test_env_over_toml(toml_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GASHUB_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("GASHUB_DATABASE_URL", "sqlite+aiosqlite:///from-env.db")
    monkeypatch.setenv("GASHUB_HTTP__HOST", "10.0.0.1")
    s = load_settings()
    assert s.log_level == "WARNING"
    assert s.database_url == "sqlite+aiosqlite:///from-env.db"
    assert s.http.host == "10.0.0.1"
    assert s.http.port == 9000, "a nested env var must not wipe the rest of the toml's [http] table"
    assert s.queue_prefix == "tomlq"


def test_init_arguments_over_env(env: pytest.MonkeyPatch) -> None:
    env.setenv("GASHUB_LOG_LEVEL", "WARNING")
    assert load_settings(log_level="CRITICAL").log_level == "CRITICAL"


def test_flat_http_port_beats_toml_and_nested_env(toml_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GASHUB_HTTP__PORT", "9001")
    assert load_settings().http.port == 9001
    monkeypatch.setenv("GASHUB_HTTP_PORT", "9100")
    s = load_settings()
    assert s.http.port == 9100
    assert s.http.host == "0.0.0.0"


def test_flat_http_port_out_of_range_names_the_key(env: pytest.MonkeyPatch) -> None:
    env.setenv("GASHUB_HTTP_PORT", "70000")
    with pytest.raises(ConfigError, match=r"http\.port"):
        load_settings()


def test_run_routes_held_needs_the_broker_and_says_so(env: pytest.MonkeyPatch) -> None:
    env.setenv("GASHUB_CONSUMER__RUN_ROUTES", "held")
    with pytest.raises(ConfigError, match="need RabbitMQ: set GASHUB_AMQP_URL"):
        load_settings()
    env.setenv("GASHUB_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    assert load_settings().consumer.run_routes == "held"
    env.setenv("GASHUB_CONSUMER__RUN_ROUTES", "some")
    with pytest.raises(ConfigError, match=r"consumer\.run_routes"):
        load_settings()


def test_nested_connector_secret_merges_into_the_toml_table(toml_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GASHUB_CONNECTORS__VENDOR__TOKEN", "s3cret-vendor")
    s = load_settings()
    assert s.connectors["vendor"] == {"kind": "vendor_push", "path": "/partners/from-toml", "token": "s3cret-vendor"}
    cls, connector_settings = ConnectorRegistry().settings_for("vendor", s.connectors["vendor"])
    assert cls.__name__ == "VendorPushConnector"
    assert connector_settings.token.get_secret_value() == "s3cret-vendor"  # type: ignore[attr-defined]


def test_a_connector_can_come_from_the_environment_alone(env: pytest.MonkeyPatch) -> None:
    env.setenv("GASHUB_CONNECTORS__SMS__KIND", "http_sms")
    env.setenv("GASHUB_CONNECTORS__SMS__BASE_URL", "http://127.0.0.1:1")
    assert load_settings().connectors == {"sms": {"kind": "http_sms", "base_url": "http://127.0.0.1:1"}}


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('databse_url = "x"\n', "databse_url"),
        ("[http]\nprot = 1\n", "http.prot"),
        ("[consumer]\nprefetsh = 1\n", "consumer.prefetsh"),
        ("[nonsense]\na = 1\n", "nonsense"),
    ],
)
def test_unknown_toml_key_is_a_config_error_naming_it(env: pytest.MonkeyPatch, tmp_path: Path,
                                                      toml: str, key: str) -> None:
    env.setenv("GASHUB_CONFIG", str(write_config(tmp_path / "bad.toml", toml)))
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert key in str(info.value)
    assert "Check config/*.toml and GASHUB_* environment variables" in str(info.value)


async def test_reading_rules_come_from_toml_and_env_and_reach_the_hub_s_handler(env: pytest.MonkeyPatch,
                                                                              tmp_path: Path) -> None:
    from core.readings import CustomerCategory, RuleId
    from hub.app import Hub
    from hub.routing.loader import RouteErrors

    env.setenv("GASHUB_CONFIG", str(write_config(tmp_path / "rules.toml", """\
[core.readings]
notify = ["leak"]
history_window = "P45D"

[core.readings.rules]
disabled_rules = ["zero_use"]

[core.readings.rules.spike_factors]
residential = 4
""")))
    env.setenv("GASHUB_CORE__READINGS__FLAG_EVENTS", "false")
    env.setenv("GASHUB_CORE__READINGS__RULES__LEAK_WINDOW_HOURS", "12")
    mappings = MAPPINGS
    s = load_settings(routes_dir=tmp_path / "routes", mappings_dir=mappings)
    r = s.core.readings
    assert r.notify == frozenset({RuleId.LEAK})
    assert r.history_window.days == 45
    assert r.rules.disabled_rules == frozenset({RuleId.ZERO_USE})
    assert r.rules.spike_factor(CustomerCategory.RESIDENTIAL) == 4
    assert (r.flag_events, r.rules.leak_window_hours) == (False, 12)

    # The hub builds record_reading with these settings: what it may emit decides which routes it needs.
    (tmp_path / "routes").mkdir()
    (tmp_path / "routes" / "r.toml").write_text(
        '[[route]]\nname = "readings"\nfrom = "meter.reading"\nto = "core:record_reading"\n')
    with pytest.raises(RouteErrors) as info:
        Hub.build(s)
    assert sorted(str(p).split("'")[1] for p in info.value.problems) == ["alarm.raised", "notification.requested"]
    env.setenv("GASHUB_CORE__READINGS__RAISE_ALARMS", "false")
    env.setenv("GASHUB_CORE__READINGS__NOTIFY", "[]")
    hub = Hub.build(load_settings(routes_dir=tmp_path / "routes", mappings_dir=mappings))
    try:
        (route,) = hub.routes
        assert route.core_handler is not None
        assert route.core_handler.emits == ()
    finally:
        await hub.db.aclose()


def test_reading_settings_that_cannot_work_are_a_config_error(env: pytest.MonkeyPatch) -> None:
    env.setenv("GASHUB_CORE__READINGS__HISTORY_WINDOW", "P10D")  # shorter than the 30 days of zero use
    with pytest.raises(ConfigError, match=r"core\.readings.*zero_use_period"):
        load_settings()
    env.setenv("GASHUB_CORE__READINGS__HISTORY_WINDOW", "P30D")
    env.setenv("GASHUB_CORE__READINGS__RULES__DISABLED_RULES", '["spiky"]')
    with pytest.raises(ConfigError, match=r"core\.readings\.rules\.disabled_rules"):
        load_settings()


def test_unknown_nested_env_key_is_a_config_error_naming_it(env: pytest.MonkeyPatch) -> None:
    env.setenv("GASHUB_HTTP__PROT", "1")
    with pytest.raises(ConfigError, match=r"http\.prot"):
        load_settings()


def test_unknown_argument_is_a_config_error_naming_it(env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="bogus"):
        load_settings(bogus=1)


def test_wrong_type_names_the_key_but_not_the_value(env: pytest.MonkeyPatch) -> None:
    env.setenv("GASHUB_HTTP__PORT", "hunter2-not-a-port")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "http.port" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_a_missing_explicit_config_file_is_an_error(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("GASHUB_CONFIG", str(tmp_path / "no-such.toml"))
    with pytest.raises(ConfigError, match=r"no-such\.toml"):
        load_settings()


def test_secrets_are_not_shown(toml_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GASHUB_OPS__TOKEN", "ops-t0ken-value")
    monkeypatch.setenv("GASHUB_AMQP_URL", "amqp://hub:amqp-pa55word@rabbit:5672/")
    monkeypatch.setenv("GASHUB_CONNECTORS__VENDOR__TOKEN", "vend0r-t0ken-value")
    s = load_settings()
    assert isinstance(s, Settings)
    assert s.ops.token is not None
    assert s.ops.token.get_secret_value() == "ops-t0ken-value"
    assert s.amqp_url is not None
    assert s.amqp_url.get_secret_value() == "amqp://hub:amqp-pa55word@rabbit:5672/"
    assert s.uses_broker
    for shown in (repr(s), str(s), repr(s.ops), repr(s.amqp_url)):
        assert "ops-t0ken-value" not in shown
        assert "amqp-pa55word" not in shown
        assert "vend0r-t0ken-value" not in shown


def test_redacted_database_url_hides_the_password(env: pytest.MonkeyPatch) -> None:
    env.setenv("GASHUB_DATABASE_URL", "postgresql+asyncpg://hub:db-pa55@db.example:5432/gashub")
    redacted = load_settings().redacted_database_url()
    assert "db-pa55" not in redacted
    assert "db.example" in redacted
    assert "hub" in redacted


def test_the_repository_config_loads(env: pytest.MonkeyPatch) -> None:
    root = Path(__file__).resolve().parents[2]
    env.chdir(root)
    s = load_settings()
    assert set(s.connectors) == {"vendor", "sms", "valves", "tax"}
    assert s.connectors["sms"]["kind"] == "http_sms"
    assert (s.connectors["tax"]["kind"], s.connectors["tax"]["provider"]) == ("tax", "soap")  # routes/payments.toml


# --- logs ---------------------------------------------------------------------------------------


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("gashub.test.logs")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.handlers.clear()
        logger.propagate = True


def records(stream: io.StringIO) -> list[dict[str, object]]:
    lines = stream.getvalue().splitlines()
    out = []
    for line in lines:
        doc = json.loads(line)
        assert isinstance(doc, dict), line
        out.append(doc)
    return out


def test_one_json_object_per_line(capture: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = capture
    log.info("first")
    log.warning("second %s", "arg", extra={"queue": "q1", "size": 3})
    try:
        raise ValueError("multi\nline\nproblem")
    except ValueError:
        log.exception("third")
    text = stream.getvalue()
    assert text.count("\n") == 3
    first, second, third = records(stream)
    assert first["event"] == "first"
    assert first["level"] == "info"
    assert first["logger"] == "gashub.test.logs"
    assert str(first["time"]).endswith("+00:00")
    assert second == {**second, "event": "second arg", "level": "warning", "queue": "q1", "size": 3}
    assert third["level"] == "error"
    assert "ValueError: multi" in str(third["exception"])
    assert "Traceback" in str(third["exception"])


def test_bound_context_is_on_every_record(capture: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = capture
    with bind(correlation_id="corr-1", message_id="msg-1", route="readings", attempt=3, connector="sms"):
        log.info("inside")
    log.info("outside")
    inside, outside = records(stream)
    assert {k: inside[k] for k in BOUND_KEYS} == {
        "correlation_id": "corr-1", "message_id": "msg-1", "route": "readings", "attempt": 3, "connector": "sms"}
    assert not set(BOUND_KEYS) & set(outside)


def test_nested_binds_add_override_and_restore(capture: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = capture
    with bind(correlation_id="c", route="outer"):
        log.info("a")
        with bind(route="inner", message_id="m", attempt=2):
            log.info("b")
            with bind(attempt=None):  # None does not unbind or overwrite
                log.info("c")
        log.info("d")
    log.info("e")
    a, b, c, d, e = records(stream)
    assert (a["correlation_id"], a["route"]) == ("c", "outer")
    assert "message_id" not in a
    assert (b["correlation_id"], b["route"], b["message_id"], b["attempt"]) == ("c", "inner", "m", 2)
    assert c["attempt"] == 2
    assert (d["route"], "message_id" in d, "attempt" in d) == ("outer", False, False)
    assert "correlation_id" not in e
    assert "route" not in e


def test_bind_restores_after_an_exception(capture: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = capture
    with pytest.raises(RuntimeError), bind(route="boom"):
        raise RuntimeError
    log.info("after")
    assert "route" not in records(stream)[0]


async def test_bound_context_stays_in_its_task(capture: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = capture
    entered = asyncio.Event()
    release = asyncio.Event()

    async def flow(name: str) -> None:
        with bind(correlation_id=name):
            entered.set()
            await release.wait()
            log.info(name)

    first = asyncio.create_task(flow("one"))
    await entered.wait()
    second = asyncio.create_task(flow("two"))
    await asyncio.sleep(0)
    log.info("main")
    release.set()
    await asyncio.gather(first, second)
    by_event = {r["event"]: r for r in records(stream)}
    assert by_event["one"]["correlation_id"] == "one"
    assert by_event["two"]["correlation_id"] == "two"
    assert "correlation_id" not in by_event["main"]


PHONE, MASKED_PHONE = "13812345678", "138****5678"
ID_NUMBER, MASKED_ID = "110101199003071234", "110101********1234"
ID_NUMBER_X, MASKED_ID_X = "11010119900307123X", "110101********123X"


def test_personal_data_is_masked_in_message_extras_context_and_exception(
    capture: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = capture
    with bind(subject=f"user {PHONE}"):
        log.info("sms to %s for id %s", PHONE, ID_NUMBER, extra={"phone": PHONE, "id_card": f"id={ID_NUMBER_X};"})
    try:
        raise ValueError(f"partner refused {PHONE} / {ID_NUMBER}")
    except ValueError:
        log.exception("failed for %s", PHONE)
    text = stream.getvalue()
    for secret in (PHONE, ID_NUMBER, ID_NUMBER_X):
        assert secret not in text
    first, second = records(stream)
    assert first["event"] == f"sms to {MASKED_PHONE} for id {MASKED_ID}"
    assert first["phone"] == MASKED_PHONE
    assert first["id_card"] == f"id={MASKED_ID_X};"
    assert first["subject"] == f"user {MASKED_PHONE}"
    assert second["event"] == f"failed for {MASKED_PHONE}"
    assert f"partner refused {MASKED_PHONE} / {MASKED_ID}" in str(second["exception"])


def test_personal_data_is_masked_inside_structured_extras(capture: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = capture
    log.info("call", extra={"payload": {"phone": PHONE}, "ids": [ID_NUMBER], "number": int(PHONE)})
    text = stream.getvalue()
    json.loads(text)
    assert PHONE not in text
    assert ID_NUMBER not in text


def test_text_formatter_masks_too() -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "to %s", (PHONE,), None)
    record.id_card = ID_NUMBER
    with bind(route="sms-send"):
        line = TextFormatter().format(record)
    assert MASKED_PHONE in line
    assert MASKED_ID in line
    assert PHONE not in line
    assert "[route=sms-send]" in line


def test_configure_installs_one_json_handler_on_the_root() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        configure("debug", json=True)
        assert len(root.handlers) == 1
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
        assert root.level == logging.DEBUG
        assert logging.getLogger("pika").level == logging.WARNING
        configure("INFO", json=False)
        assert isinstance(root.handlers[0].formatter, TextFormatter)
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (PHONE, MASKED_PHONE),
        (f"phone:{PHONE},", f"phone:{MASKED_PHONE},"),
        (f"手机号{PHONE}。", f"手机号{MASKED_PHONE}。"),
        (f'{{"phone": "{PHONE}"}}', f'{{"phone": "{MASKED_PHONE}"}}'),
        ("19987654321 and 15500001111", "199****4321 and 155****1111"),
        (ID_NUMBER, MASKED_ID),
        (ID_NUMBER_X, MASKED_ID_X),
        ("11010119900307123x", "110101********123x"),
        (f"身份证{ID_NUMBER}", f"身份证{MASKED_ID}"),
    ],
)
def test_mask_personal_masks(text: str, masked: str) -> None:
    assert mask_personal(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "24442000000012345678",  # 20-digit digital invoice number (FPHM)
        "invoice 24312000000000012345 issued",
        "12345678.90",
        "amount=1234567890.12 yuan",
        "12812345678",  # 11 digits but not a mobile prefix
        "10012345678",
        "138123456789",  # 12 digits: too long for a phone
        "1381234567",  # 10 digits: too short
        "1795752000000",  # epoch milliseconds
        "4200000001202405061234567890",  # 28-digit WeChat transaction id
        "11010119900307123",  # 17 digits
        "1101011990030712345",  # 19 digits
        "ID110101199003071234",  # glued to letters: not a standalone ID number
        "01HX5Z8Q3N7RJ2M4K6V9W0YB1C",
        "",
    ],
)
def test_mask_personal_leaves_ordinary_text_alone(text: str) -> None:
    assert mask_personal(text) == text


def test_mask_personal_leaves_generated_ulids_alone() -> None:
    ids = [new_id() for _ in range(2000)]
    ids += [derived_id(ids[0], str(i)) for i in range(2000)]
    changed = [i for i in ids if mask_personal(i) != i]
    assert changed == []


@pytest.mark.parametrize("text", ["01HZ13812345678ABCDEFGHJKM", "ratio 0.13812345678"])
def test_mask_personal_leaves_digit_runs_inside_ids_and_fractions_alone(text: str) -> None:
    assert str(ULID.from_str("01HZ13812345678ABCDEFGHJKM")) == "01HZ13812345678ABCDEFGHJKM"  # a valid ULID
    assert mask_personal(text) == text


@given(st.from_regex(r"\A[0-9]{20}\Z"))
def test_mask_personal_never_touches_20_digit_numbers(number: str) -> None:
    assert mask_personal(f"invoice {number} issued") == f"invoice {number} issued"


@given(st.decimals(min_value=0, max_value=Decimal("9999999999.99"), places=2, allow_nan=False))
def test_mask_personal_never_touches_amounts(amount: Decimal) -> None:
    text = f"paid {amount} CNY"
    assert mask_personal(text) == text


@given(st.from_regex(r"\A1[3-9][0-9]{9}\Z"), st.sampled_from(["", " ", "tel:", "=", "手机", "(", '"']),
       st.sampled_from(["", " ", ",", ")", "。", '"']))
def test_mask_personal_always_masks_a_mobile_number(phone: str, before: str, after: str) -> None:
    masked = mask_personal(f"{before}{phone}{after}")
    assert masked == f"{before}{phone[:3]}****{phone[-4:]}{after}"
    assert phone not in masked
