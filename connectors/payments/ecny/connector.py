"""Digital RMB (e-CNY, 数字人民币) through the merchant's operating bank: payment notifications in;
order creation and queries out.

Partner: the operating bank's e-CNY merchant API (no public standard exists; this is a generic
signed-JSON adapter). Protocol: the bank POSTs JSON notifications to ``{path}``
(``/partners/ecny/notify``): ``{notifyId, eventType, createTime, order: {…}}``
(:mod:`.transaction`). Authentication: the ``Ecny-*`` headers, a signature over
``timestamp\\nnonce\\nbody\\n`` with the bank's key, ``rsa-sha256`` or ``sm2-sm3`` as ``sign_type``
says (:mod:`.signing`); our calls (:mod:`.client`) are signed with our key the same way. Settings:
:class:`~.settings.EcnySettings`.

What a notification gets (errors are ``{"code": "FAIL", "message": "…"}``; the bank sends again on
anything but 200):

====================================================================  ======
``{"code": "SUCCESS"}``: published as ``payment.received`` and          200
confirmed by the broker (or a copy of a payment already published)
body over ``max_body_bytes``                                            413
missing headers, another sign type, a stale timestamp, a signature     401
that does not verify, a nonce seen before (a replayed request)
not JSON, not a notification, an event other than ``PAYMENT.SUCCESS``,  400
not a paid order of our merchant, no account to credit
the broker did not confirm (the bank will send again)                   503
====================================================================  ======

Everything refused is audited (``context.reject``: reason and body hash) and publishes nothing.
Duplicates: the bank's resends are signed afresh (new timestamp and nonce) and deduplicated by
``txnNo`` (the inbox); the core credits each ``(ecny, txnNo)`` once. A request replayed byte for byte
reuses its nonce and is refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from aiohttp import web

from connectors.payments.ecny import signing
from connectors.payments.ecny.client import EcnyClient
from connectors.payments.ecny.settings import EcnySettings
from connectors.payments.ecny.transaction import PAID_EVENT, SUCCESS, NotPayable, payment_from
from connectors.payments.notify import PaymentNotifyConnector, Refused, claim_nonce, json_object, publish_payment
from connectors.payments.wechatpay.transaction import bill_order_no
from core.catalogue.messages import PaymentReceived
from hub.connectors.contract import Capability, ConnectorContext, Health, ReceiveResult
from hub.errors import PermanentError


class EcnyConnector(PaymentNotifyConnector[EcnySettings]):
    kind = "ecny"
    settings_model = EcnySettings
    capabilities = frozenset({Capability.INBOUND, Capability.HTTP_ENDPOINT})

    def __init__(self, settings: EcnySettings, context: ConnectorContext, *,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(settings, context)
        self.clock = clock
        self.bank = signing.verifier(settings.sign_type, settings.bank_public_key)
        self.client = EcnyClient(
            base_url=settings.base_url, merchant_no=settings.merchant_no, bank=self.bank,
            signer=signing.signer(settings.sign_type, settings.merchant_private_key.get_secret_value()),
            notify_url=settings.notify_url, timeout_s=settings.timeout_s,
            in_call_attempts=settings.in_call_attempts, window_s=settings.timestamp_window_s)

    def ok(self) -> web.Response:
        return web.json_response({"code": "SUCCESS"})

    def refusal(self, refused: Refused) -> web.Response:
        return web.json_response({"code": "FAIL", "message": refused.reason}, status=refused.status)

    async def verified_payment(self, request: web.Request, body: bytes) -> PaymentReceived:
        """Verify the signature, claim the nonce, then read and map the notification. The verification
        runs in a thread: SM2 in pure Python takes tens of milliseconds, which the event loop should not
        wait out in one piece."""
        try:
            signed = await asyncio.to_thread(signing.verify_bank, self.bank, request.headers, body,
                                             now=self.clock(), window_s=self.settings.timestamp_window_s)
        except signing.SignatureError as exc:
            raise Refused(401, str(exc)) from None
        await claim_nonce(self.context, signed.nonce)
        doc = json_object(body, holding="order")
        if doc.get("eventType") != PAID_EVENT:
            raise Refused(400, f"event {str(doc.get('eventType'))[:40]!r} is not handled (only {PAID_EVENT})")
        try:
            return payment_from(doc["order"], merchant_no=self.settings.merchant_no)
        except NotPayable as exc:
            raise Refused(400, f"notification {str(doc.get('notifyId'))[:40]}: {exc}") from None

    async def create_bill_order(self, account_id: str, bill_id: str, amount: Decimal, *, attempt: int = 0,
                                subject: str = "燃气费") -> dict[str, Any]:
        """The bank's order for paying a bill (the same order number each time for one attempt)."""
        return await self.client.create_order(order_no=bill_order_no(account_id, bill_id, attempt), amount=amount,
                                              subject=subject, attach=account_id)

    async def reconcile(self, order_no: str) -> ReceiveResult | None:
        """Ask the bank about an order (one whose notification never came, say) and publish its payment
        when it is paid; ``None`` while it is not. Safe to repeat: the same ``txnNo``."""
        order = await self.client.query(order_no)
        if order.get("status") != SUCCESS:
            return None
        try:
            payment = payment_from(order, merchant_no=self.settings.merchant_no)
        except NotPayable as exc:
            raise PermanentError(f"order {order_no}: {exc}") from None
        return await publish_payment(self.context, payment)

    def health(self) -> Health:
        return Health(ok=True, extra={"accepted": self.accepted, "sign_type": self.settings.sign_type.value})

    async def aclose(self) -> None:
        await self.client.aclose()
