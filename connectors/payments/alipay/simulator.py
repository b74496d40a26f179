"""``AlipayGatewaySimulator``: Alipay's side of the open platform, on the loopback interface.

It holds the Alipay key pair and the application's public key. ``/gateway.do`` takes a call as a
form POST (or a GET with the form as the query, as python-alipay-sdk sends it); the form's ``sign``
must verify with the application's key over the sorted non-empty parameters but ``sign``, otherwise it
answers ``40002 isv.invalid-signature`` as Alipay does. Answers are ``{"<method>_response": {…},
"sign": "…"}`` signed with the Alipay key over the node's exact text. It precreates orders (a QR code
per order), answers queries (``40004 ACQ.TRADE_NOT_EXIST`` for an order it never saw or one not yet
scanned), pays and closes orders, and builds the asynchronous notification Alipay would POST
(:meth:`notification`, signed over everything but ``sign`` and ``sign_type``), which :meth:`send`
delivers to the merchant's notify URL.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.payments.alipay import signing
from connectors.payments.alipay.trade import BEIJING
from hub.connectors.simulation import HttpSimulator

METHODS = ("alipay.trade.precreate", "alipay.trade.query")


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def beijing_now() -> str:
    return datetime.now(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class Call:
    """One call the gateway received, and whether its signature verified."""

    params: dict[str, str]
    verified: bool


class AlipayGatewaySimulator(HttpSimulator):
    def __init__(self, *, app_id: str, app_public_key: str, seller_id: str = "2088102146225135",
                 alipay_key: rsa.RSAPrivateKey | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.app_id = app_id
        self.seller_id = seller_id
        self.app_key = signing.load_public_key(app_public_key)
        self.alipay_key = alipay_key or new_key()
        self.orders: dict[str, dict[str, str]] = {}
        self.calls: list[Call] = []
        self.notify_urls: dict[str, str] = {}
        self._session: aiohttp.ClientSession | None = None

    @property
    def gateway_url(self) -> str:
        return f"{self.url}/gateway.do"

    @property
    def alipay_public_pem(self) -> str:
        return public_pem(self.alipay_key)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/gateway.do", self._gateway), web.get("/gateway.do", self._gateway)]

    # --- answering the application ----------------------------------------------------------------

    def _answer(self, method: str, node: dict[str, Any], *, signed: bool = True) -> web.Response:
        name = method.replace(".", "_") + "_response" if method in METHODS else "error_response"
        text = orjson.dumps(node).decode()
        doc = f'{{"{name}":{text}'
        if signed:
            doc += f',"sign":"{signing.sign(self.alipay_key, text.encode())}"'
        return web.Response(text=doc + "}", content_type="application/json", charset="utf-8")

    async def _gateway(self, request: web.Request) -> web.Response:
        form = await request.post() if request.method == "POST" else request.query
        params = {k: str(v) for k, v in form.items()}
        method = params.get("method", "")
        ok = params.get("sign_type") == signing.SIGN_TYPE and signing.verify(
            self.app_key, signing.request_content(params).encode(), params.get("sign", ""))
        self.calls.append(Call(params, ok))
        if params.get("app_id") != self.app_id:
            return self._answer(method, {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-app-id",
                                         "sub_msg": "无效的AppID参数"}, signed=False)
        if not ok:
            return self._answer(method, {"code": "40002", "msg": "Invalid Arguments",
                                         "sub_code": "isv.invalid-signature", "sub_msg": "验签出错"}, signed=False)
        if method not in METHODS:
            return self._answer(method, {"code": "40002", "msg": "Invalid Arguments",
                                         "sub_code": "isv.invalid-method", "sub_msg": "不存在的方法名"}, signed=False)
        try:
            biz = orjson.loads(params.get("biz_content", ""))
        except orjson.JSONDecodeError:
            biz = None
        if not isinstance(biz, dict):
            return self._answer(method, {"code": "40002", "msg": "Invalid Arguments",
                                         "sub_code": "isv.invalid-biz-content", "sub_msg": "biz_content无效"})
        if method == "alipay.trade.precreate":
            return self._answer(method, self._precreate(biz, params.get("notify_url")))
        return self._answer(method, self._query(biz))

    def _precreate(self, biz: dict[str, Any], notify_url: str | None) -> dict[str, str]:
        out_trade_no = str(biz.get("out_trade_no") or "")
        total = str(biz.get("total_amount") or "")
        try:
            valid = bool(out_trade_no) and Decimal(total) > 0 and len(total.partition(".")[2]) <= 2
        except ArithmeticError:
            valid = False
        if not valid:
            return {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.INVALID_PARAMETER",
                    "sub_msg": "参数无效"}
        known = self.orders.get(out_trade_no)
        if known is not None:
            if known["total_amount"] != total:
                return {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.CONTEXT_INCONSISTENT",
                        "sub_msg": "交易信息被篡改"}
            if known["trade_status"] in ("TRADE_SUCCESS", "TRADE_FINISHED"):
                return {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_HAS_SUCCESS",
                        "sub_msg": "交易已被支付"}
        else:
            self.orders[out_trade_no] = {
                "out_trade_no": out_trade_no, "total_amount": total, "subject": str(biz.get("subject") or ""),
                "trade_status": "WAIT_BUYER_PAY", "gmt_create": beijing_now(),
                "qr_code": f"https://qr.alipay.com/bax0{secrets.token_hex(10)}",
            }
        if notify_url:
            self.notify_urls[out_trade_no] = notify_url
        return {"code": "10000", "msg": "Success", "out_trade_no": out_trade_no,
                "qr_code": self.orders[out_trade_no]["qr_code"]}

    def _query(self, biz: dict[str, Any]) -> dict[str, str]:
        order = self.orders.get(str(biz.get("out_trade_no") or "")) or next(
            (o for o in self.orders.values() if biz.get("trade_no") and o.get("trade_no") == biz.get("trade_no")), None)
        if order is None or "trade_no" not in order:  # not scanned yet: Alipay has no trade for it
            return {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST",
                    "sub_msg": "交易不存在"}
        answer = {"code": "10000", "msg": "Success"}
        shown = ("trade_no", "out_trade_no", "trade_status", "total_amount", "buyer_user_id", "send_pay_date",
                 "buyer_logon_id")
        answer.update({k: order[k] for k in shown if k in order})
        return answer

    # --- paying and notifying ---------------------------------------------------------------------

    def scan(self, out_trade_no: str) -> dict[str, str]:
        """The payer scanned the code: a trade exists, waiting for payment."""
        order = self.orders[out_trade_no]
        order.setdefault("trade_no", f"{datetime.now(BEIJING):%Y%m%d}2200{secrets.randbelow(10**16):016d}")
        order.setdefault("buyer_user_id", f"2088{secrets.randbelow(10**12):012d}")
        order.setdefault("buyer_logon_id", "159****5620")
        return dict(order)

    def pay(self, out_trade_no: str) -> dict[str, str]:
        """The payer scanned and paid: the order becomes a TRADE_SUCCESS trade, which is returned."""
        self.scan(out_trade_no)
        order = self.orders[out_trade_no]
        order.update({"trade_status": "TRADE_SUCCESS", "gmt_payment": beijing_now()})
        order["send_pay_date"] = order["gmt_payment"]
        return dict(order)

    def close(self, out_trade_no: str) -> dict[str, str]:
        """The order timed out unpaid (or was closed): TRADE_CLOSED."""
        self.scan(out_trade_no)
        self.orders[out_trade_no].update({"trade_status": "TRADE_CLOSED", "gmt_close": beijing_now()})
        return dict(self.orders[out_trade_no])

    def notification(self, trade: dict[str, str], *, notify_id: str | None = None, notify_time: str | None = None,
                     signer: rsa.RSAPrivateKey | None = None, **extra: str) -> dict[str, str]:
        """The form Alipay POSTs for ``trade`` (one of :meth:`pay`'s, :meth:`scan`'s or :meth:`close`'s),
        signed; ``signer`` and the keywords make it wrong on purpose."""
        params = {
            "notify_time": notify_time or beijing_now(), "notify_type": "trade_status_sync",
            "notify_id": notify_id or secrets.token_hex(17), "app_id": self.app_id, "auth_app_id": self.app_id,
            "charset": "utf-8", "version": "1.0", "trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"],
            "buyer_id": trade["buyer_user_id"], "seller_id": self.seller_id, "trade_status": trade["trade_status"],
            "total_amount": trade["total_amount"], "subject": trade.get("subject", ""),
            "gmt_create": trade.get("gmt_create", beijing_now()),
        }
        if trade["trade_status"] in ("TRADE_SUCCESS", "TRADE_FINISHED"):
            params.update({"receipt_amount": trade["total_amount"], "buyer_pay_amount": trade["total_amount"],
                           "invoice_amount": trade["total_amount"], "point_amount": "0.00",
                           "gmt_payment": trade["gmt_payment"],
                           "fund_bill_list": orjson.dumps([{"amount": trade["total_amount"],
                                                            "fundChannel": "ALIPAYACCOUNT"}]).decode()})
        if "gmt_close" in trade:
            params["gmt_close"] = trade["gmt_close"]
        params.update(extra)
        sign = signing.sign(signer or self.alipay_key, signing.notification_content(params).encode())
        return {**params, "sign_type": signing.SIGN_TYPE, "sign": sign}

    async def send(self, url: str, params: dict[str, str] | bytes) -> tuple[int, str]:
        """POST a notification (its form, or a raw body) to the merchant's notify URL."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        body = params if isinstance(params, bytes) else urlencode(params).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        async with self._session.post(url, data=body, headers=headers) as resp:
            return resp.status, await resp.text()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await super().aclose()
