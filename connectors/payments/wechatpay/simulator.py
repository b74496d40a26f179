"""``WeChatPayPlatformSimulator``: WeChat Pay's side of API v3, on the loopback interface.

It holds a platform key pair (announced by a public-key id, ``PUB_KEY_ID_…``) and the merchant's
public key. Requests must carry a v3 ``Authorization`` that verifies with the merchant's key over
``METHOD\\npath?query\\ntimestamp\\nnonce\\nbody\\n`` (checked here with ``cryptography`` directly);
otherwise it answers 401 ``SIGN_ERROR`` as the platform does. Answers are signed with the platform
key. It takes Native orders, answers order queries, takes refunds, and pays orders: :meth:`pay` marks
an order paid and :meth:`notification` builds the ``TRANSACTION.SUCCESS`` notification the platform
would POST (encrypted with the APIv3 key, signed), which :meth:`send` delivers.
"""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.payments.wechatpay import signing
from hub.connectors.simulation import HttpSimulator

BEIJING = timezone(timedelta(hours=8))


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@dataclass
class Seen:
    """One request the platform received, and whether its signature verified."""

    method: str
    path: str
    body: bytes
    authorization: str
    verified: bool


class WeChatPayPlatformSimulator(HttpSimulator):
    def __init__(self, *, mchid: str, appid: str, api_v3_key: str, merchant_public_key: str,
                 platform_key: rsa.RSAPrivateKey | None = None, public_key_id: str | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.mchid = mchid
        self.appid = appid
        self.api_v3_key = api_v3_key.encode()
        self.merchant_key = signing.load_public_key(merchant_public_key)
        self.platform_key = platform_key or new_key()
        self.public_key_id = public_key_id or f"PUB_KEY_ID_0114{secrets.randbelow(10**24):024d}"
        self.orders: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.requests: list[Seen] = []
        self._session: aiohttp.ClientSession | None = None

    @property
    def platform_public_pem(self) -> str:
        return public_pem(self.platform_key)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v3/pay/transactions/native", self._native),
                web.get("/v3/pay/transactions/out-trade-no/{out_trade_no}", self._query),
                web.post("/v3/refund/domestic/refunds", self._refund)]

    # --- answering the merchant -------------------------------------------------------------------

    def _verified(self, request: web.Request, body: bytes) -> bool:
        header = request.headers.get("Authorization", "")
        try:
            auth = signing.parse_authorization(header)
        except ValueError:
            ok = False
        else:
            message = signing.request_message(request.method, request.path_qs, auth["timestamp"],
                                              auth["nonce_str"], body)
            ok = auth["mchid"] == self.mchid and signing.verify(self.merchant_key, message, auth["signature"]) \
                and abs(time.time() - int(auth["timestamp"])) <= 300
        self.requests.append(Seen(request.method, request.path_qs, body, header, ok))
        return ok

    def _signed(self, status: int, payload: dict[str, Any]) -> web.Response:
        body = orjson.dumps(payload)
        stamp, nonce = str(int(time.time())), signing.new_nonce()
        headers = {"Wechatpay-Timestamp": stamp, "Wechatpay-Nonce": nonce, "Wechatpay-Serial": self.public_key_id,
                   "Wechatpay-Signature": signing.sign(self.platform_key, signing.platform_message(stamp, nonce, body)),
                   "Wechatpay-Signature-Type": signing.SIGNATURE_TYPE, "Content-Type": "application/json"}
        return web.Response(status=status, body=body, headers=headers)

    @staticmethod
    def _error(status: int, code: str, message: str) -> web.Response:
        return web.json_response({"code": code, "message": message}, status=status)

    async def _native(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self._verified(request, body):
            return self._error(401, "SIGN_ERROR", "签名错误")
        doc = orjson.loads(body)
        out_trade_no = doc.get("out_trade_no", "")
        if doc.get("mchid") != self.mchid or doc.get("appid") != self.appid:
            return self._error(400, "PARAM_ERROR", "mchid or appid mismatch")
        known = self.orders.get(out_trade_no)
        if known is not None:
            if known["amount"]["total"] != doc["amount"]["total"]:
                return self._error(400, "OUT_TRADE_NO_USED", "商户订单号重复")
            if known["trade_state"] == "SUCCESS":
                return self._error(400, "ORDERPAID", "该订单已支付")
        else:
            self.orders[out_trade_no] = {
                "appid": self.appid, "mchid": self.mchid, "out_trade_no": out_trade_no, "trade_state": "NOTPAY",
                "trade_state_desc": "订单未支付", "attach": doc.get("attach", ""), "trade_type": "NATIVE",
                "amount": {"total": doc["amount"]["total"], "currency": doc["amount"].get("currency", "CNY")},
                "code_url": f"weixin://wxpay/bizpayurl?pr={secrets.token_urlsafe(6)}",
            }
        return self._signed(200, {"code_url": self.orders[out_trade_no]["code_url"]})

    async def _query(self, request: web.Request) -> web.Response:
        if not self._verified(request, b""):
            return self._error(401, "SIGN_ERROR", "签名错误")
        order = self.orders.get(request.match_info["out_trade_no"])
        if order is None or request.query.get("mchid") != self.mchid:
            return self._error(404, "ORDER_NOT_EXIST", "订单不存在")
        return self._signed(200, {k: v for k, v in order.items() if k != "code_url"})

    async def _refund(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self._verified(request, body):
            return self._error(401, "SIGN_ERROR", "签名错误")
        doc = orjson.loads(body)
        order = next((o for o in self.orders.values()
                      if (o.get("transaction_id") == doc.get("transaction_id") and "transaction_id" in doc)
                      or o["out_trade_no"] == doc.get("out_trade_no")), None)
        if order is None or order["trade_state"] not in ("SUCCESS", "REFUND"):
            return self._error(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        refunded = sum(r["amount"]["refund"] for r in self.refunds.values()
                       if r["transaction_id"] == order["transaction_id"])
        amount = doc["amount"]
        if amount["total"] != order["amount"]["total"] or refunded + amount["refund"] > amount["total"]:
            return self._error(403, "NOT_ENOUGH", "退款金额超过可退金额")
        refund = self.refunds.get(doc["out_refund_no"])
        if refund is None:
            refund = {"refund_id": f"5030{secrets.randbelow(10**24):024d}", "out_refund_no": doc["out_refund_no"],
                      "transaction_id": order["transaction_id"], "out_trade_no": order["out_trade_no"],
                      "channel": "ORIGINAL", "status": "PROCESSING", "create_time": _now(),
                      "amount": {"total": amount["total"], "refund": amount["refund"],
                                 "payer_total": amount["total"], "payer_refund": amount["refund"], "currency": "CNY"}}
            self.refunds[doc["out_refund_no"]] = refund
            order["trade_state"] = "REFUND"
        return self._signed(200, refund)

    # --- paying and notifying -----------------------------------------------------------------------

    def pay(self, out_trade_no: str, *, openid: str | None = None) -> dict[str, Any]:
        """The payer scanned and paid: the order becomes a SUCCESS transaction, which is returned."""
        order = self.orders[out_trade_no]
        order.update({
            "transaction_id": f"4200{secrets.randbelow(10**24):024d}", "trade_state": "SUCCESS",
            "trade_state_desc": "支付成功", "bank_type": "OTHERS", "success_time": _now(),
            "payer": {"openid": openid or "oUpF8u" + secrets.token_urlsafe(16)[:22]},
        })
        order["amount"] = {**order["amount"], "payer_total": order["amount"]["total"], "payer_currency": "CNY"}
        return {k: v for k, v in order.items() if k != "code_url"}

    def notification(self, transaction: dict[str, Any], *, timestamp: int | None = None, nonce: str | None = None,
                     serial: str | None = None, signer: rsa.RSAPrivateKey | None = None,
                     signature: str | None = None) -> tuple[dict[str, str], bytes]:
        """The headers and body of the platform's ``TRANSACTION.SUCCESS`` notification. The keyword
        arguments make it wrong on purpose (old timestamp, another key or serial, a probe signature)."""
        resource = signing.encrypt_resource(self.api_v3_key, orjson.dumps(transaction), associated_data="transaction",
                                            original_type="transaction")
        body = orjson.dumps({"id": f"EV-{secrets.token_hex(16)}", "create_time": _now(),
                             "resource_type": "encrypt-resource", "event_type": "TRANSACTION.SUCCESS",
                             "summary": "支付成功", "resource": resource})
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        nonce = nonce or signing.new_nonce()
        if signature is None:
            signature = signing.sign(signer or self.platform_key, signing.platform_message(stamp, nonce, body))
        return {"Wechatpay-Timestamp": stamp, "Wechatpay-Nonce": nonce, "Wechatpay-Signature": signature,
                "Wechatpay-Serial": serial or self.public_key_id, "Wechatpay-Signature-Type": signing.SIGNATURE_TYPE,
                "Content-Type": "application/json"}, body

    async def send(self, url: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        """POST a notification to the merchant's notify URL; its status and body."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        async with self._session.post(url, data=body, headers=headers) as resp:
            return resp.status, await resp.read()

    @staticmethod
    def probe_signature() -> str:
        """What a signature probe looks like: a ``WECHATPAY/SIGNTEST/`` prefix and random bytes."""
        return signing.SIGNTEST_PREFIX + base64.b64encode(secrets.token_bytes(256)).decode()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await super().aclose()


def _now() -> str:
    return datetime.now(UTC).astimezone(BEIJING).isoformat(timespec="seconds")
