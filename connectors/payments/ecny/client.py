"""Calling the operating bank's e-CNY order API: create an order, query it.

``POST {base_url}/ecny/v1/orders`` ``{merchantNo, orderNo, amount, currency, subject, attach,
notifyUrl?, expireTime?}`` → the order with ``payUrl`` (what the payer's wallet opens or scans);
``GET {base_url}/ecny/v1/orders/{orderNo}?merchantNo=…`` → the order (:mod:`.transaction`). Requests
are signed with our key, successful answers must carry the bank's valid signature (:mod:`.signing`).
Sending, retrying and translating failures into the hub's errors is the work of
:class:`~connectors.payments.signed_http.SignedHttpClient`; a 4xx is an :class:`EcnyError` with the
bank's ``code``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import orjson

from connectors.payments.ecny import signing
from connectors.payments.signed_http import PlatformError, SignedHttpClient
from connectors.payments.wechatpay.client import fen
from hub.errors import PermanentError

API = "/ecny/v1/orders"


class EcnyError(PlatformError):
    """The bank refused the request; ``code`` is its error code (empty when it gave none)."""


class EcnyClient(SignedHttpClient):
    error = EcnyError
    user_agent = "gashub-ecny/1"

    def __init__(self, *, base_url: str, merchant_no: str, signer: signing.Signer, bank: signing.Verifier,
                 notify_url: str | None = None, timeout_s: float = 5.0, in_call_attempts: int = 3,
                 window_s: int = 300) -> None:
        super().__init__(base_url=base_url, timeout_s=timeout_s, in_call_attempts=in_call_attempts)
        self.merchant_no = merchant_no
        self.signer = signer
        self.bank = bank
        self.notify_url = notify_url
        self.window_s = window_s

    async def create_order(self, *, order_no: str, amount: Decimal, subject: str, attach: str | None = None,
                           expire_time: str | None = None) -> dict[str, Any]:
        """Create an order for ``amount`` yuan; the answer carries its ``payUrl``. Creating the same
        order number again answers the same open order (the bank's idempotency)."""
        payload: dict[str, Any] = {"merchantNo": self.merchant_no, "orderNo": order_no, "amount": fen(amount),
                                   "currency": "CNY", "subject": subject[:64]}
        payload.update({name: value for name, value in (("attach", attach), ("notifyUrl", self.notify_url),
                                                        ("expireTime", expire_time)) if value})
        order = await self.call("POST", API, orjson.dumps(payload))
        if not isinstance(order.get("payUrl"), str) or not order["payUrl"]:
            raise PermanentError("the bank's answer to an order has no payUrl")
        return order

    async def query(self, order_no: str) -> dict[str, Any]:
        """The order as the bank holds it (``status`` and, once paid, ``txnNo``)."""
        return await self.call("GET", f"{API}/{quote(order_no, safe='')}?merchantNo={quote(self.merchant_no)}")

    def signature_headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        return signing.request_headers(self.signer, self.merchant_no, method, path, body)

    def answer_problem(self, headers: Mapping[str, str], raw: bytes) -> str | None:
        try:
            signing.verify_bank(self.bank, headers, raw, now=time.time(), window_s=self.window_s)
        except signing.SignatureError as exc:
            return str(exc)
        return None
