"""A route's consumer: validate → filter → map → deliver → audit → settle, one batch at a time.

For a batch of deliveries from the route's queue:

1. decode each body into an envelope and validate ``data`` against the catalogue; anything wrong
   (too large, not JSON, not an envelope, wrong types, missing fields) is dead-lettered at once
   with the reason;
2. drop what the route's ``where`` filters out; map the rest (the mapping's version is recorded);
3. deliver to the target. A core handler gets the whole batch in one database transaction that also
   claims the route's processed ledger, stores the messages and appends the audit hops, so a
   redelivered message never repeats its effect. A connector gets each message (concurrently,
   behind its circuit breaker);
4. publish what the outcomes need — replies, retries into the delay queue of the policy's wait,
   dead letters into the route's dead-letter queue — with confirms, and only then return, which lets
   the transport ack the batch.

If the process dies anywhere before the ack, the broker redelivers the batch and the ledger turns
every already-applied message into a ``duplicate`` hop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

from core.catalogue import Catalogue, UnknownMessageType
from core.errors import CoreError
from core.messages import Incoming
from hub.breaker import CircuitBreaker
from hub.connectors.contract import OutboundConnector, Receipt
from hub.envelope import Envelope, describe_validation_error
from hub.errors import HubError, InvalidMessage, MalformedMessage, PermanentError, TransientError, UnmappableMessage
from hub.ids import derived_id
from hub.logs import bind
from hub.mapping import Mapping as FieldMapping
from hub.mapping import MappingSet, UnknownMapping
from hub.metrics import HubMetrics, observe_many
from hub.publisher import STORED_HEADER, to_outbound
from hub.routing.loader import Route
from hub.store import deadletters, ledger
from hub.store.audit import Hop, Outcome, append_hops, now_us
from hub.store.db import Database
from hub.store.messages import StoredMessage, store_messages
from hub.transport.base import DEFAULT_EXCHANGE, Delivery, OutboundMessage, Transport

log = logging.getLogger(__name__)

MAPPING_VERSION_HEADER = "x-gashub-mapping-version"
REASON_HEADER = "x-gashub-reason"


@dataclass(slots=True)
class Item:
    """One delivery on its way through the route."""

    delivery: Delivery
    envelope: Envelope | None = None
    target: Envelope | None = None
    """The envelope the target sees: mapped, validated."""
    model: Any = None
    key: str = ""
    outcome: Outcome | None = None
    error: BaseException | None = None
    reply: Mapping[str, Any] | None = None
    mapping_label: str = ""
    started: float = field(default_factory=time.perf_counter)

    @property
    def attempt(self) -> int:
        return self.envelope.attempt if self.envelope else 1

    @property
    def message_id(self) -> str:
        if self.envelope:
            return self.envelope.id
        return self.delivery.message_id or f"unparsed-{self.delivery.tag}"


class RoutePipeline:
    """Settles batches for one route. Stateless between batches: any number of processes may run
    the same route against the same queue."""

    def __init__(
        self,
        route: Route,
        *,
        db: Database,
        transport: Transport,
        catalogue: Catalogue,
        metrics: HubMetrics,
        exchange: str,
        mappings: MappingSet | None = None,
        connector: OutboundConnector[Any] | None = None,
        breaker: CircuitBreaker | None = None,
        max_message_bytes: int = 1_048_576,
        concurrency: int = 32,
    ) -> None:
        self.route = route
        self.db = db
        self.transport = transport
        self.catalogue = catalogue
        self.metrics = metrics
        self.exchange = exchange
        self.mappings = mappings
        self.connector = connector
        self.breaker = breaker
        self.max_message_bytes = max_message_bytes
        self._limit = asyncio.Semaphore(concurrency)
        self._in_flight: dict[str, asyncio.Future[Item]] = {}
        self.after_commit: Callable[[], None] | None = None
        """Called after a core handler's transaction committed (the hub wakes the outbox relay)."""
        self.last_error: str = ""
        self.settled = 0
        self.in_hand = 0
        """Deliveries this process holds (taken from the queue, not yet settled): while a partner's
        breaker is open they wait here, unacked, and a broker's queue depth no longer counts them."""
        if route.core_handler is None and connector is None:
            raise ValueError(f"route {route.name}: no core handler and no connector to deliver to")

    async def handle(self, deliveries: list[Delivery]) -> None:
        """The transport's batch handler: returns once every delivery is settled."""
        self.in_hand += len(deliveries)
        try:
            with bind(route=self.route.name):
                await self._handle(deliveries)
        finally:
            self.in_hand -= len(deliveries)

    async def _handle(self, deliveries: list[Delivery]) -> None:
        t0 = time.perf_counter()
        items = [self._prepare(d) for d in deliveries]
        ready = [i for i in items if i.outcome is None]
        if self.route.core_handler is not None:
            await self._deliver_to_core(items, ready)
        else:
            await self._deliver_to_connector(items, ready)
        await self._publish_consequences(items)
        self._observe(items, time.perf_counter() - t0)

    # 1–2: decode, validate, filter, map -------------------------------------------------------

    def _prepare(self, delivery: Delivery) -> Item:
        item = Item(delivery)
        try:
            if len(delivery.body) > self.max_message_bytes:
                raise MalformedMessage(
                    f"body is {len(delivery.body):,} bytes; the limit is {self.max_message_bytes:,} "
                    "(consumer.max_message_bytes)"
                )
            env = item.envelope = Envelope.from_json(delivery.body)
            mapping = self._mapping_for(delivery)
            model = None
            if (env.type, env.version) in self.catalogue:
                model = self._validate(env.type, env.version, env.data)
            elif mapping is None:
                raise InvalidMessage(f"type {env.type!r} v{env.version} is not in the catalogue")
            ctx = None
            if self.route.where is not None or self.route.dedup is not None:
                ctx = {"data": env.data, "type": env.type, "source": env.source, "subject": env.subject,
                       "attempt": env.attempt, "headers": delivery.headers}
            if self.route.where is not None and not self.route.where(ctx or {}):
                item.outcome = Outcome.FILTERED
                return item
            if mapping is not None:
                item.mapping_label = f"{mapping.name}@{mapping.version}"
                target_type = mapping.target
                entry_version = self.catalogue.latest(target_type).version
                model = self._validate(target_type, entry_version, mapping.apply(env.data))
                if self.connector is not None:  # connectors take an envelope; core handlers the model
                    item.target = env.model_copy(update={
                        "type": target_type, "version": entry_version, "data": model.model_dump(mode="json")})
            else:
                item.target = env
            item.model = model
            item.key = self.route.dedup(ctx or {}) if self.route.dedup is not None else env.id
        except (MalformedMessage, InvalidMessage, UnmappableMessage) as exc:
            item.outcome, item.error = Outcome.DEAD, exc
        except Exception as exc:
            log.exception("route.prepare_failed", extra={"message_id": item.message_id})
            item.outcome, item.error = Outcome.DEAD, exc
        return item

    def _validate(self, type_: str, version: int, data: Mapping[str, Any]) -> Any:
        try:
            return self.catalogue.validate(type_, version, data)
        except UnknownMessageType as exc:
            raise InvalidMessage(str(exc)) from None
        except ValidationError as exc:
            raise InvalidMessage(f"{type_} v{version}: {describe_validation_error(exc)}") from None

    def _mapping_for(self, delivery: Delivery) -> FieldMapping | None:
        """The route's mapping, or the version a replay asked for in its header."""
        mapping = self.route.mapping
        wanted = delivery.headers.get(MAPPING_VERSION_HEADER)
        if mapping is None or wanted is None or self.mappings is None:
            return mapping
        try:
            return self.mappings.get(mapping.name, int(wanted))
        except (UnknownMapping, ValueError) as exc:
            raise UnmappableMessage(f"replay asked for {mapping.name}@{wanted}: {exc}") from None

    # 3a: core targets -------------------------------------------------------------------------

    async def _deliver_to_core(self, items: list[Item], ready: list[Item]) -> None:
        try:
            async with self.db.begin() as conn:
                await self._apply_core(conn, ready)
                await self._record(conn, items)
            self._committed()
            return
        except Exception as exc:
            if not ready:
                raise
            log.info("route.batch_failed_isolating", extra={"error": repr(exc)})
        for item in ready:
            item.outcome = item.error = None
            try:
                async with self.db.begin() as conn:
                    await self._apply_core(conn, [item])
                    await self._record(conn, [item])
            except Exception as exc:
                if _infrastructure(exc):
                    raise  # the database itself is unreachable: the whole batch comes back later
                item.outcome, item.error = self._classify(exc), exc
        self._committed()
        unrecorded = [i for i in items if i not in ready or i.outcome in (Outcome.RETRY, Outcome.DEAD)]
        if unrecorded:
            async with self.db.begin() as conn:
                await self._record(conn, unrecorded)

    def _committed(self) -> None:
        if self.after_commit is not None:
            self.after_commit()

    async def _apply_core(self, conn: Any, ready: list[Item]) -> None:
        handler = self.route.core_handler
        assert handler is not None
        if not ready:
            return
        fresh_keys = await ledger.claim(conn, self.route.name, [(i.key, None) for i in ready])
        fresh: list[Item] = []
        seen: set[str] = set()
        duplicates: list[Item] = []
        for item in ready:
            if item.key in fresh_keys and item.key not in seen:
                seen.add(item.key)
                fresh.append(item)
            else:
                item.outcome = Outcome.DUPLICATE
                duplicates.append(item)
        if duplicates and self.route.spec.reply:
            done = await ledger.already_processed(conn, self.route.name, [i.key for i in duplicates])
            for item in duplicates:
                item.reply = ledger.decode_reply(done.get(item.key))
        if fresh:
            incoming = [
                Incoming(i.message_id, self.route.input_type, i.envelope.subject if i.envelope else None,
                         i.envelope.correlation_id if i.envelope else i.message_id, i.model)
                for i in fresh
            ]
            replies = await handler.fn(conn, incoming)
            for item, reply in zip(fresh, replies, strict=True):
                item.outcome, item.reply = Outcome.DELIVERED, reply
            answered = [(i.key, i.reply) for i in fresh if i.reply is not None]
            if answered and self.route.spec.reply:
                await ledger.store_replies(conn, self.route.name, answered)

    # 3b: connector targets --------------------------------------------------------------------

    async def _deliver_to_connector(self, items: list[Item], ready: list[Item]) -> None:
        """Call the partner once per key. Keys are claimed in this process first (another batch
        holding the same key waits for its outcome), then checked against the ledger; the claim is
        released only after the ledger row committed. Across processes the partner's idempotency
        key covers the window between its answer and the ledger commit."""
        mine: dict[str, asyncio.Future[Item]] = {}
        first: dict[str, Item] = {}
        waiting: list[tuple[Item, asyncio.Future[Item]]] = []
        copies: list[Item] = []
        loop = asyncio.get_running_loop()
        for item in ready:
            if item.key in first:
                copies.append(item)  # the same key twice in this batch
            elif item.key in self._in_flight:
                waiting.append((item, self._in_flight[item.key]))  # another batch holds it
            else:
                first[item.key] = item
                mine[item.key] = self._in_flight[item.key] = loop.create_future()
        try:
            if first:
                async with self.db.read() as conn:
                    done = await ledger.already_processed(conn, self.route.name, list(first))
                for key, reply in done.items():
                    first[key].outcome, first[key].reply = Outcome.DUPLICATE, ledger.decode_reply(reply)
                await asyncio.gather(*(self._call(i) for i in first.values() if i.outcome is None))
            for item in copies:
                _follow(item, first[item.key])
            async with self.db.begin() as conn:
                delivered = [i for i in ready if i.outcome is Outcome.DELIVERED]
                await ledger.claim(conn, self.route.name,
                                   [(i.key, ledger.encode_reply(i.reply)) for i in delivered])
                await self._record(conn, [i for i in items if all(i is not w for w, _ in waiting)])
        finally:
            for key, future in mine.items():
                del self._in_flight[key]
                future.set_result(first[key])
        if waiting:
            for item, future in waiting:
                _follow(item, await asyncio.shield(future))
            async with self.db.begin() as conn:
                await self._record(conn, [w for w, _ in waiting])

    async def _call(self, item: Item) -> None:
        assert self.connector is not None
        assert item.target is not None
        name = self.route.spec.target_name
        async with self._limit:
            trial = await self.breaker.wait_ready() if self.breaker else False
            t0 = time.perf_counter()
            outcome = "ok"
            try:
                with bind(connector=name, message_id=item.message_id, attempt=item.attempt,
                          correlation_id=item.target.correlation_id):
                    receipt: Receipt = await self.connector.deliver(item.target, self.route.spec.target_action)
                item.outcome, item.reply = Outcome.DELIVERED, receipt.reply
                if self.breaker:
                    self.breaker.success(trial)
            except Exception as exc:  # noqa: BLE001 - every failure becomes an outcome
                item.outcome, item.error = self._classify(exc), exc
                outcome = "transient" if item.outcome is Outcome.RETRY else "permanent"
                if self.breaker:
                    if isinstance(exc, TransientError):
                        self.breaker.failure(trial)
                    else:
                        self.breaker.neutral(trial)
            except BaseException:
                if self.breaker:  # cancelled mid-call: free the trial for the next caller
                    self.breaker.neutral(trial)
                raise
            finally:
                self.metrics.connector_calls.labels(name, outcome).inc()
                self.metrics.connector_seconds.labels(name).observe(time.perf_counter() - t0)
                if self.breaker:
                    self.metrics.breaker_open.labels(name).set(int(self.breaker.state != "closed"))

    # outcomes ---------------------------------------------------------------------------------

    def _classify(self, exc: BaseException) -> Outcome:
        retriable = bool(getattr(exc, "retriable", False))
        if not isinstance(exc, HubError | CoreError):
            # A connector let a vendor exception escape: treat it as transient, but say so.
            log.error("route.untranslated_exception", exc_info=exc)
            retriable = not isinstance(exc, PermanentError | ValueError | TypeError | LookupError)
        return Outcome.RETRY if retriable else Outcome.DEAD

    def _final_outcome(self, item: Item) -> Outcome:
        if item.outcome is Outcome.RETRY and item.attempt >= self.route.spec.retry.max_attempts:
            return Outcome.DEAD
        assert item.outcome is not None
        return item.outcome

    async def _record(self, conn: Any, items: Sequence[Item]) -> None:
        """Store messages, dead-letter records and audit hops in the caller's transaction."""
        stamp = now_us()
        stored = [StoredMessage(i.envelope, i.delivery.body, i.delivery.headers) for i in items
                  if i.envelope and not i.delivery.headers.get(STORED_HEADER)]  # an inbound connector's: stored
        await store_messages(conn, stored, self.db.sealer)
        letters = []
        hops = []
        for item in items:
            outcome = self._final_outcome(item)
            error = _describe(item.error) if item.error else ""
            if outcome is Outcome.DEAD:
                if item.outcome is Outcome.RETRY:
                    error = f"gave up after {item.attempt} attempts: {error}"
                letters.append(deadletters.DeadLetter(
                    message_id=item.message_id, route=self.route.name, reason=error,
                    error_class=type(item.error).__name__ if item.error else "", attempts=item.attempt,
                    body=item.delivery.body,
                    correlation_id=item.envelope.correlation_id if item.envelope else None,
                    type=item.envelope.type if item.envelope else None,
                ))
            hops.append(Hop(  # positional: one per message (message, flow, route, attempt, outcome, …)
                item.message_id, item.envelope.correlation_id if item.envelope else item.message_id,
                self.route.name, item.attempt, outcome, int((time.perf_counter() - item.started) * 1e6), error,
                item.mapping_label, stamp,
            ))
        await deadletters.record(conn, letters, self.db.sealer)
        await append_hops(conn, hops)

    async def _publish_consequences(self, items: Sequence[Item]) -> None:
        out: list[OutboundMessage] = []
        retry = self.route.spec.retry
        for item in items:
            outcome = self._final_outcome(item)
            if outcome is Outcome.RETRY and item.envelope is not None:
                nxt = item.envelope.next_attempt()
                delay = retry.delay_before(nxt.attempt)
                out.append(to_outbound(
                    nxt, exchange=DEFAULT_EXCHANGE, routing_key=self.route.queues.delay(delay),
                    headers={REASON_HEADER: _describe(item.error)[:500]} | _keep(item.delivery.headers)))
            elif outcome is Outcome.DEAD:
                out.append(OutboundMessage(
                    routing_key=self.route.queues.dead, body=item.delivery.body, message_id=item.message_id,
                    exchange=DEFAULT_EXCHANGE, headers={REASON_HEADER: _describe(item.error)[:500],
                                                        "x-gashub-route": self.route.name}))
            elif (outcome in (Outcome.DELIVERED, Outcome.DUPLICATE) and item.reply is not None
                  and self.route.spec.reply and item.envelope is not None):
                # The reply's id is derived from the request's, so a reply published again after a
                # redelivery is the same message and is deduplicated downstream.
                reply = item.envelope.caused(self.route.spec.reply, item.reply, source=self.route.name,
                                             id=derived_id(item.key, self.route.name))
                out.append(to_outbound(reply, exchange=self.exchange))
        if out:
            await self.transport.publish(out)

    def _observe(self, items: Sequence[Item], seconds: float) -> None:
        name = self.route.name
        counts: dict[Outcome, int] = {}
        now = time.time()
        latencies: list[float] = []
        for item in items:
            outcome = self._final_outcome(item)
            counts[outcome] = counts.get(outcome, 0) + 1
            if outcome is Outcome.DELIVERED and item.envelope is not None:
                latencies.append(max(0.0, now - item.envelope.time.timestamp()))
            if item.error is not None:
                self.last_error = _describe(item.error)[:300]
        if latencies:
            observe_many(self.metrics.message_latency.labels(name), latencies)
        for outcome, n in counts.items():
            self.metrics.messages.labels(name, str(outcome)).inc(n)
        self.metrics.batch_seconds.labels(name).observe(seconds)
        self.metrics.rates.mark(name, len(items))
        self.settled += len(items)


def _follow(item: Item, original: Item) -> None:
    """A copy of a message takes the outcome of the one that was delivered to the partner."""
    item.outcome, item.reply, item.error = original.outcome, original.reply, original.error
    if original.outcome in (Outcome.DELIVERED, Outcome.DUPLICATE):
        item.outcome = Outcome.DUPLICATE
    elif original.outcome is None:  # the original's batch was interrupted: try this one again
        item.outcome, item.error = Outcome.RETRY, TransientError("an earlier copy's delivery was interrupted")


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    text = (str(exc) or type(exc).__name__).replace("\x00", "\\0")  # PostgreSQL text holds no NUL
    return f"{type(exc).__name__}: {text}"


def _infrastructure(exc: BaseException) -> bool:
    """Errors of the database connection rather than of one message's data."""
    return isinstance(exc, OperationalError | InterfaceError | DisconnectionError | OSError | TimeoutError) or bool(
        getattr(exc, "connection_invalidated", False))


def _keep(headers: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in headers.items() if k == MAPPING_VERSION_HEADER}
