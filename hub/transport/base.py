"""The transport contract: what the hub needs from a message broker.

Two implementations share it: ``PikaTransport`` (RabbitMQ) and ``MemoryTransport`` (the embedded
default). One contract test suite (``tests/contract``) runs against both.

Topology is AMQP's, reduced to what the hub uses:

- one topic exchange (``Topology.exchange``) where messages are published with their type as the
  routing key;
- route queues bound to it by patterns (``*`` one word, ``#`` zero or more);
- delay queues with a per-queue TTL whose expired messages dead-letter back into a route queue
  (that is how a retry waits), and dead-letter queues. Both are addressed by queue name through the
  default exchange (``exchange=""``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

DEFAULT_EXCHANGE = ""


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A durable queue. ``ttl_ms`` with ``dead_letter_to`` makes it a delay queue."""

    name: str
    bindings: tuple[str, ...] = ()
    ttl_ms: int | None = None
    dead_letter_to: str | None = None


@dataclass(frozen=True, slots=True)
class Topology:
    exchange: str
    queues: tuple[QueueSpec, ...]


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One message to publish. ``exchange=""`` sends it straight to the queue named by ``routing_key``."""

    routing_key: str
    body: bytes
    message_id: str
    exchange: str = "gashub"
    correlation_id: str | None = None
    type: str | None = None
    timestamp: int | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Delivery:
    """One message handed to a consumer. ``tag`` belongs to the transport."""

    body: bytes
    routing_key: str
    message_id: str | None
    headers: dict[str, Any]
    redelivered: bool
    tag: int
    queue: str = ""


BatchHandler = Callable[[list[Delivery]], Awaitable[None]]
"""Settles a batch. Returning means every message in it is done (delivered, delayed for a retry or
dead-lettered: the hub has already published whatever that took), so the transport acks them all.
Raising means none is: the transport returns them to the queue for redelivery."""


@dataclass(frozen=True, slots=True)
class QueueInfo:
    name: str
    messages: int
    consumers: int


@runtime_checkable
class ConsumerHandle(Protocol):
    async def cancel(self) -> None:
        """Stop receiving; unacked messages go back to the queue. Safe to call twice."""


@runtime_checkable
class Transport(Protocol):
    """A message broker as the hub sees it."""

    name: str

    async def connect(self) -> None:
        """Open connections. Called once by the composition root before anything else."""

    async def declare(self, topology: Topology) -> None:
        """Create the exchange and queues (idempotent; declared again after every reconnect)."""

    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        """Publish persistently and return only once the broker has confirmed every message.

        Raises ``Unroutable`` when a message reached no queue, ``PublishNacked`` when the broker
        refused one and ``ConnectionLost`` when the connection dropped before all were confirmed
        (some may have been taken: publishing again is safe because consumers deduplicate).
        """

    async def consume(
        self, queue: str, handler: BatchHandler, *, prefetch: int = 1000, max_batch: int = 500
    ) -> ConsumerHandle:
        """Deliver the queue's messages to ``handler`` in batches of at most ``max_batch``."""

    async def queue_info(self, queue: str) -> QueueInfo:
        """Depth and consumer count of a queue."""

    async def purge(self, queue: str) -> int:
        """Drop every ready message of a queue (tests and ops); returns how many were dropped."""

    def healthy(self) -> bool:
        """Whether the transport is connected right now."""

    async def aclose(self) -> None:
        """Cancel consumers and close connections. Never raises."""
