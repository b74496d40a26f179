"""Alipay (支付宝) open platform: asynchronous trade notifications in; precreate and query out.

Partner: Alipay, an application (``app_id``) of a merchant. Protocol: Alipay POSTs
``application/x-www-form-urlencoded`` notifications (``notify_type=trade_status_sync``) to ``{path}``
(``/partners/alipay/notify``) and takes the reply body ``success`` as received; anything else is sent
again, about 8 times over 25 hours, with the same ``notify_id``. Authentication: RSA2
(SHA256withRSA) with the Alipay public key over the sorted, URL-decoded parameters without ``sign``
and ``sign_type`` (:mod:`.signing`). Outbound calls (:mod:`.client`) are signed with the application
private key. Settings: :class:`~.settings.AlipaySettings`.

What a notification gets (``text/plain``; Alipay reads only whether the body is ``success``):

==================================================================  =====================
``TRADE_SUCCESS``/``TRADE_FINISHED``: published as                  200 ``success``
``payment.received`` and confirmed by the broker (or a copy of a
payment already published)
``WAIT_BUYER_PAY``/``TRADE_CLOSED``: audited, nothing credited      200 ``success``
body over ``max_body_bytes``                                        413 ``fail: …``
not a form, a name twice, an unknown charset, missing fields,       400 ``fail: …``
another ``notify_type``, another application or seller, an
unknown trade status, a paid trade we cannot credit
no or a non-RSA2 signature, one that does not verify, a stale or    401 ``fail: …``
future ``notify_time``, a ``notify_id`` answered ``success`` before
(a replay)
the broker did not confirm (Alipay sends again)                     503 ``fail: …``
==================================================================  =====================

Everything refused is audited (``context.reject``: reason and body hash) and publishes nothing.

Duplicates and replays: a paid trade is published once per ``trade_no`` (the inbox), so Alipay's
resends and a ``TRADE_FINISHED`` after ``TRADE_SUCCESS`` credit nothing more. A notification is spent
when it is answered ``success`` (``context.claim_once`` of its ``notify_id`` and ``notify_time``, after
the broker confirmed, as Alipay itself invalidates the ``notify_id`` then); the same signed notification
again is a replay and is refused. Alipay's own resends carry the ``notify_id`` with a new ``notify_time``
(the time of each sending, signed afresh): they pass, so that when our ``success`` was lost on the way
Alipay hears it at its next resend instead of being refused until it gives up. Copies of one
notification handled at the same time in this process all hear ``success``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import web

from connectors.payments.alipay import signing
from connectors.payments.alipay.client import AlipayClient, AlipayError
from connectors.payments.alipay.settings import AlipaySettings
from connectors.payments.alipay.trade import (
    ACKNOWLEDGED,
    PAID,
    NotPayable,
    beijing_time,
    bill_order_no,
    payment_from,
)
from core.catalogue.messages import MessageType, PaymentReceived
from hub.connectors.contract import Capability, ConnectorContext, Health, InboundConnector, ReceiveResult
from hub.connectors.http import read_capped
from hub.envelope import Envelope
from hub.errors import HubError, PermanentError

log = logging.getLogger(__name__)

SUCCESS = "success"
NOTIFY_TYPE = "trade_status_sync"
NOTIFY_ID_MAX = 128
"""Alipay documents ``notify_id`` as String(128)."""
REQUIRED = ("notify_time", "notify_type", "notify_id", "app_id", "sign", "sign_type", "trade_no",
            "out_trade_no", "trade_status")


class Refused(Exception):
    """A notification we do not take: ``status`` and ``reason`` are what Alipay and the audit get."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def fail(status: int, reason: str) -> web.Response:
    """Anything but ``success`` makes Alipay send again; the reason helps whoever reads its logs."""
    return web.Response(status=status, text=f"fail: {reason}", content_type="text/plain")


@dataclass
class _Copies:
    """Copies of one notification in hand at once in this process."""

    count: int = 0
    answered: bool = False
    """One of them claimed the ``notify_id``: the others are the same notification, not replays."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class AlipayConnector(InboundConnector[AlipaySettings]):
    kind = "alipay"
    settings_model = AlipaySettings
    capabilities = frozenset({Capability.INBOUND, Capability.HTTP_ENDPOINT})

    def __init__(self, settings: AlipaySettings, context: ConnectorContext, *,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(settings, context)
        self.clock = clock
        self.alipay_key = signing.load_public_key(settings.alipay_public_key)
        self.client = AlipayClient(
            gateway_url=settings.gateway_url, app_id=settings.app_id,
            private_key=signing.load_private_key(settings.app_private_key.get_secret_value()),
            alipay_public_key=self.alipay_key, notify_url=settings.notify_url, timeout_s=settings.timeout_s,
            in_call_attempts=settings.in_call_attempts)
        self.accepted = 0
        self.acknowledged = 0
        self._in_hand: dict[str, _Copies] = {}
        context.add_routes([web.post(settings.path, self.notify)])

    async def notify(self, request: web.Request) -> web.Response:
        body = await read_capped(request.content, self.settings.max_body_bytes)
        kept = body[:self.settings.max_body_bytes]
        try:
            params = self._verified(body)
        except Refused as refused:
            await self.context.reject(refused.reason, body=kept, source="alipay")
            return fail(refused.status, refused.reason)
        with self._copy(params["notify_id"]) as copies:
            try:
                outcome = await self._take(params, kept, copies)
            except Refused as refused:
                await self.context.reject(refused.reason, body=kept, source="alipay")
                return fail(refused.status, refused.reason)
            except HubError as exc:
                log.warning("alipay.not_accepted", extra={"error": str(exc)})
                return fail(503, "not accepted yet, send again later")
        log.info("alipay.notification_answered", extra={"outcome": outcome})
        return web.Response(text=SUCCESS, content_type="text/plain")

    @contextmanager
    def _copy(self, notify_id: str) -> Iterator[_Copies]:
        copies = self._in_hand.setdefault(notify_id, _Copies())
        copies.count += 1
        try:
            yield copies
        finally:
            copies.count -= 1
            if copies.count == 0:
                del self._in_hand[notify_id]

    def _verified(self, body: bytes) -> dict[str, str]:
        """Decode and verify one notification, in that order; ``Refused`` at the first defect."""
        if len(body) > self.settings.max_body_bytes:
            raise Refused(413, f"body over {self.settings.max_body_bytes} bytes")
        try:
            params = signing.parse_form(body).params
        except signing.FormError as exc:
            raise Refused(400, f"not a notification form: {exc}") from None
        missing = [name for name in REQUIRED if not params.get(name)]
        if missing:
            raise Refused(400 if "sign" not in missing else 401, f"missing {', '.join(missing)}")
        try:
            signing.verify_notification(self.alipay_key, params)
        except signing.SignatureError as exc:
            raise Refused(401, str(exc)) from None
        if params["app_id"] != self.settings.app_id:
            raise Refused(400, f"app_id {params['app_id'][:20]!r} is not ours ({self.settings.app_id})")
        seller = self.settings.seller_id
        if seller is not None and params.get("seller_id") != seller:
            raise Refused(400, f"seller_id {params.get('seller_id', '')[:20]!r} is not ours ({seller})")
        if len(params["notify_id"]) > NOTIFY_ID_MAX:
            raise Refused(400, f"notify_id longer than Alipay's {NOTIFY_ID_MAX} characters")
        if params["notify_type"] != NOTIFY_TYPE:
            raise Refused(400, f"notify_type {params['notify_type'][:40]!r} is not {NOTIFY_TYPE}")
        try:
            sent = beijing_time(params["notify_time"]).timestamp()
        except ValueError:
            raise Refused(400, "notify_time is not yyyy-MM-dd HH:mm:ss") from None
        age = self.clock() - sent
        if age > self.settings.notify_window_s or -age > self.settings.future_skew_s:
            raise Refused(401, f"stale notify_time: sent {int(age)}s from our clock "
                               f"(window {self.settings.notify_window_s}s back, {self.settings.future_skew_s}s ahead)")
        return params

    async def _take(self, params: dict[str, str], body: bytes, copies: _Copies) -> str:
        """Publish a paid trade (returns after the broker confirmed) or audit one that credits nothing;
        either way the ``notify_id`` is spent before ``success`` is answered."""
        state = params["trade_status"]
        if state in ACKNOWLEDGED:
            await self._spend(params, copies)
            await self.context.reject(f"acknowledged, not credited: trade {params['trade_no'][:64]} is {state}",
                                      body=body, source="alipay")
            self.acknowledged += 1
            return f"acknowledged {state}"
        if state not in PAID:
            raise Refused(400, f"trade_status {state[:30]!r} is not one Alipay sends")
        try:
            payment = payment_from(params)
        except NotPayable as exc:
            raise Refused(400, f"notification {params['notify_id'][:64]}: {exc}") from None
        result = await self.publish(payment)
        await self._spend(params, copies)
        self.accepted += 1
        return "duplicate" if result.duplicate else "published"

    async def _spend(self, params: dict[str, str], copies: _Copies) -> None:
        """Claim the notification: its ``notify_id`` as sent at its ``notify_time`` (``Refused`` when it
        was spent before, unless by a copy in hand now). A resend (a new ``notify_time``) is not a replay."""
        notify_id, sent_at = params["notify_id"], params["notify_time"]
        async with copies.lock:
            if not copies.answered and not await self.context.claim_once(f"notify:{notify_id}@{sent_at}"):
                raise Refused(401, f"replayed: notify_id {notify_id[:64]!r} sent at {sent_at[:19]} was answered "
                                   "success before")
            copies.answered = True

    async def publish(self, payment: PaymentReceived) -> ReceiveResult:
        """Hand a payment to the hub, once per trade number; returns after the broker confirmed."""
        envelope = Envelope(type=MessageType.PAYMENT_RECEIVED.value, source=self.context.name,
                            subject=payment.account_id, data=payment.model_dump(mode="json"))
        return await self.context.receive(envelope, partner_key=f"trade:{payment.transaction_id}")

    async def qr_for_bill(self, *, account_id: str, bill_id: str, amount: Decimal, subject: str,
                          attempt: int = 0) -> tuple[str, str]:
        """Precreate the order that pays ``bill_id`` (its number derived from the bill, so asking again
        gives the same order); return ``(out_trade_no, qr_code)``. A closed order is created anew with
        ``attempt + 1``."""
        out_trade_no = bill_order_no(account_id, bill_id, attempt)
        qr_code = await self.client.precreate(out_trade_no=out_trade_no, subject=subject, amount=amount,
                                              timeout_express=self.settings.qr_timeout)
        return out_trade_no, qr_code

    async def reconcile(self, out_trade_no: str) -> ReceiveResult | None:
        """Ask Alipay about an order (one whose notification never came, say) and publish its payment
        when it is paid; ``None`` while it is not. Safe to repeat: the same trade number."""
        try:
            trade = await self.client.query(out_trade_no=out_trade_no)
        except AlipayError as exc:
            if exc.sub_code == "ACQ.TRADE_NOT_EXIST":  # not scanned yet
                return None
            raise
        if trade.get("trade_status") not in PAID:
            return None
        fields = {k: str(v) for k, v in trade.items() if isinstance(v, str | int)}
        try:
            payment = payment_from(fields)
        except NotPayable as exc:
            raise PermanentError(f"order {out_trade_no}: {exc}") from None
        return await self.publish(payment)

    def health(self) -> Health:
        extra: dict[str, Any] = {"accepted": self.accepted, "acknowledged": self.acknowledged,
                                 "app_id": self.settings.app_id}
        return Health(ok=True, extra=extra)

    async def run(self) -> None:
        return None

    async def aclose(self) -> None:
        await self.client.aclose()
