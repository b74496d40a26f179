"""WeChat Pay API v3: payment notifications in; Native orders, order queries and refunds out.

Partner: WeChat Pay (微信支付), direct-merchant mode. Protocol: the platform POSTs JSON notifications
to ``{path}`` (``/partners/wechatpay/notify``): headers ``Wechatpay-Timestamp``, ``-Nonce``,
``-Signature``, ``-Serial``; body ``{id, event_type, resource_type, resource: {AEAD_AES_256_GCM …}}``.
Authentication: SHA256withRSA over ``timestamp\\nnonce\\nbody\\n`` with the platform key that
``Wechatpay-Serial`` names (certificate serial or ``PUB_KEY_ID_…``); the resource decrypts with the
APIv3 key. Outbound calls (:mod:`.client`) are signed with the merchant's private key. Settings:
:class:`~.settings.WeChatPaySettings`.

What a notification gets (the error body is the platform's ``{"code": "FAIL", "message": "…"}``; the
platform sends again on anything but 2xx, for 24 h):

====================================================================  ======
204, no body: published as ``payment.received`` and confirmed by the   204
broker (or a copy of a payment already published)
body over ``max_body_bytes``                                           413
missing headers, a ``WECHATPAY/SIGNTEST/`` probe, a stale timestamp,   401
an unknown serial, a signature that does not verify, a nonce seen
before (a replayed request), a resource that does not decrypt
not JSON, not a notification, an event other than                     400
``TRANSACTION.SUCCESS``, not a paid transaction of our merchant, no
account to credit
the broker did not confirm (the platform will send again)             503
====================================================================  ======

Everything refused is audited (``context.reject``: reason and body hash) and publishes nothing.
Duplicates: the platform's genuine resends are signed afresh (new timestamp and nonce); they pass and
are deduplicated by the transaction id (the inbox), and the core credits each ``(wechat,
transaction_id)`` once. A request replayed byte for byte reuses its nonce and is refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from connectors.payments.wechatpay import signing
from connectors.payments.wechatpay.client import WeChatPayClient
from connectors.payments.wechatpay.settings import WeChatPaySettings
from connectors.payments.wechatpay.transaction import NotPayable, payment_from
from core.catalogue.messages import MessageType, PaymentReceived
from hub.connectors.contract import Capability, ConnectorContext, Health, InboundConnector, ReceiveResult
from hub.connectors.http import read_capped
from hub.envelope import Envelope
from hub.errors import HubError, PermanentError

log = logging.getLogger(__name__)

PAID = "TRANSACTION.SUCCESS"


class Refused(Exception):
    """A notification we do not take: ``status`` and ``reason`` are what the platform and the audit get."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def fail(status: int, message: str) -> web.Response:
    """The platform's documented failure answer."""
    return web.json_response({"code": "FAIL", "message": message}, status=status)


class WeChatPayConnector(InboundConnector[WeChatPaySettings]):
    kind = "wechatpay"
    settings_model = WeChatPaySettings
    capabilities = frozenset({Capability.INBOUND, Capability.HTTP_ENDPOINT})

    def __init__(self, settings: WeChatPaySettings, context: ConnectorContext, *,
                 clock: Callable[[], float] = time.time, fetch_key: signing.KeyFetcher | None = None) -> None:
        super().__init__(settings, context)
        self.clock = clock
        self.platform = signing.PlatformKeys.from_pem(settings.platform_keys, fetch_key)
        self.api_v3_key = settings.api_v3_key.get_secret_value().encode()
        self.client = WeChatPayClient(
            base_url=settings.base_url, mchid=settings.mchid, appid=settings.appid,
            serial_no=settings.merchant_serial_no.upper(),
            private_key=signing.load_private_key(settings.merchant_private_key.get_secret_value()),
            platform=self.platform, notify_url=settings.notify_url, timeout_s=settings.timeout_s,
            in_call_attempts=settings.in_call_attempts, window_s=settings.timestamp_window_s)
        self.accepted = 0
        context.add_routes([web.post(settings.path, self.notify)])

    async def notify(self, request: web.Request) -> web.Response:
        body = await read_capped(request.content, self.settings.max_body_bytes)
        try:
            payment = await self._payment(request, body)
        except Refused as refused:
            await self.context.reject(refused.reason, body=body[:self.settings.max_body_bytes], source="wechatpay")
            return fail(refused.status, refused.reason)
        try:
            result = await self.publish(payment)
        except HubError as exc:
            log.warning("wechatpay.not_accepted", extra={"error": str(exc)})
            return fail(503, "not accepted yet, send again later")
        self.accepted += 1
        log.info("wechatpay.notification_accepted",
                 extra={"message_id": result.message_id, "duplicate": result.duplicate})
        return web.Response(status=204)

    async def _payment(self, request: web.Request, body: bytes) -> PaymentReceived:
        """Verify, decrypt and map one notification, in that order; ``Refused`` at the first defect."""
        if len(body) > self.settings.max_body_bytes:
            raise Refused(413, f"body over {self.settings.max_body_bytes} bytes")
        try:
            signed = signing.verify_platform(self.platform, request.headers, body, now=self.clock(),
                                             window_s=self.settings.timestamp_window_s)
        except signing.SignatureError as exc:
            raise Refused(401, str(exc)) from None
        if not await self.context.claim_once(f"nonce:{signed.nonce}"):
            raise Refused(401, f"replayed: nonce {signed.nonce[:64]!r} was used before")
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise Refused(400, f"body is not JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("resource"), dict):
            raise Refused(400, "not a notification: needs an object with a resource")
        if doc.get("event_type") != PAID:
            raise Refused(400, f"event {str(doc.get('event_type'))[:40]!r} is not handled (only {PAID})")
        try:
            plain = signing.decrypt_resource(self.api_v3_key, doc["resource"])
        except signing.SignatureError as exc:
            raise Refused(401, str(exc)) from None
        try:
            transaction = orjson.loads(plain)
        except orjson.JSONDecodeError:
            raise Refused(400, "the decrypted resource is not JSON") from None
        if not isinstance(transaction, dict):
            raise Refused(400, "the decrypted resource is not a transaction object")
        try:
            return payment_from(transaction, mchid=self.settings.mchid)
        except NotPayable as exc:
            raise Refused(400, f"notification {str(doc.get('id'))[:40]}: {exc}") from None

    async def publish(self, payment: PaymentReceived) -> ReceiveResult:
        """Hand a payment to the hub, once per transaction id; returns after the broker confirmed."""
        envelope = Envelope(type=MessageType.PAYMENT_RECEIVED.value, source=self.context.name,
                            subject=payment.account_id, data=payment.model_dump(mode="json"))
        return await self.context.receive(envelope, partner_key=f"transaction:{payment.transaction_id}")

    async def reconcile(self, out_trade_no: str) -> ReceiveResult | None:
        """Ask the platform about an order (e.g. one whose notification never came) and publish its
        payment when it is paid; ``None`` while it is not. Safe to repeat: the same transaction id."""
        transaction = await self.client.query(out_trade_no)
        if transaction.get("trade_state") != "SUCCESS":
            return None
        try:
            payment = payment_from(transaction, mchid=self.settings.mchid)
        except NotPayable as exc:
            raise PermanentError(f"order {out_trade_no}: {exc}") from None
        return await self.publish(payment)

    def health(self) -> Health:
        extra: dict[str, Any] = {"accepted": self.accepted, "platform_keys": sorted(self.platform.keys)}
        return Health(ok=True, extra=extra)

    async def run(self) -> None:
        return None

    async def aclose(self) -> None:
        await self.client.aclose()
