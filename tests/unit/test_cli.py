"""The ``gashub`` command line, run for real as a subprocess: help, check, db, audit, schema, replay."""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli_env import REPO, clean_env

ROOT = REPO
TOKEN_VAR = "GASHUB_CONNECTORS__VENDOR__TOKEN"

ENV_VARS = ("GASHUB_DATABASE_URL", "GASHUB_AMQP_URL", "GASHUB_HTTP_PORT", "GASHUB_OPS__TOKEN", "GASHUB_CONFIG")

EXPECTED_TYPES = (
    "meter.reading",
    "alarm.raised",
    "valve.command",
    "valve.state",
    "payment.received",
    "invoice.requested",
    "invoice.issued",
    "notification.requested",
    "notification.delivered",
)


CHECK_KEY = base64.b64encode(secrets.token_bytes(32)).decode()


def gashub(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        cwd=cwd, env=clean_env() if env is None else env, capture_output=True, text=True,
        timeout=timeout, check=False,
    )


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def tables(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall()
    return {name: sql for name, sql in rows}


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file brought to head by ``gashub db upgrade``."""
    path = tmp_path_factory.mktemp("db") / "x.db"
    result = gashub("db", "upgrade", env=clean_env(GASHUB_DATABASE_URL=sqlite_url(path), **{TOKEN_VAR: "t"}))
    assert result.returncode == 0, result.stderr
    return path


# --- help ---------------------------------------------------------------------------------------


def test_top_level_help_lists_commands_and_settings() -> None:
    result = gashub("--help")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for command in ("run", "worker", "demo", "check", "db", "audit", "replay", "schema", "bench"):
        assert command in out
    for var in ENV_VARS:
        assert var in out, f"{var} not mentioned in `gashub --help`"


@pytest.mark.parametrize(
    ("command", "says"),
    [
        (["run"], "Run the hub"),
        (["worker"], "route consumers only"),
        (["demo"], "partner simulators"),
        (["check"], "Validate settings, routes and mappings"),
        (["db"], "Database tasks"),
        (["audit"], "Audit trail tasks"),
        (["replay"], "Replay a dead letter"),
        (["schema"], "JSON Schema or AsyncAPI 3.0"),
        (["bench"], "bench/hub_vs_raw.py"),
        (["reconcile"], "daily statements"),
    ],
)
def test_each_command_help_says_what_it_does_and_names_the_settings(command: list[str], says: str) -> None:
    result = gashub(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert says in result.stdout
    for var in ENV_VARS:
        assert var in result.stdout, f"{var} not mentioned in `gashub {' '.join(command)} --help`"


@pytest.mark.parametrize("command", [["db", "upgrade"], ["audit", "verify"], ["reconcile", "import"]])
def test_task_help_exits_zero(command: list[str]) -> None:
    result = gashub(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert f"usage: gashub {' '.join(command)}" in result.stdout


@pytest.mark.parametrize(
    ("parent", "task", "says"), [("db", "upgrade", "migrations"), ("audit", "verify", "hash chain"),
                                 ("reconcile", "import", "statement file")])
def test_parent_help_says_what_each_task_does(parent: str, task: str, says: str) -> None:
    result = gashub(parent, "--help")
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.strip().startswith(task))
    assert says in line


@pytest.mark.parametrize(("command", "says"), [(["db", "upgrade"], "migrations"), (["audit", "verify"], "hash chain"),
                                               (["reconcile", "import"], "missing_in_statement")])
def test_task_help_says_what_it_does_and_names_the_database_setting(command: list[str], says: str) -> None:
    result = gashub(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert says in result.stdout
    assert "GASHUB_DATABASE_URL" in result.stdout


def test_version() -> None:
    result = gashub("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("gashub ")


def test_no_command_is_a_usage_error() -> None:
    result = gashub()
    assert result.returncode == 2
    assert "COMMAND" in result.stderr


# --- check --------------------------------------------------------------------------------------


def test_check_passes_on_the_repository_configuration() -> None:
    result = gashub("check", env=clean_env(**{TOKEN_VAR: "demo-token", "GASHUB_CORE__KEYS__CHECK": CHECK_KEY}))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    assert "16 routes" in result.stdout
    assert result.stderr == ""


BROKEN_ROUTES = """\
[[route]]
name = "ghost-type"
from = "meter.readingz"
to = "core:record_reading"

[[route]]
name = "no-handler"
from = "meter.reading"
to = "core:record_readingz"

[[route]]
name = "bad-mapping"
from = "vendor.demo.reading"
map = "vendor-meter-readng@1"
to = "core:record_reading"

[[route]]
name = "far-retry"
from = "meter.reading"
to = "core:record_reading"
retry = { max_attempts = 3, backoff = ["1s", "5 parsecs"] }

[[route]]
name = "twice"
from = "alarm.raised"
to = "core:record_alarm"

[[route]]
name = "twice"
from = "alarm.raised"
to = "core:record_alarm"

[[route]]
name = "sneaky"
from = "meter.reading"
where = "__import__('os')"
to = "core:record_reading"
"""


def test_check_lists_every_route_problem_with_file_route_and_field(tmp_path: Path) -> None:
    routes = tmp_path / "routes"
    routes.mkdir()
    broken = routes / "broken.toml"
    broken.write_text(BROKEN_ROUTES, encoding="utf-8")
    result = gashub("check", env=clean_env(GASHUB_ROUTES_DIR=str(routes), **{TOKEN_VAR: "t"}))
    assert result.returncode == 1, result.stdout
    assert "OK" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip().startswith("✗")]

    def problem(route: str, field: str, *words: str) -> None:
        prefix = f"{broken}: route {route}: {field}"
        found = [line for line in lines if prefix in line]
        assert found, f"no problem reported for route {route!r}, field {field!r}:\n{result.stderr}"
        assert any(all(w in line for w in words) for line in found), (words, found)

    problem("ghost-type", "from", "meter.readingz")
    problem("no-handler", "to", "record_readingz")
    problem("bad-mapping", "map", "vendor-meter-readng")
    problem("far-retry", "retry.backoff", "5 parsecs")
    problem("twice", "name", "already used")
    problem("sneaky", "where", "__import__")
    # every problem is in the one report, and the count in the heading matches
    assert f"{len(lines)} problem(s)" in result.stderr
    assert len(lines) >= 6


def test_check_names_the_missing_connector_secret() -> None:
    result = gashub("check")  # no GASHUB_CONNECTORS__VENDOR__TOKEN
    assert result.returncode != 0
    assert "connectors.vendor" in result.stderr
    assert "token" in result.stderr
    assert "OK" not in result.stdout


def test_check_reports_a_bad_setting_as_a_configuration_error(tmp_path: Path) -> None:
    config = tmp_path / "gashub.toml"
    config.write_text('databse_url = "sqlite+aiosqlite:///x.db"\n', encoding="utf-8")
    result = gashub("check", env=clean_env(GASHUB_CONFIG=str(config), **{TOKEN_VAR: "t"}))
    assert result.returncode == 1
    assert "configuration error" in result.stderr
    assert "databse_url" in result.stderr
    assert "Traceback" not in result.stderr


# --- db upgrade, audit verify, replay -----------------------------------------------------------


def test_db_upgrade_creates_the_tables_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    env = clean_env(GASHUB_DATABASE_URL=sqlite_url(path))
    first = gashub("db", "upgrade", env=env)
    assert first.returncode == 0, first.stderr
    assert "head" in first.stdout
    made = tables(path)
    for table in ("alembic_version", "hub_hop", "hub_audit_head", "hub_dead_letter", "hub_message", "core_outbox",
                  "core_reading"):
        assert table in made, f"{table} missing after `gashub db upgrade`: {sorted(made)}"
    with sqlite3.connect(path) as conn:
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()

    again = gashub("db", "upgrade", env=env)
    assert again.returncode == 0, again.stderr
    assert tables(path) == made
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(revision,)]


def test_audit_verify_on_a_fresh_database(migrated_db: Path) -> None:
    result = gashub("audit", "verify", env=clean_env(GASHUB_DATABASE_URL=sqlite_url(migrated_db)))
    assert result.returncode == 0, result.stderr
    assert "intact: 0 hops" in result.stdout


def test_replay_of_an_unknown_dead_letter_is_refused(migrated_db: Path) -> None:
    env = clean_env(GASHUB_DATABASE_URL=sqlite_url(migrated_db), GASHUB_CORE__KEYS__K1=CHECK_KEY, **{TOKEN_VAR: "t"})
    result = gashub("replay", "NONEXISTENT", "--dry-run", env=env)
    assert result.returncode == 1
    assert "cannot replay" in result.stderr
    assert "NONEXISTENT" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_replay_from_the_shell_is_refused_on_the_in_memory_transport(migrated_db: Path) -> None:
    """The running hub's queues live in its own process: a CLI replay there would go nowhere."""
    env = clean_env(GASHUB_DATABASE_URL=sqlite_url(migrated_db), **{TOKEN_VAR: "t"})
    result = gashub("replay", "ANY", env=env)
    assert result.returncode == 1
    assert "in-memory transport" in result.stderr
    assert "/ops/dead-letters" in result.stderr


# --- schema -------------------------------------------------------------------------------------


def resolve(doc: Any, ref: str) -> Any:
    """Follow a local JSON pointer (``#/a/b``) from the document root; KeyError/IndexError if it dangles."""
    assert ref.startswith("#/"), f"not a local reference: {ref}"
    node = doc
    for raw in ref[2:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def refs(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every ``$ref`` in ``node`` as (where it is, what it points at)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield path, value
            else:
                yield from refs(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from refs(value, f"{path}/{i}")


def dangling(doc: Any) -> list[str]:
    bad = []
    for where, ref in refs(doc):
        try:
            resolve(doc, ref)
        except (KeyError, IndexError, TypeError, ValueError):
            bad.append(f"{where}: {ref}")
    return bad


@pytest.fixture(scope="module")
def asyncapi_doc() -> dict[str, Any]:
    result = gashub("schema", "--asyncapi")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert isinstance(doc, dict)
    return doc


def test_schema_list_shows_the_catalogue() -> None:
    result = gashub("schema", "--list")
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    for type_ in EXPECTED_TYPES:
        assert type_ in listed


def test_schema_of_one_type() -> None:
    result = gashub("schema", "--type", "meter.reading")
    assert result.returncode == 0, result.stderr
    docs = json.loads(result.stdout)
    assert list(docs) == ["meter.reading.v1.json"]
    schema = docs["meter.reading.v1.json"]
    assert schema["type"] == "object"
    assert "volume_m3" in schema["properties"]
    assert "volume_m3" in schema["required"]
    assert schema["$id"] == "urn:gashub:message:meter.reading:v1"


def test_schema_of_an_unknown_type_is_an_error() -> None:
    result = gashub("schema", "--type", "meter.readingz")
    assert result.returncode == 1
    assert "meter.readingz" in result.stderr
    assert "--list" in result.stderr


def test_asyncapi_document_has_a_channel_per_type(asyncapi_doc: dict[str, Any]) -> None:
    assert asyncapi_doc["asyncapi"] == "3.0.0"
    channels = asyncapi_doc["channels"]
    addresses = {ch["address"] for ch in channels.values()}
    for type_ in EXPECTED_TYPES:
        assert type_ in addresses
    assert len(addresses) == len(channels), "two channels share an address"
    for channel in channels.values():
        assert channel["messages"], f"channel {channel['address']} carries no message"
        for message_ref in channel["messages"].values():
            message = resolve(asyncapi_doc, message_ref["$ref"])
            assert message["name"] == channel["address"]
            assert message["payload"]["properties"]["type"] == {"const": channel["address"]}


def test_asyncapi_operations_reference_existing_channels(asyncapi_doc: dict[str, Any]) -> None:
    operations = asyncapi_doc["operations"]
    channels = asyncapi_doc["channels"]
    assert {op["action"] for op in operations.values()} == {"send", "receive"}
    referenced = set()
    for name, op in operations.items():
        ref = op["channel"]["$ref"]
        assert ref.startswith("#/channels/"), (name, ref)
        assert resolve(asyncapi_doc, ref) in channels.values()
        referenced.add(ref)
    assert referenced == {f"#/channels/{key}" for key in channels}, "a channel has no operation"


def test_asyncapi_structural_refs_resolve(asyncapi_doc: dict[str, Any]) -> None:
    """The channel and message references the document is built from all point at real nodes."""
    structural = [(w, r) for w, r in refs(asyncapi_doc) if r.startswith(("#/channels/", "#/components/"))]
    assert len(structural) >= 3 * len(asyncapi_doc["channels"])
    for _where, ref in structural:
        assert isinstance(resolve(asyncapi_doc, ref), dict), ref


def test_every_asyncapi_ref_resolves(asyncapi_doc: dict[str, Any]) -> None:
    assert dangling(asyncapi_doc) == []


def test_schema_out_writes_files(tmp_path: Path) -> None:
    out = tmp_path / "schemas"
    result = gashub("schema", "--asyncapi", "--out", str(out))
    assert result.returncode == 0, result.stderr
    written = {p.name for p in out.iterdir()}
    assert "asyncapi.json" in written
    assert "envelope.json" in written
    for type_ in EXPECTED_TYPES:
        assert f"{type_}.v1.json" in written
    assert f"wrote {len(written)} files" in result.stdout
    for path in out.iterdir():
        doc = json.loads(path.read_text(encoding="utf-8"))
        assert isinstance(doc, dict)
    reading = json.loads((out / "meter.reading.v1.json").read_text(encoding="utf-8"))
    assert "volume_m3" in reading["properties"]
    assert json.loads((out / "asyncapi.json").read_text(encoding="utf-8"))["asyncapi"] == "3.0.0"


def test_schema_out_without_asyncapi_writes_only_json_schemas(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "dir"
    result = gashub("schema", "--out", str(out))
    assert result.returncode == 0, result.stderr
    written = {p.name for p in out.iterdir()}
    assert "asyncapi.json" not in written
    assert "meter.reading.v1.json" in written
    for path in out.iterdir():
        schema = json.loads(path.read_text(encoding="utf-8"))
        assert dangling(schema) == [], path.name


def test_users_add_prints_a_password_once_and_refuses_a_taken_name(migrated_db: Path) -> None:
    env = clean_env(GASHUB_DATABASE_URL=sqlite_url(migrated_db), **{TOKEN_VAR: "t"})
    first = gashub("users", "add", "alice", "--role", "customer_service", env=env)
    assert first.returncode == 0, first.stderr
    assert "password (shown once" in first.stdout
    again = gashub("users", "add", "alice", "--role", "auditor", env=env)
    assert again.returncode == 1
    assert "exists already" in again.stderr
    assert "Traceback" not in again.stderr
    bad = gashub("users", "add", "bob", "--role", "superuser", env=env)
    assert bad.returncode == 2
    assert "invalid choice" in bad.stderr


@pytest.mark.parametrize(("value", "says"), [("0", "0 accounts: the demo city has 1-10000"),
                                             ("10001", "10001 accounts"), ("many", "'many' is not a number")])
def test_demo_refuses_a_city_size_it_cannot_seed(value: str, says: str, tmp_path: Path) -> None:
    result = gashub("demo", "--accounts", value, "--duration", "1", cwd=tmp_path)
    assert result.returncode == 2
    assert says in result.stderr
    assert not (tmp_path / "var").exists()  # refused before anything started


# --- gashub api --------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    """The API processes under ``pid`` (not multiprocessing's resource tracker)."""
    pids = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [c for c in pids if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()]


@contextlib.contextmanager
def _api_group(db: Path, processes: int = 2) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``gashub api --processes N`` on a free port, ready and with its N children started; killed on the
    way out if the test did not stop it."""
    port = _free_port()
    env = clean_env(GASHUB_DATABASE_URL=sqlite_url(db), GASHUB_HTTP__PORT=str(port),
                    GASHUB_CORE__KEYS__CHECK=CHECK_KEY, GASHUB_LOG_LEVEL="WARNING", **{TOKEN_VAR: "t"})
    server = subprocess.Popen([sys.executable, "-m", "hub.cli", "api", "--processes", str(processes)], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        ready = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as resp:
                    ready = json.loads(resp.read())
                if len(_children(server.pid)) == processes:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert ready == {"status": "ready", "role": "api"}, server.stderr.read() if server.poll() is not None else ""
        assert len(_children(server.pid)) == processes
        yield server, port
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)


def test_api_serves_the_rest_api_in_several_processes_on_one_port(migrated_db: Path) -> None:
    with _api_group(migrated_db) as (server, port):
        for _ in range(10):  # new connections: the kernel spreads them over both processes; every one answers
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/openapi.json", timeout=5) as resp:
                assert "/api/v1/accounts/{id}/overview" in json.loads(resp.read())["paths"]
        # Only the API: the ops API and the partner endpoints stay with `gashub run`.
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ops/routes", timeout=5)
        assert missing.value.code == 404
        children = _children(server.pid)
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0
        for child in children:  # every child stopped with the parent
            assert not Path(f"/proc/{child}").exists() or "zombie" in Path(f"/proc/{child}/status").read_text()


def test_api_children_stop_when_the_parent_is_killed(migrated_db: Path) -> None:
    """SIGKILL leaves the parent no chance to stop its children: they notice they were orphaned and stop
    themselves, so no orphan goes on serving a share of the port (a restarted group would share it)."""
    with _api_group(migrated_db) as (server, port):
        children = _children(server.pid)
        server.kill()
        server.wait(10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_running(c) for c in children):
            time.sleep(0.2)
        assert not any(_running(c) for c in children), "an API child outlived its killed parent"
        with pytest.raises(urllib.error.URLError, match="refused"):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2)


def _running(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "zombie" not in status.read_text()
    except FileNotFoundError:
        return False


def _metrics_dir(pid: int) -> Path:
    """The directory an API child shares its metrics through (``PROMETHEUS_MULTIPROC_DIR``, from its environment)."""
    environ = dict(v.split(b"=", 1) for v in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in v)
    return Path(environ[b"PROMETHEUS_MULTIPROC_DIR"].decode())


def _overview_requests(text: str) -> tuple[float, float]:
    """The overview route's requests (401: no token) in a scrape: the counter and the histogram's count."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = {"method": "GET", "route": "/api/v1/accounts/{id}/overview", "status": "401"}
    found = {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples
             if s.labels == wanted and s.name.endswith(("_total", "_count"))}
    return found.get("gashub_api_requests_total", 0.0), found.get("gashub_api_request_duration_seconds_count", 0.0)


def test_api_metrics_of_any_process_count_the_requests_of_the_whole_group(migrated_db: Path) -> None:
    """Each child writes its numbers to the group's private directory; a scrape, whichever child answers
    it, sums them all. The parent removes the directory when the group stops."""
    from prometheus_client.multiprocess import MultiProcessCollector

    def served_by(child: int, metrics: Path) -> float:  # one child's own count, from its file alone
        files = [str(f) for f in metrics.glob(f"counter_{child}.db")]
        return sum(s.value for m in MultiProcessCollector.merge(files) for s in m.samples
                   if s.labels.get("route") == "/api/v1/accounts/{id}/overview")

    with _api_group(migrated_db) as (server, port):
        children = _children(server.pid)
        metrics = _metrics_dir(children[0])
        assert _metrics_dir(children[1]) == metrics  # one directory for the group ...
        assert metrics.is_dir()
        assert metrics.stat().st_mode & 0o777 == 0o700  # ... private to its user
        sent = 0
        # Until both children served some: the second may still be binding its socket when the first
        # answers (seen in CI: 400 requests, all to one child). Bounded by time, not by count.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(served_by(c, metrics) for c in children):
            # New connections, which the kernel spreads over both processes; no token: 401 (counted).
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/accounts/AC-{sent:06d}-9/overview",
                                       timeout=5)
            assert refused.value.code == 401
            sent += 1
        assert all(served_by(c, metrics) for c in children), f"one process served all {sent} requests"
        assert sum(served_by(c, metrics) for c in children) == sent
        for _ in range(6):  # each scrape a new connection, to either process: every one shows the total
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
            assert _overview_requests(text) == (sent, sent)
            assert "AC-000000-9" not in text
            # Only the API's metrics: not the hub's, which every child also creates (and leaves unused).
            assert {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")} == {
                "gashub_api_requests_total", "gashub_api_request_duration_seconds"}
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0
        assert not metrics.exists()  # removed with the group


def test_api_refuses_a_database_without_tables(tmp_path: Path) -> None:
    env = clean_env(GASHUB_DATABASE_URL=sqlite_url(tmp_path / "empty.db"), GASHUB_HTTP__PORT=str(_free_port()),
                    GASHUB_CORE__KEYS__CHECK=CHECK_KEY, **{TOKEN_VAR: "t"})
    result = gashub("api", "--processes", "2", env=env)
    assert result.returncode != 0
    assert "gashub db upgrade" in result.stderr
