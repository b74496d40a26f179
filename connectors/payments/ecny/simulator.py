"""``EcnyBankSimulator``: an operating bank's e-CNY merchant API, on the loopback interface.

It holds a bank key pair of the configured scheme (``rsa-sha256`` or ``sm2-sm3``) and the merchant's
public key. Requests must carry ``Ecny-*`` headers whose signature verifies with the merchant's key
over ``METHOD\\npath?query\\ntimestamp\\nnonce\\nbody\\n`` within five minutes; otherwise it answers
401 ``SIGN_ERROR``. Answers are signed with the bank key. It creates orders (the same order number
answers the same open order), answers queries, and pays orders: :meth:`pay` marks an order paid and
:meth:`notification` builds the ``PAYMENT.SUCCESS`` notification the bank would POST, which :meth:`send`
delivers. ``fail_next`` answers the next calls 503.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.payments.ecny import signing, sm2
from connectors.payments.ecny.client import API
from hub.connectors.simulation import HttpSimulator

BEIJING = timezone(timedelta(hours=8))


def new_key_pair(sign_type: signing.SignType) -> tuple[str, str]:
    """A fresh (private, public) key pair of ``sign_type``, in the forms the settings take."""
    if sign_type is signing.SignType.SM2_SM3:
        key = sm2.PrivateKey.generate()
        return key.hex, "04" + key.public_key().xy
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    public = rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


class EcnyBankSimulator(HttpSimulator):
    def __init__(self, *, merchant_no: str, sign_type: signing.SignType, merchant_public_key: str,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.merchant_no = merchant_no
        self.sign_type = sign_type
        self.merchant = signing.verifier(sign_type, merchant_public_key)
        bank_private_key, self.bank_public_key = new_key_pair(sign_type)
        self.bank = signing.signer(sign_type, bank_private_key)
        self.orders: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, bool]] = []
        self.fail_next = 0
        self._session: aiohttp.ClientSession | None = None

    def routes(self) -> list[web.RouteDef]:
        return [web.post(API, self._create), web.get(API + "/{order_no}", self._query)]

    def _verified(self, request: web.Request, body: bytes) -> bool:
        try:
            signing.verify_request(self.merchant, request.headers, request.method, request.path_qs, body,
                                   now=time.time(), window_s=300)
            ok = request.headers.get(signing.MERCHANT) == self.merchant_no
        except signing.SignatureError:
            ok = False
        self.requests.append((request.method, request.path_qs, ok))
        return ok

    def _signed(self, status: int, payload: dict[str, Any]) -> web.Response:
        body = orjson.dumps(payload)
        return web.Response(status=status, body=body,
                            headers={**signing.bank_headers(self.bank, body), "Content-Type": "application/json"})

    def _refuse(self, request: web.Request, body: bytes) -> web.Response | None:
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.json_response({"code": "SYSTEM_ERROR", "message": "系统繁忙"}, status=503)
        if not self._verified(request, body):
            return web.json_response({"code": "SIGN_ERROR", "message": "验签失败"}, status=401)
        return None

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.read()
        refused = self._refuse(request, body)
        if refused is not None:
            return refused
        doc = orjson.loads(body)
        order_no = str(doc.get("orderNo", ""))
        known = self.orders.get(order_no)
        if doc.get("merchantNo") != self.merchant_no or not isinstance(doc.get("amount"), int):
            return web.json_response({"code": "PARAM_ERROR", "message": "参数错误"}, status=400)
        if known is not None and (known["amount"] != doc["amount"] or known["status"] == "SUCCESS"):
            return web.json_response({"code": "ORDER_EXISTS", "message": "订单号重复"}, status=400)
        if known is None:
            self.orders[order_no] = known = {
                "merchantNo": self.merchant_no, "orderNo": order_no, "amount": doc["amount"], "currency": "CNY",
                "status": "PENDING", "attach": doc.get("attach", ""),
                "payUrl": f"https://ecny.bank.example/pay?t={secrets.token_urlsafe(12)}"}
        return self._signed(200, known)

    async def _query(self, request: web.Request) -> web.Response:
        refused = self._refuse(request, b"")
        if refused is not None:
            return refused
        order = self.orders.get(request.match_info["order_no"])
        if order is None or request.query.get("merchantNo") != self.merchant_no:
            return web.json_response({"code": "ORDER_NOT_EXIST", "message": "订单不存在"}, status=404)
        return self._signed(200, {k: v for k, v in order.items() if k != "payUrl"})

    def pay(self, order_no: str) -> dict[str, Any]:
        """The payer paid from a wallet: the order becomes SUCCESS with a transaction number; returned."""
        order = self.orders[order_no]
        order.update({"status": "SUCCESS", "txnNo": f"EC{secrets.randbelow(10**24):024d}",
                      "paidAt": datetime.now(UTC).astimezone(BEIJING).isoformat(timespec="seconds"),
                      "walletId": f"0031****{secrets.randbelow(10**4):04d}"})
        return {k: v for k, v in order.items() if k != "payUrl"}

    def notification(self, order: dict[str, Any], *, timestamp: int | None = None, nonce: str | None = None,
                     signer: signing.Signer | None = None) -> tuple[dict[str, str], bytes]:
        """The headers and body of the bank's ``PAYMENT.SUCCESS`` notification; the keywords make it
        wrong on purpose (an old timestamp, a reused nonce, another key)."""
        body = orjson.dumps({"notifyId": f"N{secrets.token_hex(12)}", "eventType": "PAYMENT.SUCCESS",
                             "createTime": datetime.now(UTC).astimezone(BEIJING).isoformat(timespec="seconds"),
                             "order": order})
        headers = signing.bank_headers(signer or self.bank, body, timestamp=timestamp, nonce=nonce)
        return {**headers, "Content-Type": "application/json"}, body

    async def send(self, url: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        """POST a notification to the merchant's notify URL; its status and body."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        async with self._session.post(url, data=body, headers=headers) as resp:
            return resp.status, await resp.read()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await super().aclose()
