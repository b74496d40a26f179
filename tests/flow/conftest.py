"""A whole hub per test, on either stack: the embedded default (in-memory transport, SQLite) or
the production one (RabbitMQ through pika, PostgreSQL). Each test gets its own exchange, queue
prefix and database, so tests never see each other's messages."""

from __future__ import annotations

import asyncio
import inspect
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from connectors.http_sms.simulator import SmsGatewaySimulator
from connectors.tax.simulator import EInvoiceSimulator
from connectors.valve_http.simulator import ValvePlatformSimulator
from core.privacy import generate_key
from hub.app import Hub
from hub.connectors.registry import ConnectorRegistry
from hub.migrations import upgrade
from hub.settings import load_settings
from tests.contract.broker_admin import BrokerAdmin

REPO = Path(__file__).resolve().parents[2]
OPS_TOKEN = "test-ops-token-0123456789"
TEST_KEY = generate_key()
VENDOR_TOKEN = "test-vendor-token"

ROUTES = """
[[route]]
name = "vendor-readings"
from = "vendor.demo.reading"
map = "vendor-meter-reading@1"
to = "core:record_reading"
retry = { max_attempts = 3, backoff = ["100ms"] }

[[route]]
name = "readings"
from = "meter.reading"
to = "core:record_reading"
retry = { max_attempts = 3, backoff = ["100ms"] }

[[route]]
name = "reading-exceptions"
from = "reading.flagged"
to = "core:record_reading_exception"

[[route]]
name = "alarms"
from = "alarm.raised"
to = "core:record_alarm"
lane = "safety"

[[route]]
name = "vendor-alarms"
from = "vendor.demo.alarm"
map = "vendor-meter-alarm"
to = "core:record_alarm"
lane = "safety"

[[route]]
name = "valve-commands"
from = "valve.command"
to = "valves:valve"
reply = "valve.state"
lane = "safety"
retry = { max_attempts = 5, backoff = ["100ms"] }

[[route]]
name = "valve-states"
from = "valve.state"
to = "core:record_valve_state"
lane = "safety"

[[route]]
name = "sms-send"
from = "notification.requested"
to = "sms:send"
reply = "notification.delivered"
retry = { max_attempts = 4, backoff = ["200ms", "400ms", "800ms"] }

[[route]]
name = "sms-delivered"
from = "notification.delivered"
to = "core:record_notification_delivery"
"""


async def fresh_postgres_database(base_url: str) -> tuple[str, Callable[[], Awaitable[None]]]:
    name = f"gh_{uuid.uuid4().hex[:12]}"
    admin = base_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()

    async def drop() -> None:
        c = await asyncpg.connect(admin)
        try:
            await c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await c.close()

    return base_url.rsplit("/", 1)[0] + "/" + name, drop


class Stack:
    """One test's hub stack: simulators, settings and the hubs it starts."""

    def __init__(self, kind: str, tmp: Path, amqp_url: str | None, database_url: str) -> None:
        self.kind = kind
        self.tmp = tmp
        self.amqp_url = amqp_url
        self.database_url = database_url
        self.sms = SmsGatewaySimulator()
        self.valves = ValvePlatformSimulator()
        self.suffix = uuid.uuid4().hex[:8]
        self.routes_dir = tmp / "routes"
        self.routes_dir.mkdir()
        (self.routes_dir / "test.toml").write_text(ROUTES)
        self.mappings_dir = tmp / "mappings"
        shutil.copytree(REPO / "mappings", self.mappings_dir)
        self.hubs: list[Hub] = []

    def settings(self, **overrides: Any) -> Any:
        values: dict[str, Any] = {
            "database_url": self.database_url,
            "amqp_url": self.amqp_url,
            "exchange": f"gashub.test.{self.suffix}",
            "queue_prefix": f"gashub.test.{self.suffix}",
            "routes_dir": self.routes_dir,
            "mappings_dir": self.mappings_dir,
            "http": {"host": "127.0.0.1", "port": 0},
            "ops": {"token": OPS_TOKEN},
            "breaker": {"failure_threshold": 50, "reset_after_s": 1.0},
            "outbox": {"poll_interval_ms": 50},
            # Personal data at rest is sealed with this key (a test passes core={} to run without one).
            "core": {"keys": {"k1": TEST_KEY}, "current_key": "k1"},
            "connectors": {
                "vendor": {"kind": "vendor_push", "token": VENDOR_TOKEN},
                "sms": {"kind": "http_sms", "base_url": self.sms.url, "in_call_attempts": 1, "timeout_s": 2},
                "valves": {"kind": "valve_http", "base_url": self.valves.url},
            },
        }
        values.update(overrides)
        return load_settings(**values)

    async def start_hub(self, *, registry: ConnectorRegistry | None = None, **overrides: Any) -> Hub:
        hub = Hub.build(self.settings(**overrides), registry=registry)
        self.hubs.append(hub)
        await hub.start()
        return hub

    def base_url(self, hub: Hub) -> str:
        assert hub._runner is not None
        host, port = hub._runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def aclose(self) -> None:
        for hub in self.hubs:
            if hub.started:
                await hub.stop()
        if self.amqp_url and self.hubs:
            topology = self.hubs[0].topology()
            await BrokerAdmin(self.amqp_url).delete([q.name for q in topology.queues], topology.exchange)


@asynccontextmanager
async def migrated_engine(url: str, drop: Callable[[], Awaitable[None]] | None = None) -> AsyncIterator[AsyncEngine]:
    """An engine on the database at ``url``, migrated first; disposed on exit, and then the database
    dropped with ``drop`` (as :func:`fresh_postgres_database` returns it), whatever happened."""
    try:
        await asyncio.to_thread(upgrade, url)
        eng = create_async_engine(url)
        try:
            yield eng
        finally:
            await eng.dispose()
    finally:
        if drop is not None:
            await drop()


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated database: SQLite, then a fresh PostgreSQL database (dropped afterwards)."""
    if request.param == "sqlite":
        url, drop = f"sqlite+aiosqlite:///{tmp_path}/core.db", None
    else:
        url, drop = await fresh_postgres_database(request.getfixturevalue("postgres_url"))
    async with migrated_engine(url, drop) as eng:
        yield eng


StackFactory = Callable[[], Awaitable[Stack]]


@pytest.fixture(params=["embedded", "rabbitmq"])
async def stack(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Stack]:
    """A hub stack on the embedded default, then on RabbitMQ + PostgreSQL. Its settings are the test's
    alone: the repository's config/gashub.toml (and the connectors it configures) is not read."""
    (tmp_path / "gashub.toml").write_text("# the flow tests' settings are all in Stack.settings\n")
    monkeypatch.setenv("GASHUB_CONFIG", str(tmp_path / "gashub.toml"))
    async with AsyncExitStack() as exit_stack:
        if request.param == "embedded":
            s = Stack("embedded", tmp_path, None, f"sqlite+aiosqlite:///{tmp_path}/hub.db")
        else:
            amqp = request.getfixturevalue("amqp_url")
            pg = request.getfixturevalue("postgres_url")
            url, drop = await fresh_postgres_database(pg)
            exit_stack.push_async_callback(drop)
            s = Stack("rabbitmq", tmp_path, amqp, url)
        await s.sms.start()
        exit_stack.push_async_callback(s.sms.aclose)
        await s.valves.start()
        exit_stack.push_async_callback(s.valves.aclose)
        exit_stack.push_async_callback(s.aclose)
        # The simulators' ports are known only now.
        yield s


@pytest.fixture
async def tax_platform() -> AsyncIterator[EInvoiceSimulator]:
    """The SOAP e-invoicing simulator (connectors/tax), on a free port."""
    sim = EInvoiceSimulator()
    await sim.start()
    yield sim
    await sim.aclose()


async def holds(check: Callable[[], Awaitable[bool] | bool]) -> bool:
    """``check()``'s answer, awaited if it is awaitable: ``check`` may be a plain bool-returning callable
    (``lambda: len(sent) == 1``) or one returning an awaitable (an ``async def``)."""
    result = check()
    if inspect.isawaitable(result):
        result = await result
    return bool(result)


async def equals(value: Awaitable[Any], expected: Any) -> bool:
    """Whether ``value``, awaited, equals ``expected``: for ``eventually(lambda: equals(count(...), 3))``."""
    return bool((await value) == expected)


async def eventually(
    check: Callable[[], Awaitable[bool] | bool], timeout: float = 15.0, what: str = "condition"
) -> None:
    """Wait until ``check()`` is true (see :func:`holds`), evaluated every 50 ms until ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if await holds(check):
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)
