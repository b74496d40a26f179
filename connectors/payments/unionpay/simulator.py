"""``UnionPaySimulator``: UnionPay's side of back-end notifications and transaction queries.

It is its own certificate authority: a root, a middle certificate issued by the root, and a signing
certificate issued by the middle whose CN names the signer (``041@Z…@中国银联股份有限公司@00000001``),
as UnionPay's chain is laid out. A deployment (or test) trusts it by configuring ``root_pem`` and
``middle_pem``. :meth:`pay` records an order as paid and returns the 5.1.0 notification fields,
signed (sorted ``k=v&…`` → SHA-256 hex → SHA256withRSA); :meth:`form` encodes them as UnionPay POSTs
them and :meth:`send` delivers them to a ``backUrl``, as the platform would (up to five times). Served
(:meth:`start`), it answers ``POST /gateway/api/queryTrans.do``: the request must be signed with the
merchant's key (else ``respCode=11``); an order it knows is answered ``respCode=00`` with the
transaction's ``origRespCode``, one it does not ``34``; answers are ``k=v&…`` unencoded, signed.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from connectors.payments.unionpay import signing
from connectors.payments.unionpay.client import QUERY
from connectors.payments.unionpay.connector import parse_form
from connectors.payments.unionpay.transaction import BEIJING
from connectors.payments.wechatpay.signing import verify as rsa_verify
from hub.connectors.simulation import HttpSimulator


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _cert(subject: str, key: rsa.RSAPrivateKey, issuer: x509.Certificate | None, issuer_key: rsa.RSAPrivateKey,
          *, ca: bool, days: int) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CFCA OCA1"),
                      x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.now(UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(issuer.subject if issuer else name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256()))


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class UnionPaySimulator(HttpSimulator):
    def __init__(self, *, mer_id: str, signer_name: str = signing.SIGNER_NAME, sign_days: int = 365,
                 merchant_key: rsa.RSAPublicKey | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.mer_id = mer_id
        self.merchant_key = merchant_key
        root_key, middle_key = _key(), _key()
        self.root = _cert("CFCA TEST CS CA", root_key, None, root_key, ca=True, days=3650)
        self.middle = _cert("CFCA TEST OCA1", middle_key, self.root, root_key, ca=True, days=3650)
        self.sign_key = _key()
        self.sign_cert = _cert(f"041@Z{secrets.randbelow(10**8):08d}@{signer_name}@00000001", self.sign_key,
                               self.middle, middle_key, ca=False, days=sign_days)
        self.paid: dict[str, dict[str, str]] = {}
        self.queries: list[tuple[str, bool]] = []
        self._session: aiohttp.ClientSession | None = None

    @property
    def root_pem(self) -> str:
        return pem(self.root)

    @property
    def middle_pem(self) -> str:
        return pem(self.middle)

    @property
    def sign_cert_pem(self) -> str:
        return pem(self.sign_cert)

    def pay(self, order_id: str, txn_amt: int, account_id: str, *, resp_code: str = "00",
            txn_time: datetime | None = None, query_id: str | None = None) -> dict[str, str]:
        """The payer paid order ``order_id`` (``txn_amt`` fen, for ``account_id``): its signed notification."""
        when = (txn_time or datetime.now(UTC)).astimezone(BEIJING)
        fields = {
            "version": signing.VERSION, "encoding": "utf-8", "bizType": "000201", "txnType": "01",
            "txnSubType": "01", "accessType": "0", "merId": self.mer_id, "orderId": order_id,
            "txnTime": when.strftime("%Y%m%d%H%M%S"), "txnAmt": str(txn_amt), "currencyCode": "156",
            "queryId": query_id or f"{when:%m%d%H%M%S}{secrets.randbelow(10**11):011d}",
            "respCode": resp_code, "respMsg": "成功[0000000]" if resp_code == "00" else "交易失败",
            "settleAmt": str(txn_amt), "settleCurrencyCode": "156", "settleDate": when.strftime("%m%d"),
            "traceNo": f"{secrets.randbelow(10**6):06d}", "traceTime": when.strftime("%m%d%H%M%S"),
            "reqReserved": account_id, "accNo": "6221****0000", "payCardType": "01", "signMethod": "01",
        }
        self.paid[order_id] = fields
        return self.signed(fields)

    def signed(self, fields: Mapping[str, str], *, key: rsa.RSAPrivateKey | None = None,
               cert_pem: str | None = None) -> dict[str, str]:
        """``fields`` with ``signPubKeyCert`` and ``signature``; ``key``/``cert_pem`` make it wrong on purpose."""
        out = {k: v for k, v in fields.items() if k != "signature"}
        out["signPubKeyCert"] = cert_pem or self.sign_cert_pem
        out["signature"] = signing.sign(out, key or self.sign_key)
        return out

    @staticmethod
    def form(fields: Mapping[str, str]) -> bytes:
        """The body UnionPay POSTs: the fields URL-encoded, UTF-8."""
        return urlencode(fields).encode()

    async def send(self, url: str, fields: Mapping[str, str]) -> tuple[int, bytes]:
        """POST a notification to the merchant's ``backUrl``; its status and body."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        headers = {"Content-Type": "application/x-www-form-urlencoded;charset=UTF-8"}
        async with self._session.post(url, data=self.form(fields), headers=headers) as resp:
            return resp.status, await resp.read()

    def routes(self) -> list[web.RouteDef]:
        return [web.post(QUERY, self._query)]

    async def _query(self, request: web.Request) -> web.Response:
        fields = parse_form(await request.read())
        signature = fields.get("signature", "")
        ok = (self.merchant_key is not None and fields.get("merId") == self.mer_id
              and rsa_verify(self.merchant_key, signing.digest(fields), signature))
        self.queries.append((fields.get("orderId", ""), ok))
        answer = {k: fields.get(k, "") for k in ("version", "encoding", "bizType", "txnType", "txnSubType",
                                                   "accessType", "merId", "orderId", "txnTime")}
        paid = self.paid.get(answer["orderId"])
        if not ok:
            answer.update(respCode="11", respMsg="验证签名失败")
        elif paid is None or paid["txnTime"] != answer["txnTime"]:
            answer.update(respCode="34", respMsg="查无此交易")
        else:
            answer.update({k: paid[k] for k in ("queryId", "txnAmt", "currencyCode", "settleAmt", "settleDate",
                                                "traceNo", "traceTime", "reqReserved", "accNo")})
            answer.update(respCode="00", respMsg="成功[0000000]", origRespCode=paid["respCode"],
                          origRespMsg=paid["respMsg"])
        signed = self.signed({**answer, "signMethod": signing.SIGN_METHOD_RSA})
        return web.Response(text="&".join(f"{k}={v}" for k, v in signed.items()), content_type="text/plain")

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await super().aclose()
