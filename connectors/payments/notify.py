"""What the payment platforms' notification endpoints share: refusing at the door and handing a
verified payment to the hub.

A notification is read bounded (``read_bounded``), checked, and either refused (``Refused``: the status
the platform gets and the reason the audit gets, through ``context.reject``) or published as
``payment.received`` once per transaction (``publish_payment``), which returns only after the broker
confirmed, so the platform hears its OK only then.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from core.catalogue.messages import MessageType, PaymentReceived
from hub.connectors.contract import ConnectorContext, ReceiveResult
from hub.envelope import Envelope


class Refused(Exception):
    """A notification we do not take: ``status`` and ``reason`` are what the platform and the audit get."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def read_bounded(request: web.Request, max_bytes: int) -> bytes:
    """At most ``max_bytes + 1`` bytes of the body: one byte more than allowed tells it is too big."""
    return await request.content.read(max_bytes + 1)


def check_size(body: bytes, max_bytes: int) -> None:
    if len(body) > max_bytes:
        raise Refused(413, f"body over {max_bytes} bytes")


async def publish_payment(context: ConnectorContext, payment: PaymentReceived) -> ReceiveResult:
    """Hand a payment to the hub, once per ``(channel, transaction id)``; returns after the broker
    confirmed (a copy answers ``duplicate=True``)."""
    envelope = Envelope(type=MessageType.PAYMENT_RECEIVED.value, source=context.name,
                        subject=payment.account_id, data=payment.model_dump(mode="json"))
    return await context.receive(envelope, partner_key=f"transaction:{payment.channel.value}:{payment.transaction_id}")


def problems(exc: ValidationError) -> str:
    """A validation error in one line: ``field: message; …`` (for a refusal's reason)."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
