"""Loading and checking routes: the repository's routes compile; every mistake is named by file, route and
field; retry policies, durations and queue names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from connectors.http_sms.connector import HttpSmsConnector
from connectors.tax.connector import TaxConnector
from connectors.valve_http.connector import ValveHttpConnector
from core.catalogue import CATALOGUE, Lane
from core.handlers import HANDLERS, CoreConfig, build_handlers
from core.readings import ReadingsSettings
from hub.errors import ConfigError
from hub.mapping import MappingSet, load_mappings
from hub.routing.loader import Route, RouteErrors, TargetCatalog, check_routes, compile_routes, read_specs
from hub.routing.model import QueueNames, RetryPolicy, RouteSpec, parse_duration_ms

ROOT = Path(__file__).resolve().parents[2]
ROUTES_DIR = ROOT / "routes"
MAPPINGS_DIR = ROOT / "mappings"

TARGETS = TargetCatalog(
    core=HANDLERS,
    connectors={"sms": dict(HttpSmsConnector.actions), "valves": dict(ValveHttpConnector.actions),
                "tax": dict(TaxConnector.actions)},
)
SILENT_READINGS = ReadingsSettings(flag_events=False, raise_alarms=False, notify=frozenset())
"""``record_reading`` writing no events: it can be routed alone."""


@pytest.fixture(scope="module")
def mappings() -> MappingSet:
    return load_mappings(MAPPINGS_DIR)


def compile_dir(directory: Path, mappings: MappingSet, targets: TargetCatalog = TARGETS) -> list[Route]:
    return compile_routes(directory, catalogue=CATALOGUE, mappings=mappings, targets=targets, queue_prefix="gashub")


def problems_for(tmp_path: Path, mappings: MappingSet, toml: str,
                 targets: TargetCatalog = TARGETS) -> tuple[Path, list[ConfigError]]:
    directory = tmp_path / "routes"
    directory.mkdir(exist_ok=True)
    path = directory / "test.toml"
    path.write_text(toml, encoding="utf-8")
    return path, check_routes(directory, catalogue=CATALOGUE, mappings=mappings, targets=targets,
                              queue_prefix="gashub")


def only_problem(problems: list[ConfigError], path: Path, route: str, field: str) -> ConfigError:
    assert len(problems) == 1, [str(p) for p in problems]
    problem = problems[0]
    assert problem.where == f"{path}: route {route}: {field}", problem.where
    assert str(problem).startswith(f"{path}: route {route}: {field}: ")
    return problem


# --- the repository's routes --------------------------------------------------------------------


def test_the_repository_routes_compile(mappings: MappingSet) -> None:
    routes = {r.name: r for r in compile_dir(ROUTES_DIR, mappings)}
    assert set(routes) == {"vendor-readings", "readings", "reading-exceptions", "vendor-alarms", "alarms",
                           "valve-commands", "valve-states", "sms-send", "sms-delivered", "sms-replies", "bill-notify",
                           "work-orders", "payments", "invoices-tax", "invoices-issued", "invoices-failed"}

    vendor = routes["vendor-readings"]
    assert vendor.file == ROUTES_DIR / "meters.toml"
    assert vendor.input_type == "meter.reading"
    assert vendor.mapping_label == "vendor-meter-reading@1"
    assert vendor.core_handler is HANDLERS["record_reading"]
    assert vendor.queues == QueueNames.for_route("gashub", "vendor-readings")
    assert vendor.spec.retry.backoff == (1000, 5000, 30000, 120000)

    alarms = routes["vendor-alarms"]
    assert alarms.mapping is not None
    assert alarms.mapping.version == max(mappings.versions("vendor-meter-alarm"))  # no @version: the latest
    assert alarms.input_type == "alarm.raised"
    assert alarms.lane is Lane.SAFETY

    valves = routes["valve-commands"]
    assert valves.core_handler is None
    assert valves.mapping is None
    assert valves.mapping_label == ""
    assert (valves.spec.target_kind, valves.spec.target_name, valves.spec.target_action) == (
        "connector", "valves", "valve")
    assert valves.spec.reply == "valve.state"
    assert valves.spec.retry.delays() == [500, 2000, 10000, 30000]

    assert routes["sms-send"].input_type == "notification.requested"
    assert routes["readings"].lane is Lane.NORMAL
    assert all(r.where is None and r.dedup is None for r in routes.values())

    # What the core makes of readings goes where it must: a leak alarm to core:record_alarm on the
    # safety lane (which closes the valve), the holder's message to the SMS gateway, the flagged
    # reading to the exceptions list.
    takers = {t: [r.spec.to for r in routes.values() if r.spec.from_ == t] for t in vendor.core_handler.emits}
    assert takers == {"alarm.raised": ["core:record_alarm"], "notification.requested": ["sms:send"],
                      "reading.flagged": ["core:record_reading_exception"]}
    assert routes["alarms"].lane is Lane.SAFETY
    assert routes["work-orders"].core_handler is HANDLERS["open_work_order"]  # what validation asks for

    # A payment's way: credited by the core, its invoice asked of the tax connector, the answer (or the
    # refusal) back to the core, and the issued invoice's SMS to the gateway.
    assert routes["payments"].core_handler is HANDLERS["record_payment"]
    assert (routes["invoices-tax"].spec.to, routes["invoices-tax"].spec.reply) == ("tax:issue", "invoice.issued")
    issued = routes["invoices-issued"].core_handler
    assert issued is HANDLERS["record_invoice_issued"]
    assert {t: [r.spec.to for r in routes.values() if r.spec.from_ == t] for t in issued.emits} == {
        "invoice.requested": ["tax:issue"], "notification.requested": ["sms:send"]}
    assert routes["invoices-failed"].core_handler is HANDLERS["record_invoice_failed"]


def test_the_repository_routes_need_their_connectors(mappings: MappingSet) -> None:
    with pytest.raises(RouteErrors) as info:
        compile_dir(ROUTES_DIR, mappings, TargetCatalog(core=HANDLERS))
    wheres = sorted(p.where for p in info.value.problems)
    assert wheres == [f"{ROUTES_DIR / 'meters.toml'}: route valve-commands: to",
                      f"{ROUTES_DIR / 'notifications.toml'}: route sms-send: to",
                      f"{ROUTES_DIR / 'payments.toml'}: route invoices-tax: to"]
    assert "no connector named 'valves' is configured" in str(info.value)
    assert "no connector named 'sms' is configured" in str(info.value)
    assert "no connector named 'tax' is configured" in str(info.value)


def test_check_routes_matches_compile_routes(mappings: MappingSet) -> None:
    assert check_routes(ROUTES_DIR, catalogue=CATALOGUE, mappings=mappings, targets=TARGETS,
                        queue_prefix="gashub") == []


# --- what is refused ----------------------------------------------------------------------------


def test_a_mapping_that_reads_another_source_is_refused(tmp_path: Path, mappings: MappingSet) -> None:
    path, problems = problems_for(tmp_path, mappings, """
[[route]]
name = "crossed"
from = "vendor.demo.alarm"
map = "vendor-meter-reading@1"
to = "core:record_reading"
""")
    problem = only_problem(problems, path, "crossed", "map")
    assert "reads 'vendor.demo.reading'" in problem.detail
    assert "'vendor.demo.alarm'" in problem.detail


def test_a_connector_action_taking_another_type_is_refused(tmp_path: Path, mappings: MappingSet) -> None:
    path, problems = problems_for(tmp_path, mappings, """
[[route]]
name = "readings-by-sms"
from = "meter.reading"
to = "sms:send"
""")
    problem = only_problem(problems, path, "readings-by-sms", "to")
    assert "sms:send takes 'notification.requested'" in problem.detail
    assert "'meter.reading'" in problem.detail


def test_a_mapped_type_must_fit_the_connector_action(tmp_path: Path, mappings: MappingSet) -> None:
    path, problems = problems_for(tmp_path, mappings, """
[[route]]
name = "alarm-to-valve"
from = "vendor.demo.alarm"
map = "vendor-meter-alarm"
to = "valves:valve"
""")
    problem = only_problem(problems, path, "alarm-to-valve", "to")
    assert "'alarm.raised'" in problem.detail


def test_an_unknown_connector_action_is_refused(tmp_path: Path, mappings: MappingSet) -> None:
    path, problems = problems_for(tmp_path, mappings, """
[[route]]
name = "wrong-action"
from = "notification.requested"
to = "sms:sned"
""")
    problem = only_problem(problems, path, "wrong-action", "to")
    assert "no action 'sned'" in problem.detail
    assert "send" in problem.detail


def test_a_wildcard_action_takes_any_type(tmp_path: Path, mappings: MappingSet) -> None:
    targets = TargetCatalog(core=HANDLERS, connectors={"archive": {"store": "*"}})
    _, problems = problems_for(tmp_path, mappings, """
[[route]]
name = "archive-alarms"
from = "alarm.raised"
to = "archive:store"
""", targets)
    assert problems == []


def test_a_core_handler_taking_another_type_is_refused(tmp_path: Path, mappings: MappingSet) -> None:
    path, problems = problems_for(tmp_path, mappings, """
[[route]]
name = "raw-vendor"
from = "vendor.demo.reading"
to = "core:record_reading"
""")
    problem = only_problem(problems, path, "raw-vendor", "to")
    assert "add a mapping with `map`" in problem.detail


def test_record_reading_alone_is_refused_until_its_events_have_routes_or_are_off(
    tmp_path: Path, mappings: MappingSet
) -> None:
    alone = """
[[route]]
name = "readings"
from = "meter.reading"
to = "core:record_reading"
"""
    path, problems = problems_for(tmp_path, mappings, alone)
    assert sorted(str(p).split("'")[1] for p in problems) == [
        "alarm.raised", "notification.requested", "reading.flagged"]
    assert all(p.where == f"{path}: route readings: to" for p in problems)
    no_alarms = TargetCatalog(core=build_handlers(CoreConfig(readings=ReadingsSettings(
        raise_alarms=False, notify=frozenset()))))
    _, problems = problems_for(tmp_path, mappings, alone, no_alarms)
    assert ["reading.flagged" in str(p) for p in problems] == [True]
    _, problems = problems_for(tmp_path, mappings, alone + """
[[route]]
name = "flagged"
from = "reading.flagged"
to = "core:record_reading_exception"
""", no_alarms)
    assert problems == []


def test_an_unknown_mapping_version_is_refused(tmp_path: Path, mappings: MappingSet) -> None:
    path, problems = problems_for(tmp_path, mappings, """
[[route]]
name = "future"
from = "vendor.demo.reading"
map = "vendor-meter-reading@9"
to = "core:record_reading"
""")
    map_problems = [p for p in problems if p.where.endswith(": map")]
    assert len(map_problems) == 1
    assert map_problems[0].where == f"{path}: route future: map"
    assert "no version 9" in str(map_problems[0])
    assert "v1, v2" in str(map_problems[0])


def test_an_explicit_mapping_version_is_used(tmp_path: Path, mappings: MappingSet) -> None:
    directory = tmp_path / "routes"
    directory.mkdir()
    (directory / "v2.toml").write_text("""
[[route]]
name = "vendor-v2"
from = "vendor.demo.reading"
map = "vendor-meter-reading@2"
to = "core:record_reading"
""", encoding="utf-8")
    silent = TargetCatalog(core=build_handlers(CoreConfig(readings=SILENT_READINGS)))
    (route,) = compile_dir(directory, mappings, silent)
    assert route.mapping_label == "vendor-meter-reading@2"
    assert route.spec.mapping_name == "vendor-meter-reading"
    assert route.spec.mapping_version == 2


def test_a_topic_pattern_in_from_is_accepted_when_it_matches_something(tmp_path: Path, mappings: MappingSet) -> None:
    targets = TargetCatalog(core=HANDLERS, connectors={"archive": {"store": "*"}})
    _, problems = problems_for(tmp_path, mappings, """
[[route]]
name = "all-alarms"
from = "alarm.*"
to = "archive:store"

[[route]]
name = "nothing"
from = "nothing.*"
to = "archive:store"
""", targets)
    assert [p.where.rsplit(": ", 2)[1:] for p in problems] == [["route nothing", "from"]]


def test_reply_where_and_dedup_are_checked(tmp_path: Path, mappings: MappingSet) -> None:
    path, problems = problems_for(tmp_path, mappings, """
[[route]]
name = "bad-bits"
from = "notification.requested"
to = "sms:send"
reply = "notification.delivered.v2"
where = "data.kind == 'alarm' and open('x')"
dedup = "__class__"
""")
    assert sorted(p.where for p in problems) == sorted(
        f"{path}: route bad-bits: {field}" for field in ("reply", "where", "dedup"))


def test_where_and_dedup_compile_to_callables(tmp_path: Path, mappings: MappingSet) -> None:
    directory = tmp_path / "routes"
    directory.mkdir()
    (directory / "leaks.toml").write_text("""
[[route]]
name = "leaks"
from = "alarm.raised"
where = "data.kind == 'leak' and data.severity >= 4"
dedup = "data.alarm_id"
to = "core:record_alarm"

[[route]]
name = "commands"
from = "valve.command"
to = "valves:valve"

[[route]]
name = "sms"
from = "notification.requested"
to = "sms:send"
""", encoding="utf-8")
    route = compile_dir(directory, mappings)[0]
    assert route.where is not None
    assert route.dedup is not None
    message: dict[str, Any] = {"type": "alarm.raised", "data": {"kind": "leak", "severity": 5, "alarm_id": "a-1"}}
    assert route.where(message) is True
    assert route.where({**message, "data": {**message["data"], "severity": 2}}) is False
    assert route.dedup(message) == "a-1"


def test_all_problems_are_collected_across_files(tmp_path: Path, mappings: MappingSet) -> None:
    directory = tmp_path / "routes"
    directory.mkdir()
    (directory / "a.toml").write_text("""
[[route]]
name = "same"
from = "meter.reading"
to = "core:record_reading"

[[route]]
name = "ghost"
from = "meter.readingz"
to = "core:record_reading"
""", encoding="utf-8")
    (directory / "b.toml").write_text("""
[[route]]
name = "same"
from = "meter.reading"
to = "core:record_readingz"
""", encoding="utf-8")
    (directory / "c.toml").write_text("this is = not [toml", encoding="utf-8")
    (directory / "d.toml").write_text("""
routes = []

[[route]]
nam = "typo"
form = "meter.reading"
to = "core:record_reading"
retry = { max_attempts = 0, backoff = ["5 parsecs"] }
""", encoding="utf-8")
    with pytest.raises(RouteErrors) as info:
        compile_dir(directory, mappings)
    wheres = [p.where for p in info.value.problems]
    a, b, c, d = (directory / f"{n}.toml" for n in "abcd")
    expected = [
        f"{a}: route ghost: from",
        f"{b}: route same: name",
        f"{b}: route same: to",
        str(c),
        str(d),
        f"{d}: route #1: name",
        f"{d}: route #1: from",
        f"{d}: route #1: nam",
        f"{d}: route #1: form",
        f"{d}: route #1: retry.max_attempts",
        f"{d}: route #1: retry.backoff.0",
    ]
    for where in expected:
        assert where in wheres, f"{where!r} not reported; got {wheres}"
    assert f"already used in {a}" in str(info.value)
    assert "not valid TOML" in str(info.value)
    assert "unknown top-level keys ['routes']" in str(info.value)
    # the message joins every problem, one a line
    assert str(info.value).count("\n") == len(info.value.problems) - 1


def test_a_missing_routes_folder_is_a_problem(tmp_path: Path, mappings: MappingSet) -> None:
    specs, problems = read_specs(tmp_path / "nope")
    assert specs == []
    assert len(problems) == 1
    assert "does not exist" in str(problems[0])


# --- RouteSpec ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"name": "Bad Name", "from": "meter.reading", "to": "core:record_reading"}, "name"),
        ({"name": "ok", "from": "Meter.Reading", "to": "core:record_reading"}, "from"),
        ({"name": "ok", "from": "meter.reading", "to": "record_reading"}, "to"),
        ({"name": "ok", "from": "meter.reading", "to": "core:record_reading", "map": "Vendor@x"}, "map"),
        ({"name": "ok", "from": "meter.reading", "to": "core:record_reading", "lane": "fast"}, "lane"),
        ({"name": "ok", "from": "meter.reading", "to": "core:record_reading", "batch": 0}, "batch"),
        ({"name": "ok", "from": "meter.reading", "to": "core:record_reading", "retry": {"tries": 3}}, "retry.tries"),
    ],
)
def test_route_spec_rejects(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        RouteSpec.model_validate(raw)
    assert field in {".".join(str(p) for p in e["loc"]) for e in info.value.errors()}


def test_route_spec_target_parts() -> None:
    core = RouteSpec.model_validate({"name": "r", "from": "meter.reading", "to": "core:record_reading"})
    assert (core.target_kind, core.target_name, core.target_action) == ("core", "record_reading", "record_reading")
    assert (core.mapping_name, core.mapping_version) == (None, None)
    conn = RouteSpec.model_validate({"name": "r", "from": "valve.command", "to": "valves:valve", "map": "m"})
    assert (conn.target_kind, conn.target_name, conn.target_action) == ("connector", "valves", "valve")
    assert (conn.mapping_name, conn.mapping_version) == ("m", None)


# --- retry policy, durations, queue names -------------------------------------------------------


def test_delay_before_uses_the_backoff_in_order_then_repeats_the_last() -> None:
    policy = RetryPolicy(max_attempts=8, backoff=("1s", "5s", "30s"))
    assert policy.backoff == (1000, 5000, 30000)
    assert [policy.delay_before(n) for n in range(2, 9)] == [1000, 5000, 30000, 30000, 30000, 30000, 30000]


def test_delays_are_the_distinct_waits_actually_used() -> None:
    assert RetryPolicy().delays() == [1000, 5000, 30000, 120000]
    assert RetryPolicy(max_attempts=3).delays() == [1000, 5000]  # attempts 2 and 3 only
    assert RetryPolicy(max_attempts=1).delays() == []
    assert RetryPolicy(max_attempts=6, backoff=("30s", "1s", "30s")).delays() == [1000, 30000]


def test_an_empty_backoff_waits_one_second() -> None:
    policy = RetryPolicy(max_attempts=4, backoff=())
    assert policy.delay_before(2) == 1000
    assert policy.delays() == [1000]


@pytest.mark.parametrize(
    "retry",
    [
        {"max_attempts": 0},
        {"max_attempts": 101},
        {"backoff": ["0ms"]},
        {"backoff": ["0.5ms"]},
        {"backoff": ["25h"]},
        {"backoff": ["5 parsecs"]},
        {"backoff": [True]},
        {"backoff": [-5]},
        {"jitter": True},
    ],
)
def test_retry_policy_rejects(retry: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RetryPolicy.model_validate(retry)


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        ("250ms", 250),
        ("5s", 5000),
        ("1.5s", 1500),
        (" 5 s ", 5000),
        ("2m", 120_000),
        ("1h", 3_600_000),
        ("0.25h", 900_000),
        (42, 42),
        (2.9, 2),
    ],
)
def test_parse_duration_ms(value: object, ms: int) -> None:
    assert parse_duration_ms(value) == ms


@pytest.mark.parametrize("value", ["5 parsecs", "", "5", "s", "-5s", "5S", "1d", "5 s s", True, None, [5]])
def test_parse_duration_ms_refuses(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration_ms(value)


def test_queue_names() -> None:
    q = QueueNames.for_route("gashub", "readings")
    assert q.main == "gashub.route.readings"
    assert q.dead == "gashub.route.readings.dlq"
    assert q.delay_prefix == "gashub.route.readings.delay."
    assert q.delay(5000) == "gashub.route.readings.delay.5000"
    assert QueueNames.for_route("other", "readings").main == "other.route.readings"
    assert q == QueueNames.for_route("gashub", "readings")
    assert len({q.main, q.dead, q.delay(1000), q.delay(5000)}) == 4


durations = st.one_of(
    st.integers(min_value=1, max_value=86_400_000),
    st.builds(lambda n, unit: f"{n}{unit}", st.integers(min_value=1, max_value=24),
              st.sampled_from(["ms", "s", "m", "h"])),
)


@given(st.integers(min_value=1, max_value=100), st.lists(durations, max_size=8))
def test_delays_are_sorted_unique_and_bounded(max_attempts: int, backoff: list[int | str]) -> None:
    policy = RetryPolicy(max_attempts=max_attempts, backoff=tuple(backoff))
    delays = policy.delays()
    assert delays == sorted(delays)
    assert len(delays) == len(set(delays))
    assert len(delays) <= max(0, max_attempts - 1)
    ceiling = max(policy.backoff, default=1000)
    assert all(1 <= d <= ceiling for d in delays)
    used = {policy.delay_before(n) for n in range(2, max_attempts + 1)}
    assert set(delays) == used
    assert used <= (set(policy.backoff) or {1000})


def test_a_reply_or_event_that_no_route_takes_is_refused(tmp_path: Path, mappings: MappingSet) -> None:
    """The hub publishes with ``mandatory``: an output nobody takes would come back for ever."""
    path, problems = problems_for(tmp_path, mappings, """
[[route]]
name = "sms"
from = "notification.requested"
to = "sms:send"
reply = "notification.delivered"

[[route]]
name = "alarms"
from = "alarm.raised"
to = "core:record_alarm"
""")
    where = sorted(p.where for p in problems)
    assert where == [f"{path}: route alarms: to", f"{path}: route sms: reply"]
    assert all("no route takes it" in p.detail for p in problems)
