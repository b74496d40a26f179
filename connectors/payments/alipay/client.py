"""Calling the Alipay open platform gateway: ``alipay.trade.precreate`` (a QR code for an order) and
``alipay.trade.query``.

Each request is a form POST to ``gateway.do`` with the common parameters (``app_id``, ``method``,
``charset``, ``sign_type``, ``timestamp`` in Beijing time, ``version``, ``biz_content`` as JSON) signed
with the application private key (:func:`~.signing.sign_request`). An answer is believed only when the
exact text of its ``…_response`` node verifies with the Alipay public key. What can go wrong becomes
the hub's errors: timeouts ``ConnectorTimeout``; connection failures, HTTP 429/5xx and Alipay's
``20000`` (service unavailable) ``TransientError`` (retried a few times in the call); a business
refusal (``40004`` with ``sub_code`` such as ``ACQ.TRADE_NOT_EXIST``) or another code
:class:`AlipayError`; an answer that is not JSON or whose signature does not verify ``PermanentError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
from cryptography.hazmat.primitives.asymmetric import rsa
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from connectors.payments.alipay import signing
from connectors.payments.alipay.trade import BEIJING
from connectors.payments.signed_http import HttpSession
from hub.errors import ConnectorTimeout, PermanentError, TransientError

USER_AGENT = "gashub-alipay/1"
SUCCESS = "10000"
UNAVAILABLE = "20000"


class AlipayError(PermanentError):
    """The gateway refused the call: ``code`` (``40004`` …) and ``sub_code`` (``ACQ.TRADE_NOT_EXIST`` …)."""

    def __init__(self, message: str, *, code: str, sub_code: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.sub_code = sub_code


def amount_text(yuan: Decimal) -> str:
    """Yuan with two places, as ``total_amount`` is written; more places or nothing to pay is an error."""
    value = yuan.quantize(Decimal("0.01"))
    if value != yuan or value <= 0:
        raise ValueError(f"{yuan} is not a positive amount in yuan with at most two places")
    return f"{value:.2f}"


class AlipayClient(HttpSession):
    def __init__(self, *, gateway_url: str, app_id: str, private_key: rsa.RSAPrivateKey,
                 alipay_public_key: rsa.RSAPublicKey, notify_url: str | None = None, timeout_s: float = 5.0,
                 in_call_attempts: int = 3) -> None:
        super().__init__(timeout_s=timeout_s)
        self.gateway_url = gateway_url
        self.app_id = app_id
        self.private_key = private_key
        self.alipay_public_key = alipay_public_key
        self.notify_url = notify_url
        self.in_call_attempts = in_call_attempts

    async def precreate(self, *, out_trade_no: str, subject: str, amount: Decimal, timeout_express: str = "2h",
                        body: str | None = None) -> str:
        """Create an order to be paid by scanning; return its ``qr_code``. Calling it again for an open
        order of the same number and amount answers the same code."""
        biz: dict[str, Any] = {"out_trade_no": out_trade_no, "total_amount": amount_text(amount),
                               "subject": subject[:256], "timeout_express": timeout_express}
        if body:
            biz["body"] = body[:128]
        answer = await self.call("alipay.trade.precreate", biz, notify_url=self.notify_url)
        qr_code = answer.get("qr_code")
        if not isinstance(qr_code, str) or not qr_code:
            raise PermanentError("the precreate answer has no qr_code")
        return qr_code

    async def query(self, *, out_trade_no: str | None = None, trade_no: str | None = None) -> dict[str, Any]:
        """The trade as Alipay holds it (``trade_status``, ``trade_no``, ``total_amount`` …)."""
        if (out_trade_no is None) == (trade_no is None):
            raise ValueError("name the trade by out_trade_no or by trade_no, not both")
        biz = {"out_trade_no": out_trade_no} if out_trade_no is not None else {"trade_no": trade_no}
        return await self.call("alipay.trade.query", biz)

    def request_params(self, method: str, biz: Mapping[str, Any], *, notify_url: str | None = None,
                       now: datetime | None = None) -> dict[str, str]:
        """The signed form of one call."""
        params = {"app_id": self.app_id, "method": method, "format": "JSON", "charset": "utf-8",
                  "sign_type": signing.SIGN_TYPE, "version": "1.0",
                  "timestamp": (now or datetime.now(BEIJING)).astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
                  "biz_content": orjson.dumps(dict(biz)).decode()}
        if notify_url:
            params["notify_url"] = notify_url
        return signing.sign_request(self.private_key, params)

    async def call(self, method: str, biz: Mapping[str, Any], *, notify_url: str | None = None) -> dict[str, Any]:
        """Sign, send and verify one call, retrying transient failures a few times, quickly. The
        same signed form is sent on each attempt."""
        params = self.request_params(method, biz, notify_url=notify_url)
        async for attempt in AsyncRetrying(stop=stop_after_attempt(self.in_call_attempts),
                                           wait=wait_exponential(multiplier=0.05, max=0.5),
                                           retry=retry_if_exception_type(TransientError), reraise=True):
            with attempt:
                return await self._once(method, params)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(self, method: str, params: dict[str, str]) -> dict[str, Any]:
        try:
            async with self._client().post(self.gateway_url, data=params, headers={"User-Agent": USER_AGENT}) as resp:
                raw = await resp.read()
                status = resp.status
        except TimeoutError:
            raise ConnectorTimeout(f"{method}: the gateway did not answer within {self.timeout.total}s") from None
        except aiohttp.ClientError as exc:
            raise TransientError(f"{method}: the gateway is unreachable: {type(exc).__name__}: {exc}") from None
        if status == 429 or status >= 500:
            raise TransientError(f"{method}: the gateway answered HTTP {status}")
        if status != 200:
            raise PermanentError(f"{method}: the gateway answered HTTP {status}")
        return self.verified(method, raw)

    def verified(self, method: str, raw: bytes) -> dict[str, Any]:
        """The ``…_response`` node of an answer, once its signature verified (business failures are
        signed too, and raised as :class:`AlipayError`)."""
        node_name = method.replace(".", "_") + "_response"
        try:
            text = raw.decode("utf-8")
            node_text, signature = signing.answer_node(text, node_name)
            if node_text is None:
                node_text, signature = signing.answer_node(text, "error_response")
            node = orjson.loads(node_text) if node_text is not None else None
        except (UnicodeDecodeError, ValueError):
            raise PermanentError(f"{method}: the answer is not a JSON object") from None
        if not isinstance(node, dict) or node_text is None:
            raise PermanentError(f"{method}: the answer has no {node_name}")
        code = str(node.get("code") or "")
        signed = bool(signature) and signing.verify(self.alipay_public_key, node_text.encode(), signature or "")
        if code == UNAVAILABLE:
            raise TransientError(f"{method}: Alipay is unavailable ({node.get('sub_code') or code})")
        if code != SUCCESS:
            sub_code = str(node.get("sub_code") or "")
            detail = f"{code} {sub_code}: {str(node.get('sub_msg') or node.get('msg') or '')[:120]}"
            raise AlipayError(f"{method}: {detail}" + ("" if signed else " (unsigned)"), code=code, sub_code=sub_code)
        if not signed:
            raise PermanentError(f"{method}: the answer's signature does not verify with the Alipay public key")
        return node
