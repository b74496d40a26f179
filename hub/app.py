"""The composition root: builds a hub from settings, starts it, stops it. It composes; the pieces
it wires together do the work.

Roles: ``run`` starts everything (HTTP, route consumers, outbox relay, scheduler, connectors);
``worker`` starts route consumers only, to scale out beside a RabbitMQ cluster and PostgreSQL;
``api`` serves the REST API only (no broker), in as many processes as the machine's cores can feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from aiohttp import web

from core.accounts import Privacy
from core.catalogue import CATALOGUE, Catalogue, Lane
from core.config import CoreConfig
from core.handlers import build_handlers
from core.payments import Payments
from core.privacy import KeyRing, KeyRingError
from core.tariffs import TariffShelf
from core.workorders import mark_overdue
from hub.billing import bill_period, load_tariffs, month_period
from hub.breaker import CircuitBreaker
from hub.connectors.context import HubConnectorContext
from hub.connectors.contract import Connector, InboundConnector, OutboundConnector
from hub.connectors.registry import ConnectorRegistry
from hub.errors import ConfigError
from hub.mapping import MappingSet, load_mappings
from hub.metrics import HubMetrics
from hub.migrations import upgrade_async
from hub.outbox_relay import OutboxRelay
from hub.pipeline import RoutePipeline
from hub.publisher import Publisher
from hub.readings import check_readings
from hub.roles import Role as Role  # re-exported: callers import Role from hub.app
from hub.routing.loader import Route, TargetCatalog, compile_routes
from hub.scheduler import Scheduler
from hub.settings import Settings
from hub.store.db import Database
from hub.store.sealing import BodySealer
from hub.tariffs import current_book, seed_tariffs
from hub.transport.base import ConsumerHandle, QueueSpec, Topology, Transport
from hub.transport.memory import MemoryTransport

log = logging.getLogger(__name__)

DEAD_LETTER_QUEUE_TTL_MS = 14 * 24 * 3600 * 1000



@dataclass
class RouteRuntime:
    route: Route
    pipeline: RoutePipeline
    transport: Transport
    consumers: list[ConsumerHandle] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return bool(self.consumers)


@dataclass
class Hub:
    """A running hub. Build with ``Hub.build``; ``start``/``stop`` drive its lifecycle."""

    settings: Settings
    db: Database
    transports: dict[Lane, Transport]
    catalogue: Catalogue
    mappings: MappingSet
    routes: list[Route]
    connectors: dict[str, Connector[Any]]
    metrics: HubMetrics
    publisher: Publisher
    relay: OutboxRelay
    scheduler: Scheduler
    context: HubConnectorContext
    runtimes: dict[str, RouteRuntime] = field(default_factory=dict)
    breakers: dict[str, CircuitBreaker] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    role: Role = Role.RUN
    started: bool = False
    privacy: Privacy | None = None

    @classmethod
    def build(cls, settings: Settings, *, transport: Transport | None = None,
              safety_transport: Transport | None = None, registry: ConnectorRegistry | None = None) -> Hub:
        """Wire everything from settings. Raises ``ConfigError`` for anything misconfigured."""
        db = Database(settings.database_url, pool_size=settings.database_pool_size)
        if transport is None:
            transport, safety_transport = _transports(settings)
        transports = {Lane.NORMAL: transport, Lane.SAFETY: safety_transport or transport}
        metrics = HubMetrics()
        publisher = Publisher(transport, settings.exchange)
        mappings = load_mappings(settings.mappings_dir)
        registry = registry or ConnectorRegistry()
        context = HubConnectorContext(db=db, publisher=publisher, metrics=metrics)
        connectors: dict[str, Connector[Any]] = {}
        for name, raw in settings.connectors.items():
            connectors[name] = registry.build(name, raw, context.for_connector(name))
        privacy = privacy_from(settings)
        db.sealer = BodySealer(CATALOGUE, privacy.cipher if privacy else None)
        tariffs = TariffShelf() if settings.core.prepaid.enabled else None  # the database's book, batch by batch
        targets = TargetCatalog(
            core=build_handlers(CoreConfig(privacy=privacy, payments=settings.core.payments,
                                           readings=settings.core.readings, prepaid=settings.core.prepaid,
                                           tariffs=tariffs, alarms=settings.core.alarms,
                                           work_orders=settings.core.work_orders)),
            connectors={n: dict(c.actions) for n, c in connectors.items() if isinstance(c, OutboundConnector)},
        )
        routes = compile_routes(settings.routes_dir, catalogue=CATALOGUE, mappings=mappings, targets=targets,
                                queue_prefix=settings.queue_prefix)
        if privacy is None and (problems := _routes_needing_keys(routes)):
            raise problems[0]
        publishers = {Lane.NORMAL: publisher, Lane.SAFETY: Publisher(transports[Lane.SAFETY], settings.exchange)}
        relay = OutboxRelay(db, publishers, metrics, poll_interval_s=settings.outbox.poll_interval_ms / 1000,
                            batch=settings.outbox.batch)
        hub = cls(settings=settings, db=db, transports=transports, catalogue=CATALOGUE, mappings=mappings,
                  routes=routes, connectors=connectors, metrics=metrics, publisher=publisher, relay=relay,
                  scheduler=Scheduler(), context=context, privacy=privacy)
        hub._build_pipelines()
        if settings.billing.daily_at is not None:
            hub._schedule_billing(settings.billing.daily_at)
        if settings.core.readings.daily_check_at is not None and settings.core.readings.run_rules:
            hub._schedule_reading_checks(settings.core.readings.daily_check_at)
        if settings.core.work_orders.overdue_check_s is not None:
            hub._schedule_overdue(timedelta(seconds=settings.core.work_orders.overdue_check_s))
        return hub

    def _schedule_overdue(self, every: timedelta) -> None:
        async def mark_late_orders() -> None:
            async with self.db.begin() as conn:
                marked = await mark_overdue(conn, datetime.now(UTC))
            if marked:
                log.info("work_orders.overdue", extra={"count": len(marked)})

        self.scheduler.every("work-orders-overdue", every, mark_late_orders)

    def _schedule_billing(self, at: time) -> None:
        async def bill_last_month() -> None:
            start, end = month_period(None)
            payments = Payments(self.settings.core.payments, self.privacy)  # credit pays the new bills
            await bill_period(self.db, await current_book(self.db), start, end, payments=payments)

        self.scheduler.daily("billing", at, bill_last_month)

    async def _require_tariffs(self) -> None:
        if not (await current_book(self.db)).versions:
            raise ConfigError(
                "the database has no tariffs: import a tariff book with `gashub tariffs import FILE` (migrating seeds "
                f"an empty database from billing.tariffs_file, {self.settings.billing.tariffs_file}, if it exists)",
                where="billing.tariffs_file")

    def _schedule_reading_checks(self, at: time) -> None:
        async def check() -> None:
            await check_readings(self.db, self.settings.core.readings)

        self.scheduler.daily("reading-checks", at, check)

    def _build_pipelines(self) -> None:
        for route in self.routes:
            connector = None
            breaker = None
            if route.core_handler is None:
                name = route.spec.target_name
                found = self.connectors[name]
                assert isinstance(found, OutboundConnector)
                connector = found
                breaker = self.breakers.setdefault(name, CircuitBreaker(
                    name, failure_threshold=self.settings.breaker.failure_threshold,
                    reset_after_s=self.settings.breaker.reset_after_s))
            pipeline = RoutePipeline(
                route, db=self.db, transport=self.transports[route.lane], catalogue=self.catalogue,
                metrics=self.metrics, exchange=self.settings.exchange, mappings=self.mappings,
                connector=connector, breaker=breaker,
                max_message_bytes=self.settings.consumer.max_message_bytes,
                concurrency=self.settings.consumer.connector_concurrency,
            )
            if route.core_handler is not None:
                pipeline.after_commit = self.relay.wake  # core events go out now, not at the next poll
            self.runtimes[route.name] = RouteRuntime(route, pipeline, self.transports[route.lane])

    def topology(self) -> Topology:
        queues: list[QueueSpec] = []
        for route in self.routes:
            q = route.queues
            queues.append(QueueSpec(q.main, bindings=(route.spec.from_,)))
            queues.append(QueueSpec(q.dead, ttl_ms=DEAD_LETTER_QUEUE_TTL_MS))
            queues.extend(QueueSpec(q.delay(ms), ttl_ms=ms, dead_letter_to=q.main)
                          for ms in route.spec.retry.delays())
        return Topology(self.settings.exchange, tuple(queues))

    async def start(self, role: Role = Role.RUN, *, migrate: bool = True, http: bool | None = None,
                    reuse_port: bool = False) -> None:
        self.role = role
        if role is Role.API:  # the database must be migrated already: several API processes start at once
            await self._start_http(api_only=True, reuse_port=reuse_port)
            self.started = True
            log.info("hub.started", extra={"role": str(role), "database": self.settings.redacted_database_url()})
            return
        if migrate:
            await upgrade_async(self.settings.database_url)
            await seed_tariffs(self.db, self.settings.billing.tariffs_file)  # a fresh database gets the shipped book
        for transport in self._unique_transports():
            await transport.connect()
            await transport.declare(self.topology())
        if (role is Role.RUN and self.settings.billing.daily_at is not None) or self.settings.core.prepaid.enabled:
            await self._require_tariffs()  # the daily billing job and prepaid charging need them: fail now
        if role is Role.RUN:
            for connector in self.connectors.values():
                await connector.start()
        for runtime in self.runtimes.values():
            if not self.consumes_here(runtime):
                if role is Role.WORKER:
                    log.info("hub.route_left_to_run", extra={
                        "route": runtime.route.name, "connector": runtime.route.spec.target_name,
                        "reason": "its connector delivers over connections held by `gashub run`"})
                else:
                    log.info("hub.route_left_to_workers", extra={
                        "route": runtime.route.name, "reason": "consumer.run_routes = 'held'"})
                continue
            await self.start_route(runtime.route.name)
        if role is Role.RUN:
            self._spawn(self.relay.run(), "outbox-relay")
            self._spawn(self.scheduler.run(), "scheduler")
            for name, connector in self.connectors.items():
                if isinstance(connector, InboundConnector):
                    self._spawn(connector.run(), f"connector:{name}")
            if http if http is not None else True:
                await self._start_http()
        self.started = True
        log.info("hub.started", extra={"role": str(role), "routes": len(self.routes),
                                      "transport": self.transports[Lane.NORMAL].name,
                                      "database": self.settings.redacted_database_url()})

    def consumes_here(self, runtime: RouteRuntime) -> bool:
        """Whether this process consumes the route: a worker leaves routes to connectors that deliver
        over connections only a started connector holds (``Connector.delivers_where_started``); with
        ``consumer.run_routes = 'held'``, ``gashub run`` consumes only those and the safety lane."""
        connector = runtime.pipeline.connector
        held = connector is not None and connector.delivers_where_started
        if self.role is Role.WORKER:
            return not held
        if self.role is Role.RUN and self.settings.consumer.run_routes == "held":
            return held or runtime.route.lane is Lane.SAFETY
        return True

    async def start_route(self, name: str) -> None:
        runtime = self.runtimes[name]
        if not runtime.consumers:
            c = self.settings.consumer
            batch = min(runtime.route.spec.batch, c.max_batch)
            if runtime.route.lane is Lane.SAFETY:
                batch = min(batch, 50)
            # Several consumers per route let one batch's database round trips overlap another's work.
            for _ in range(c.parallel):
                runtime.consumers.append(await runtime.transport.consume(
                    runtime.route.queues.main, runtime.pipeline.handle, prefetch=c.prefetch, max_batch=batch))

    async def stop_route(self, name: str) -> None:
        runtime = self.runtimes[name]
        while runtime.consumers:
            await runtime.consumers.pop().cancel()

    async def _start_http(self, *, api_only: bool = False, reuse_port: bool = False) -> None:
        from hub.web import build_api_web_app, build_web_app

        app = build_api_web_app(self) if api_only else build_web_app(self)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.http.host, self.settings.http.port,
                           reuse_port=reuse_port or None)
        await site.start()
        log.info("hub.http_listening", extra={"url": f"http://{self.settings.http.host}:{self.settings.http.port}"})

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        task.add_done_callback(_log_crash)
        self._tasks.append(task)

    def _unique_transports(self) -> Sequence[Transport]:
        seen: list[Transport] = []
        for t in self.transports.values():
            if all(t is not s for s in seen):
                seen.append(t)
        return seen

    async def stop(self) -> None:
        """Stop: connectors and HTTP stop taking work, background tasks end, consumers are cancelled
        (a batch in hand returns to the broker and is redelivered; with the in-memory transport,
        messages still queued in the process are lost with it)."""
        # Stop taking work first (partners, HTTP), then the relay and scheduler, then the consumers.
        for connector in self.connectors.values():
            with contextlib.suppress(Exception):
                await connector.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for name in list(self.runtimes):
            with contextlib.suppress(Exception):
                await self.stop_route(name)
        if self.context.writer is not None:  # pushes in hand are written and answered first (within 10 s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.context.writer.aclose(), 10.0)
        for connector in self.connectors.values():
            await connector.aclose()
        for transport in self._unique_transports():
            await transport.aclose()
        await self.db.aclose()
        self.started = False


def _transports(settings: Settings) -> tuple[Transport, Transport]:
    if settings.amqp_url is None:
        memory = MemoryTransport()
        return memory, memory
    from hub.transport.pika import PikaTransport

    url = settings.amqp_url.get_secret_value()
    # Safety traffic gets its own connections so that a billing backlog never delays a valve closing.
    return PikaTransport(url, name="rabbitmq"), PikaTransport(url, name="rabbitmq-safety")


def privacy_from(settings: Settings) -> Privacy | None:
    """The core's field cipher and blind index from ``core.keys``; None when no key is configured."""
    keys = settings.core.keys
    if not keys:
        return None
    current = settings.core.current_key or (next(iter(keys)) if len(keys) == 1 else None)
    if current is None:
        raise ConfigError("several keys and no current one: set GASHUB_CORE__CURRENT_KEY", where="core.current_key")
    try:
        ring = KeyRing.from_settings(keys, current=current.lower())
    except KeyRingError as exc:
        raise ConfigError(str(exc), where="core.keys") from None
    return Privacy.from_ring(ring)


def _routes_needing_keys(routes: Sequence[Route]) -> list[ConfigError]:
    """Routes to core handlers that encrypt personal data, when the core has no keys."""
    return [
        ConfigError(f"route {route.name!r} targets core:{route.core_handler.name}, which reads or writes personal "
                    "data encrypted: set GASHUB_CORE__KEYS__<id> (a base64 32-byte key) or remove the route",
                    where="core.keys")
        for route in routes
        if route.core_handler is not None and route.core_handler.personal_data
    ]


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("hub.task_crashed", exc_info=task.exception(), extra={"task": task.get_name()})


def check_configuration(settings: Settings) -> list[ConfigError]:
    """Everything ``gashub check`` verifies, without connecting to anything."""
    from hub.mapping import check_mappings
    from hub.routing.loader import check_routes

    problems: list[ConfigError] = list(check_mappings(settings.mappings_dir))
    if problems:
        return problems
    mappings = load_mappings(settings.mappings_dir)
    registry = ConnectorRegistry()
    connectors: dict[str, dict[str, str]] = {}
    for name, raw in settings.connectors.items():
        try:
            cls, _ = registry.settings_for(name, raw)
        except ConfigError as exc:
            problems.append(exc)
            continue
        connectors[name] = dict(cls.actions)
    try:
        tariffs = load_tariffs(settings.billing.tariffs_file)
    except ConfigError as exc:
        problems.append(exc)
        tariffs = None
    prepaid = settings.core.prepaid if tariffs is not None else settings.core.prepaid.model_copy(
        update={"enabled": False})  # the missing tariff file is reported above
    targets = TargetCatalog(core=build_handlers(CoreConfig(readings=settings.core.readings, prepaid=prepaid,
                                                           tariffs=tariffs, alarms=settings.core.alarms,
                                                           work_orders=settings.core.work_orders)),
                            connectors=connectors)
    route_problems = check_routes(settings.routes_dir, catalogue=CATALOGUE, mappings=mappings, targets=targets,
                                  queue_prefix=settings.queue_prefix)
    problems += route_problems
    if not route_problems and not settings.core.keys:
        problems += _routes_needing_keys(compile_routes(settings.routes_dir, catalogue=CATALOGUE, mappings=mappings,
                                                        targets=targets, queue_prefix=settings.queue_prefix))
    return problems
