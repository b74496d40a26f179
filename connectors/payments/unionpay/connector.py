"""UnionPay online payments (银联全渠道, ACP 5.1.0): back-end payment notifications in.

Partner: China UnionPay's online payment gateway. Protocol: UnionPay POSTs a form
(``application/x-www-form-urlencoded``, UTF-8) to ``{path}`` (``/partners/unionpay/notify``, our
``backUrl``) with ``version=5.1.0``, ``signMethod=01``, ``merId``, ``orderId``, ``txnTime``, ``txnAmt``
(fen), ``queryId``, ``respCode``, ``reqReserved``, ``signPubKeyCert`` and ``signature``; it sends up to
five times until it hears HTTP 200. Authentication: SHA256withRSA over the hex SHA-256 of the sorted
``k=v&…`` string, with the key of ``signPubKeyCert``, which must chain to UnionPay's root and middle
certificates or be pinned (:mod:`.signing`). Settings: :class:`~.settings.UnionPaySettings`.

What a notification gets (errors are a short plain-text reason):

=====================================================================  ======
``ok``: published as ``payment.received`` and confirmed by the broker   200
(or a copy of a payment already published)
``ok``: a genuine notification of a failed transaction (``respCode``    200
not 00/A6): audited as refused, nothing published, nothing to resend
body over ``max_body_bytes``                                            413
not a signed 5.1.0 form, a certificate we do not trust, a signature     401
that does not verify, a ``txnTime`` older than ``max_age_s`` (a replay)
not a form, repeated fields, not our merchant, not a consumption, no    400
account in ``reqReserved``
the broker did not confirm (UnionPay will send again)                   503
=====================================================================  ======

Everything refused is audited (``context.reject``: reason and body hash) and publishes nothing.
Duplicates: UnionPay's resends carry the same ``queryId``; they are deduplicated by it (the inbox) and
the core credits each ``(unionpay, queryId)`` once. A notification has no nonce, so a copy replayed
within ``max_age_s`` is indistinguishable from a resend: it is answered ``ok`` and credits nothing new.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from connectors.payments.notify import PaymentNotifyConnector, Refused, publish_payment
from connectors.payments.unionpay import signing
from connectors.payments.unionpay.client import UnionPayClient
from connectors.payments.unionpay.settings import UnionPaySettings
from connectors.payments.unionpay.transaction import PAID_CODES, NotPaid, NotPayable, payment_from, txn_time
from connectors.payments.wechatpay.signing import load_private_key
from core.catalogue.messages import PaymentReceived
from hub.connectors.contract import Capability, ConnectorContext, Health, ReceiveResult
from hub.errors import ConfigError, PermanentError

OK = "ok"


def parse_form(body: bytes) -> dict[str, str]:
    """A UTF-8 form body as a dict; ``Refused`` (400) when it is not one or repeats a field."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        raise Refused(400, "body is not a UTF-8 form (k=v&…)") from None
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise Refused(400, "a field is repeated in the form")
    return fields


class UnionPayConnector(PaymentNotifyConnector[UnionPaySettings]):
    kind = "unionpay"
    settings_model = UnionPaySettings
    capabilities = frozenset({Capability.INBOUND, Capability.HTTP_ENDPOINT})

    def __init__(self, settings: UnionPaySettings, context: ConnectorContext, *,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(settings, context)
        self.clock = clock
        self.trust = signing.UnionPayTrust.from_pem(root=settings.root_cert, middle=settings.middle_cert,
                                                    pinned=settings.sign_certs, signer_name=settings.signer_name)
        self.not_paid = 0
        self.client: UnionPayClient | None = None
        if settings.merchant_private_key is not None and settings.merchant_cert_id is not None:
            self.client = UnionPayClient(
                base_url=settings.base_url, mer_id=settings.mer_id, cert_id=settings.merchant_cert_id,
                private_key=load_private_key(settings.merchant_private_key.get_secret_value()), trust=self.trust,
                timeout_s=settings.timeout_s, in_call_attempts=settings.in_call_attempts)

    def ok(self) -> web.Response:
        return web.Response(status=200, text=OK)

    def refusal(self, refused: Refused) -> web.Response:
        """Plain text; a genuine notification of a failed payment is ``ok``: there is nothing to resend."""
        return self.ok() if refused.status == 200 else web.Response(status=refused.status, text=refused.reason)

    async def verified_payment(self, request: web.Request, body: bytes) -> PaymentReceived:
        """Parse, verify and map one notification, in that order."""
        fields = parse_form(body)
        now = datetime.fromtimestamp(self.clock(), UTC)
        try:
            signing.verify(fields, self.trust, now=now)
        except signing.SignatureError as exc:
            raise Refused(401, str(exc)) from None
        try:
            age = (now - txn_time(fields)).total_seconds()
            if age > self.settings.max_age_s:
                raise Refused(401, f"replayed: txnTime is {int(age)}s old (window {self.settings.max_age_s}s)")
            return payment_from(fields, mer_id=self.settings.mer_id)
        except NotPaid as exc:
            self.not_paid += 1
            raise Refused(200, f"order {fields.get('orderId', '')[:40]}: {exc}; nothing credited") from None
        except NotPayable as exc:
            raise Refused(400, f"order {fields.get('orderId', '')[:40]}: {exc}") from None

    async def reconcile(self, order_id: str, txn_time: str) -> ReceiveResult | None:
        """Ask UnionPay about an order (one whose notification never came, say) and publish its payment
        when it is paid; ``None`` while it is not. Safe to repeat: the same ``queryId``."""
        if self.client is None:
            raise ConfigError("querying UnionPay needs merchant_private_key and merchant_cert_id",
                              where=f"connectors.{self.context.name}")
        answer = await self.client.query(order_id, txn_time)
        if answer.get("origRespCode") not in PAID_CODES:
            return None
        try:  # the answer describes the original consumption; its own txnType is the query's
            payment = payment_from({**answer, "txnType": "01", "respCode": answer["origRespCode"]},
                                   mer_id=self.settings.mer_id)
        except NotPayable as exc:
            raise PermanentError(f"order {order_id}: {exc}") from None
        return await publish_payment(self.context, payment)

    def health(self) -> Health:
        extra: dict[str, Any] = {"accepted": self.accepted, "not_paid": self.not_paid,
                                 "pinned": len(self.trust.pinned), "chain": self.trust.root is not None}
        return Health(ok=True, extra=extra)

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()
