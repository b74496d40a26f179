"""``MemoryTransport``: the embedded default, a broker inside the process.

Same semantics as the RabbitMQ topology the hub declares: topic routing with ``mandatory``
(unroutable messages raise), competing consumers, batch acks, redelivery of a failed batch with
``redelivered`` set, per-queue TTL that dead-letters expired messages into another queue. State
lives on the instance, so two hubs in one process do not share queues. It cannot survive the
process; that is what RabbitMQ is for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from hub.errors import ConnectionLost, Unroutable
from hub.transport.base import (
    DEFAULT_EXCHANGE,
    BatchHandler,
    Delivery,
    OutboundMessage,
    QueueInfo,
    QueueSpec,
    Topology,
)
from hub.transport.topic import topic_matches

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Stored:
    message: OutboundMessage
    redelivered: bool = False


@dataclass
class _Queue:
    spec: QueueSpec
    ready: deque[_Stored] = field(default_factory=deque)
    unacked: int = 0
    consumers: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


class _MemoryConsumer:
    def __init__(self, task: asyncio.Task[None], queue: _Queue, registry: set[_MemoryConsumer]) -> None:
        self._task = task
        self._queue = queue
        self._registry = registry
        registry.add(self)

    async def cancel(self) -> None:
        self._registry.discard(self)
        if not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class MemoryTransport:
    """In-process broker with the hub topology's semantics."""

    name = "memory"

    def __init__(self) -> None:
        self._queues: dict[str, _Queue] = {}
        self._bindings: dict[str, list[tuple[str, _Queue]]] = {}
        self._exchanges: set[str] = set()
        self._consumers: set[_MemoryConsumer] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._tag = 0
        self._open = False

    async def connect(self) -> None:
        self._open = True

    def healthy(self) -> bool:
        return self._open

    async def declare(self, topology: Topology) -> None:
        self._exchanges.add(topology.exchange)
        for spec in topology.queues:
            queue = self._queues.get(spec.name)
            if queue is None:
                queue = self._queues[spec.name] = _Queue(spec)
            for pattern in spec.bindings:
                bound = self._bindings.setdefault(topology.exchange, [])
                if (pattern, queue) not in bound:
                    bound.append((pattern, queue))

    def _targets(self, message: OutboundMessage) -> list[_Queue]:
        if message.exchange == DEFAULT_EXCHANGE:
            queue = self._queues.get(message.routing_key)
            return [queue] if queue else []
        if message.exchange not in self._exchanges:
            raise Unroutable(f"exchange {message.exchange!r} is not declared")
        seen: dict[str, _Queue] = {}
        for pattern, queue in self._bindings.get(message.exchange, ()):
            if topic_matches(pattern, message.routing_key):
                seen[queue.spec.name] = queue
        return list(seen.values())

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        if not self._open:
            raise ConnectionLost("memory transport is closed")
        # Check every message first: a batch is taken whole or refused, like confirms would show.
        plans = []
        for message in messages:
            targets = self._targets(message)
            if not targets:
                raise Unroutable(
                    f"no queue is bound for {message.routing_key!r} on {message.exchange or 'default'!r}"
                )
            plans.append((message, targets))
        for message, targets in plans:
            for queue in targets:
                self._enqueue(queue, _Stored(message))
        await asyncio.sleep(0)

    def _enqueue(self, queue: _Queue, stored: _Stored) -> None:
        spec = queue.spec
        if spec.ttl_ms is not None:
            loop = asyncio.get_running_loop()
            target = spec.dead_letter_to
            queue.ready.append(stored)
            if target is None:
                queue.arrived.set()

            def expire() -> None:
                # Expired: dead-lettered into the target queue, or dropped when there is none
                # (as the broker does), so that queues with a TTL never grow without bound.
                self._timers.discard(handle)
                with contextlib.suppress(ValueError):
                    queue.ready.remove(stored)
                    dest = self._queues.get(target) if target is not None else None
                    if dest is not None:
                        self._enqueue(dest, _Stored(stored.message))
                    elif target is not None:
                        log.warning("transport.memory.dead_letter_target_missing", extra={"queue": target})

            handle = loop.call_later(spec.ttl_ms / 1000, expire)
            self._timers.add(handle)
            return
        queue.ready.append(stored)
        queue.arrived.set()

    async def consume(
        self, queue: str, handler: BatchHandler, *, prefetch: int = 1000, max_batch: int = 500
    ) -> _MemoryConsumer:
        q = self._queues.get(queue)
        if q is None:
            raise Unroutable(f"queue {queue!r} is not declared")
        task = asyncio.get_running_loop().create_task(
            self._run(q, handler, min(prefetch, max_batch)), name=f"memory-consumer:{queue}"
        )
        return _MemoryConsumer(task, q, self._consumers)

    async def _run(self, queue: _Queue, handler: BatchHandler, max_batch: int) -> None:
        queue.consumers += 1
        try:
            while True:
                while not queue.ready:
                    queue.arrived.clear()
                    await queue.arrived.wait()
                taken: list[_Stored] = []
                while queue.ready and len(taken) < max_batch:
                    taken.append(queue.ready.popleft())
                queue.unacked += len(taken)
                batch = []
                for stored in taken:
                    self._tag += 1
                    m = stored.message
                    batch.append(
                        Delivery(
                            body=m.body,
                            routing_key=m.routing_key,
                            message_id=m.message_id,
                            headers=dict(m.headers),
                            redelivered=stored.redelivered,
                            tag=self._tag,
                            queue=queue.spec.name,
                        )
                    )
                try:
                    await handler(batch)
                except BaseException as exc:
                    for stored in reversed(taken):
                        stored.redelivered = True
                        queue.ready.appendleft(stored)
                    queue.arrived.set()
                    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                        raise
                    log.warning("transport.memory.batch_requeued", exc_info=True)
                    await asyncio.sleep(0.05)
                finally:
                    queue.unacked -= len(taken)
        finally:
            queue.consumers -= 1

    async def queue_info(self, queue: str) -> QueueInfo:
        q = self._queues.get(queue)
        if q is None:
            raise Unroutable(f"queue {queue!r} is not declared")
        return QueueInfo(queue, len(q.ready) + q.unacked, q.consumers)

    async def purge(self, queue: str) -> int:
        q = self._queues.get(queue)
        if q is None:
            return 0
        n = len(q.ready)
        q.ready.clear()
        return n

    async def aclose(self) -> None:
        self._open = False
        for consumer in list(self._consumers):
            with contextlib.suppress(Exception):
                await consumer.cancel()
        self._consumers.clear()
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
