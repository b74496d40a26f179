"""Calling the operating bank's e-CNY order API: create an order, query it.

``POST {base_url}/ecny/v1/orders`` ``{merchantNo, orderNo, amount, currency, subject, attach,
notifyUrl?, expireTime?}`` → the order with ``payUrl`` (what the payer's wallet opens or scans);
``GET {base_url}/ecny/v1/orders/{orderNo}?merchantNo=…`` → the order (:mod:`.transaction`). Requests
are signed with our key, successful answers must carry the bank's valid signature (:mod:`.signing`).
What can go wrong becomes the hub's errors: timeouts ``ConnectorTimeout``; connection failures, 429
and 5xx ``TransientError`` (retried a few times in the call, then by the route's policy); other 4xx,
an answer that is not a JSON object or whose signature does not verify ``PermanentError``, with the
bank's ``code`` in :attr:`EcnyError.code`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from connectors.payments.ecny import signing
from connectors.payments.wechatpay.client import fen
from hub.errors import ConnectorTimeout, PermanentError, TransientError

API = "/ecny/v1/orders"


class EcnyError(PermanentError):
    """The bank refused the request; ``code`` is its error code (empty when it gave none)."""

    def __init__(self, message: str, *, status: int, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class EcnyClient:
    def __init__(self, *, base_url: str, merchant_no: str, signer: signing.Signer, bank: signing.Verifier,
                 notify_url: str | None = None, timeout_s: float = 5.0, in_call_attempts: int = 3,
                 window_s: int = 300) -> None:
        self.base_url = base_url.rstrip("/")
        self.merchant_no = merchant_no
        self.signer = signer
        self.bank = bank
        self.notify_url = notify_url
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.in_call_attempts = in_call_attempts
        self.window_s = window_s
        self._session: aiohttp.ClientSession | None = None

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
        return await self.call("GET", f"{API}/{quote(order_no, safe='')}?merchantNo={quote(self.merchant_no)}", b"")

    async def call(self, method: str, path: str, body: bytes) -> dict[str, Any]:
        """Sign, send and verify one call, retrying transient failures a few times, quickly."""
        async for attempt in AsyncRetrying(stop=stop_after_attempt(self.in_call_attempts),
                                           wait=wait_exponential(multiplier=0.05, max=0.5),
                                           retry=retry_if_exception_type(TransientError), reraise=True):
            with attempt:
                return await self._send(method, path, body)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(self, method: str, path: str, body: bytes) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        headers = {**signing.request_headers(self.signer, self.merchant_no, method, path, body),
                   "Accept": "application/json"}
        if body:
            headers["Content-Type"] = "application/json"
        try:
            async with self._client().request(method, url, data=body or None, headers=headers) as resp:
                return self._read(url, resp.status, resp.headers, await resp.read())
        except TimeoutError:
            raise ConnectorTimeout(f"{url} did not answer within {self.timeout.total}s") from None
        except aiohttp.ClientError as exc:
            raise TransientError(f"{url} unreachable: {type(exc).__name__}: {exc}") from None

    def _read(self, url: str, status: int, headers: Mapping[str, str], raw: bytes) -> dict[str, Any]:
        if status == 429 or status >= 500:
            raise TransientError(f"{url} answered {status}: {raw[:200]!r}")
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            raise PermanentError(f"{url} answered {status} with a body that is not a JSON object")
        if status >= 400:
            code = str(doc.get("code") or "")
            raise EcnyError(f"{url} answered {status} {code}: {str(doc.get('message') or '')[:200]}",
                            status=status, code=code)
        try:
            signing.verify_bank(self.bank, headers, raw, now=time.time(), window_s=self.window_s)
        except signing.SignatureError as exc:
            raise PermanentError(f"{url} answered {status}, but the answer's signature is not valid: {exc}") from None
        return doc

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            with contextlib.suppress(Exception):  # aclose must not raise
                await self._session.close()
            self._session = None
