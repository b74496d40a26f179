"""Calling WeChat Pay API v3: Native (QR) orders, order queries and refunds.

Every request is signed with the merchant's private key (:func:`~.signing.authorization`); every
answer must carry a valid platform signature (``Wechatpay-*`` headers) before it is believed. What can
go wrong becomes the hub's errors: timeouts ``ConnectorTimeout``; connection failures, 429 and 5xx
``TransientError`` (retried a few times in the call, then by the route's policy); other 4xx, an answer
that is not JSON or whose signature does not verify ``PermanentError``, with the platform's ``code``
(``ORDER_NOT_EXIST``, ``NOT_ENOUGH``…) in :attr:`WeChatPayError.code`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from cryptography.hazmat.primitives.asymmetric import rsa
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from connectors.payments.wechatpay import signing
from hub.errors import ConnectorTimeout, PermanentError, TransientError

USER_AGENT = "gashub-wechatpay/1"


class WeChatPayError(PermanentError):
    """The platform refused the request; ``code`` is its error code (empty when it gave none)."""

    def __init__(self, message: str, *, status: int, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def fen(yuan: Decimal) -> int:
    """Yuan with at most two places → integer fen, as every v3 amount is."""
    value = yuan.scaleb(2)
    if value != value.to_integral_value() or value <= 0:
        raise ValueError(f"{yuan} yuan is not a positive whole number of fen")
    return int(value)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    data: dict[str, Any]


class WeChatPayClient:
    def __init__(self, *, base_url: str, mchid: str, appid: str, serial_no: str, private_key: rsa.RSAPrivateKey,
                 platform: signing.PlatformKeys, notify_url: str | None = None, timeout_s: float = 5.0,
                 in_call_attempts: int = 3, window_s: int = 300) -> None:
        self.base_url = base_url.rstrip("/")
        self.mchid = mchid
        self.appid = appid
        self.serial_no = serial_no
        self.private_key = private_key
        self.platform = platform
        self.notify_url = notify_url
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.in_call_attempts = in_call_attempts
        self.window_s = window_s
        self._session: aiohttp.ClientSession | None = None

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
        code_url = answer.data.get("code_url")
        if not isinstance(code_url, str) or not code_url:
            raise PermanentError("the native order's answer has no code_url")
        return code_url

    async def query(self, out_trade_no: str) -> dict[str, Any]:
        """The order as the platform holds it (``trade_state`` and, once paid, the transaction)."""
        path = f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}?mchid={self.mchid}"
        return (await self.request("GET", path)).data

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
        return (await self.request("POST", "/v3/refund/domestic/refunds", payload)).data

    async def request(self, method: str, path: str, payload: Mapping[str, Any] | None = None) -> Answer:
        """Sign, send and verify one call, retrying transient failures a few times, quickly."""
        body = orjson.dumps(dict(payload)) if payload is not None else b""
        async for attempt in AsyncRetrying(stop=stop_after_attempt(self.in_call_attempts),
                                           wait=wait_exponential(multiplier=0.05, max=0.5),
                                           retry=retry_if_exception_type(TransientError), reraise=True):
            with attempt:
                return await self._once(method, path, body)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(self, method: str, path: str, body: bytes) -> Answer:
        url = f"{self.base_url}{path}"
        headers = {
            "Authorization": signing.authorization(mchid=self.mchid, serial_no=self.serial_no,
                                                   private_key=self.private_key, method=method, path=path, body=body),
            "Accept": "application/json", "User-Agent": USER_AGENT,
        }
        if body:
            headers["Content-Type"] = "application/json"
        try:
            async with self._client().request(method, url, data=body or None, headers=headers) as resp:
                raw = await resp.read()
                return self._answer(url, resp.status, resp.headers, raw)
        except TimeoutError:
            raise ConnectorTimeout(f"{url} did not answer within {self.timeout.total}s") from None
        except aiohttp.ClientError as exc:
            raise TransientError(f"{url} unreachable: {type(exc).__name__}: {exc}") from None

    def _answer(self, url: str, status: int, headers: Mapping[str, str], raw: bytes) -> Answer:
        try:
            data = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            data = None
        if status == 429 or status >= 500:
            raise TransientError(f"{url} answered {status}: {raw[:200]!r}")
        if not isinstance(data, dict):
            raise PermanentError(f"{url} answered {status} with a body that is not a JSON object")
        if status >= 400:
            code = str(data.get("code") or "")
            raise WeChatPayError(f"{url} answered {status} {code}: {str(data.get('message') or '')[:200]}",
                                 status=status, code=code)
        try:
            signing.verify_platform(self.platform, headers, raw, now=time.time(), window_s=self.window_s)
        except signing.SignatureError as exc:
            raise PermanentError(f"{url} answered {status}, but the answer's signature is not valid: {exc}") from None
        return Answer(status, data)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            with contextlib.suppress(Exception):  # aclose must not raise
                await self._session.close()
            self._session = None
