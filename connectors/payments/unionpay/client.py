"""Asking UnionPay about a transaction (交易状态查询, ``queryTrans.do``), for orders whose notification
never came and for confirming one before crediting it, as UnionPay advises for money transactions.

The request is a form signed like everything in 5.1.0 (:mod:`.signing`), with our merchant signing
key and its certificate's serial (``certId``): ``txnType=00``, ``txnSubType=00``, ``bizType=000000``,
``merId``, ``orderId`` and the original order's ``txnTime``. The answer is ``k=v&…`` without URL
encoding (``signPubKeyCert`` carries its line breaks as they are), signed by UnionPay and checked like
a notification. ``respCode`` is the query's outcome (``00`` answered, ``34`` no such transaction);
``origRespCode`` the transaction's (``00``/``A6`` paid; ``03``/``04``/``05`` still in progress).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.payments.signed_http import PlatformError, SignedHttpClient
from connectors.payments.unionpay import signing

QUERY = "/gateway/api/queryTrans.do"


class UnionPayError(PlatformError):
    """UnionPay answered the query with a ``respCode`` other than 00 (in ``code``)."""


def parse_answer(raw: bytes) -> dict[str, str] | None:
    """UnionPay's ``k=v&…`` answer as a dict: split on ``&`` outside ``{…}``/``[…]`` and on each pair's
    first ``=``, nothing decoded (as UnionPay's SDKs read it); ``None`` when it is not one."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    pairs: list[str] = []
    depth, start = 0, 0
    for i, char in enumerate(text):
        if char in "{[":
            depth += 1
        elif char in "}]":
            depth = max(0, depth - 1)
        elif char == "&" and depth == 0:
            pairs.append(text[start:i])
            start = i + 1
    pairs.append(text[start:])
    fields: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name or name in fields:
            return None
        fields[name] = value
    return fields


class UnionPayClient(SignedHttpClient):
    error = UnionPayError
    user_agent = "gashub-unionpay/1"
    content_type = "application/x-www-form-urlencoded;charset=UTF-8"

    def __init__(self, *, base_url: str, mer_id: str, cert_id: str, private_key: rsa.RSAPrivateKey,
                 trust: signing.UnionPayTrust, timeout_s: float = 5.0, in_call_attempts: int = 3) -> None:
        super().__init__(base_url=base_url, timeout_s=timeout_s, in_call_attempts=in_call_attempts)
        self.mer_id = mer_id
        self.cert_id = cert_id
        self.private_key = private_key
        self.trust = trust

    async def query(self, order_id: str, txn_time: str) -> dict[str, str]:
        """The transaction of order ``order_id`` (sent at ``txn_time``, ``yyyyMMddHHmmss``), as UnionPay
        holds it; ``UnionPayError`` when UnionPay does not answer it (``34``: no such transaction)."""
        fields = {"version": signing.VERSION, "encoding": "UTF-8", "signMethod": signing.SIGN_METHOD_RSA,
                  "txnType": "00", "txnSubType": "00", "bizType": "000000", "accessType": "0",
                  "merId": self.mer_id, "orderId": order_id, "txnTime": txn_time, "certId": self.cert_id}
        fields["signature"] = signing.sign(fields, self.private_key)
        answer: dict[str, Any] = await self.call("POST", QUERY, urlencode(fields).encode())
        code = str(answer.get("respCode", ""))
        if code != "00":
            raise UnionPayError(f"UnionPay answered the query of {order_id} with respCode {code[:4]!r}: "
                                f"{str(answer.get('respMsg', ''))[:100]}", status=200, code=code)
        return {k: str(v) for k, v in answer.items()}

    def signature_headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        return {}  # the signature travels in the form

    def decode(self, raw: bytes) -> dict[str, Any] | None:
        fields = parse_answer(raw)
        return dict(fields) if fields is not None else None

    def answer_problem(self, headers: Mapping[str, str], raw: bytes) -> str | None:
        try:
            signing.verify(parse_answer(raw) or {}, self.trust)
        except signing.SignatureError as exc:
            return str(exc)
        return None
