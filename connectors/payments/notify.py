"""What the payment platforms' notification endpoints share: reading bounded, refusing at the door,
and handing a verified payment to the hub before the platform hears its OK.

:class:`PaymentNotifyConnector` mounts ``POST {path}`` and runs every notification the same way: the
body is read whole up to ``max_body_bytes`` (``read_capped``; one byte more is too big: 413), the subclass's
:meth:`~PaymentNotifyConnector.verified_payment` checks and maps it or raises :class:`Refused` (the
status the platform gets and the reason the audit gets, through ``context.reject``), and the payment
is published as ``payment.received`` once per ``(channel, transaction id)``; only after the broker
confirmed does the platform get :meth:`~PaymentNotifyConnector.ok` (503 when it did not, so the
platform sends again).
"""

from __future__ import annotations

import abc
import logging
from typing import Any, ClassVar, TypeVar

import orjson
from aiohttp import web
from pydantic import Field, ValidationError

from core.catalogue.messages import MessageType, PaymentReceived
from hub.connectors.contract import ConnectorContext, ConnectorSettings, InboundConnector, ReceiveResult
from hub.connectors.http import read_capped
from hub.envelope import Envelope
from hub.errors import HubError

log = logging.getLogger(__name__)


class Refused(Exception):
    """A notification we do not take: ``status`` and ``reason`` are what the platform and the audit get."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class NotifySettings(ConnectorSettings):
    path: str = Field(pattern=r"^/partners/[a-z0-9/_-]+$")
    """Where the platform POSTs its notifications (mounted on the hub's web server)."""
    max_body_bytes: int = Field(default=65_536, ge=1024)


N = TypeVar("N", bound=NotifySettings)


def problems(exc: ValidationError) -> str:
    """A validation error in one line: ``field: message; …`` (for a refusal's reason)."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


async def claim_nonce(context: ConnectorContext, nonce: str) -> None:
    """Refuse (401) a signed request whose nonce any process claimed before: a replay."""
    if not await context.claim_once(f"nonce:{nonce}"):
        raise Refused(401, f"replayed: nonce {nonce[:64]!r} was used before")


def json_object(body: bytes, *, holding: str) -> dict[str, Any]:
    """The JSON object of a body, which must hold an object under ``holding``; ``Refused`` (400) else."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Refused(400, f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get(holding), dict):
        raise Refused(400, f"not a notification: needs an object with {holding!r}")
    return doc


async def publish_payment(context: ConnectorContext, payment: PaymentReceived) -> ReceiveResult:
    """Hand a payment to the hub, once per ``(channel, transaction id)``; returns after the broker
    confirmed (a copy answers ``duplicate=True``)."""
    envelope = Envelope(type=MessageType.PAYMENT_RECEIVED.value, source=context.name,
                        subject=payment.account_id, data=payment.model_dump(mode="json"))
    return await context.receive(envelope, partner_key=f"transaction:{payment.channel.value}:{payment.transaction_id}")


class PaymentNotifyConnector(InboundConnector[N]):
    """An inbound connector for a platform that POSTs signed payment notifications to one path."""

    busy_message: ClassVar[str] = "not accepted yet, send again later"

    def __init__(self, settings: N, context: ConnectorContext) -> None:
        super().__init__(settings, context)
        self.accepted = 0
        context.add_routes([web.post(settings.path, self.notify)])

    @abc.abstractmethod
    async def verified_payment(self, request: web.Request, body: bytes) -> PaymentReceived:
        """Check and map one notification (``body`` is within the size limit); ``Refused`` at the first
        defect, naming it."""

    @abc.abstractmethod
    def ok(self) -> web.Response:
        """What the platform expects once its notification is taken."""

    @abc.abstractmethod
    def refusal(self, refused: Refused) -> web.Response:
        """What the platform gets for a notification refused (or not confirmed: 503)."""

    async def notify(self, request: web.Request) -> web.Response:
        limit = self.settings.max_body_bytes
        body = await read_capped(request.content, limit)
        try:
            if len(body) > limit:
                raise Refused(413, f"body over {limit} bytes")
            payment = await self.verified_payment(request, body)
        except Refused as refused:
            await self.context.reject(refused.reason, body=body[:limit], source=self.kind)
            return self.refusal(refused)
        try:
            result = await publish_payment(self.context, payment)
        except HubError as exc:
            log.warning("payments.notification_not_accepted", extra={"connector": self.kind, "error": str(exc)})
            return self.refusal(Refused(503, self.busy_message))
        self.accepted += 1
        log.info("payments.notification_accepted",
                 extra={"connector": self.kind, "message_id": result.message_id, "duplicate": result.duplicate})
        return self.ok()

    async def run(self) -> None:
        return None
