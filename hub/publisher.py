"""Turning envelopes into broker messages, and publishing with confirms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hub.envelope import Envelope
from hub.transport.base import OutboundMessage, Transport


def to_outbound(
    envelope: Envelope,
    *,
    exchange: str,
    routing_key: str | None = None,
    body: bytes | None = None,
    headers: Mapping[str, Any] | None = None,
) -> OutboundMessage:
    """AMQP properties mirror the envelope's id, correlation id, type and time."""
    # Version, attempt and lane travel in the body; AMQP headers carry only what a hop adds
    # (a retry's reason, a replay's mapping version), which keeps every frame small.
    h: dict[str, Any] = dict(headers) if headers else {}
    return OutboundMessage(
        routing_key=routing_key or envelope.type,
        body=body if body is not None else envelope.to_json(),
        message_id=envelope.id,
        exchange=exchange,
        correlation_id=envelope.correlation_id,
        type=envelope.type,
        timestamp=int(envelope.time.timestamp()),
        headers=h,
    )


STORED_HEADER = "x-gashub-stored"
"""Set on messages the hub stored before it published them: a route skips storing them again (one
primary-key lookup per message saved)."""
_STORED = {STORED_HEADER: 1}


class Publisher:
    """Publishes envelopes to the hub's exchange, or straight to a queue."""

    def __init__(self, transport: Transport, exchange: str) -> None:
        self.transport = transport
        self.exchange = exchange

    async def publish(self, envelopes: Sequence[Envelope], *, stored: bool = False) -> None:
        """``stored``: the hub stored these messages before publishing them (an inbound connector's), so
        the routes that take them need not store them again (``STORED_HEADER``)."""
        headers = _STORED if stored else None
        await self.transport.publish([to_outbound(e, exchange=self.exchange, headers=headers) for e in envelopes])
