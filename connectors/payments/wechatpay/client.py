"""Calling WeChat Pay API v3: Native (QR) orders, order queries and refunds.

Every request is signed with the merchant's private key (:func:`~.signing.authorization`); every
answer must carry a valid platform signature (``Wechatpay-*`` headers) before it is believed. Sending,
retrying and translating failures into the hub's errors is the work of
:class:`~connectors.payments.signed_http.SignedHttpClient`; a 4xx is a :class:`WeChatPayError` with
the platform's ``code`` (``ORDER_NOT_EXIST``, ``NOT_ENOUGH``…).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import orjson
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.payments.signed_http import PlatformError, SignedHttpClient
from connectors.payments.wechatpay import signing
from hub.errors import PermanentError

USER_AGENT = "gashub-wechatpay/1"


class WeChatPayError(PlatformError):
    """The platform refused the request; ``code`` is its error code (empty when it gave none)."""


def fen(yuan: Decimal) -> int:
    """Yuan with at most two places → integer fen, as every v3 amount is."""
    value = yuan.scaleb(2)
    if value != value.to_integral_value() or value <= 0:
        raise ValueError(f"{yuan} yuan is not a positive whole number of fen")
    return int(value)


class WeChatPayClient(SignedHttpClient):
    error = WeChatPayError
    user_agent = USER_AGENT

    def __init__(self, *, base_url: str, mchid: str, appid: str, serial_no: str, private_key: rsa.RSAPrivateKey,
                 platform: signing.PlatformKeys, notify_url: str | None = None, timeout_s: float = 5.0,
                 in_call_attempts: int = 3, window_s: int = 300) -> None:
        super().__init__(base_url=base_url, timeout_s=timeout_s, in_call_attempts=in_call_attempts)
        self.mchid = mchid
        self.appid = appid
        self.serial_no = serial_no
        self.private_key = private_key
        self.platform = platform
        self.notify_url = notify_url
        self.window_s = window_s

    async def native_order(self, *, out_trade_no: str, description: str, amount: Decimal, attach: str | None = None,
                           time_expire: str | None = None) -> str:
        """Create a Native (QR code) order; return its ``code_url`` for the payer to scan."""
        payload: dict[str, Any] = {"appid": self.appid, "mchid": self.mchid, "description": description[:127],
                                   "out_trade_no": out_trade_no, "amount": {"total": fen(amount), "currency": "CNY"}}
        if self.notify_url:
            payload["notify_url"] = self.notify_url
        if attach:
            payload["attach"] = attach
        if time_expire:
            payload["time_expire"] = time_expire
        answer = await self.request("POST", "/v3/pay/transactions/native", payload)
        code_url = answer.get("code_url")
        if not isinstance(code_url, str) or not code_url:
            raise PermanentError("the native order's answer has no code_url")
        return code_url

    async def query(self, out_trade_no: str) -> dict[str, Any]:
        """The order as the platform holds it (``trade_state`` and, once paid, the transaction)."""
        path = f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}?mchid={self.mchid}"
        return await self.request("GET", path)

    async def refund(self, *, out_refund_no: str, amount: Decimal, total: Decimal, transaction_id: str | None = None,
                     out_trade_no: str | None = None, reason: str | None = None) -> dict[str, Any]:
        """Refund ``amount`` of a payment of ``total`` (both yuan); the answer's ``status`` is usually
        PROCESSING, the outcome comes later (query or notification)."""
        if (transaction_id is None) == (out_trade_no is None):
            raise ValueError("name the payment by transaction_id or by out_trade_no, not both")
        payload: dict[str, Any] = {"out_refund_no": out_refund_no,
                                   "amount": {"refund": fen(amount), "total": fen(total), "currency": "CNY"}}
        if transaction_id is not None:
            payload["transaction_id"] = transaction_id
        else:
            payload["out_trade_no"] = out_trade_no
        if reason:
            payload["reason"] = reason[:80]
        return await self.request("POST", "/v3/refund/domestic/refunds", payload)

    async def request(self, method: str, path: str, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Sign, send and verify one call (JSON ``payload``, none for a GET)."""
        return await self.call(method, path, orjson.dumps(dict(payload)) if payload is not None else b"")

    def signature_headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        return {"Authorization": signing.authorization(mchid=self.mchid, serial_no=self.serial_no,
                                                       private_key=self.private_key, method=method, path=path,
                                                       body=body)}

    def answer_problem(self, headers: Mapping[str, str], raw: bytes) -> str | None:
        try:
            signing.verify_platform(self.platform, headers, raw, now=time.time(), window_s=self.window_s)
        except signing.SignatureError as exc:
            return str(exc)
        return None
