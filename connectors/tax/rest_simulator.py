"""``RestTaxSimulator``: the REST variant of the simulated tax platform (:mod:`connectors.tax.rest`).

``POST {path}`` takes the signed JSON request, verifies its signature with the secret of its
``appKey``, its timestamp (5 minutes) and its nonce (once), and answers ``invoice.issue``,
``invoice.query`` and ``invoice.download`` from a :class:`TaxLedger`. A bad signature is 401 with code
``1001``; a body that is not a request is 400. Fault injection as for SOAP: ``down`` (503),
``fail_next`` (500), ``busy_next`` (``9999``), ``slow_s`` with ``slow_next``, ``ledger.refuse_next``,
``raw_next`` (this exact body).
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from aiohttp import web

from connectors.tax import signing
from connectors.tax.ledger import BUSY, INVALID, OK, Issued, PlatformAnswer, TaxLedger
from connectors.tax.model import InvoiceOrder, Line
from hub.connectors.simulation import HttpSimulator

BAD_SIGNATURE = "1001"


def _order(biz: Any) -> tuple[InvoiceOrder, Decimal]:
    try:
        buyer = biz["buyer"]
        lines = [Line(name=str(x["name"]), tax_code=str(x["taxCode"]), unit=str(x.get("unit") or ""),
                      quantity=Decimal(x["quantity"]), unit_price=Decimal(x["unitPrice"]),
                      amount=Decimal(x["amount"]), tax_rate=Decimal(x["taxRate"]), tax=Decimal(x["tax"]))
                 for x in biz["items"]]
        order = InvoiceOrder(serial=str(biz["serialNo"]), red=biz.get("invoiceKind") == "red",
                             user_number=str(buyer["userNumber"]), buyer_name=str(buyer["name"]),
                             buyer_tax_id=buyer.get("taxId"), original_number=biz.get("originalInvoiceNumber"),
                             lines=lines, total=Decimal(biz["totalAmount"]), total_tax=Decimal(biz["totalTax"]))
        return order, Decimal(biz["totalNet"])
    except (KeyError, TypeError, InvalidOperation) as exc:
        raise PlatformAnswer(INVALID, f"bizContent is not an invoice request ({type(exc).__name__}: {exc})") from None


def _data(issued: Issued) -> dict[str, Any]:
    inv = issued.invoice
    return {"serialNo": inv.serial, "invoiceNumber": inv.number, "invoiceDate": inv.issued_at.isoformat(),
            "invoiceType": inv.invoice_type, "buyerName": inv.buyer_name, "userNumber": inv.user_number,
            "totalAmount": str(inv.total), "totalTax": str(inv.total_tax), "pdfUrl": inv.pdf_url,
            "invoiceKind": "red" if inv.red else "blue"}


class RestTaxSimulator(HttpSimulator):
    def __init__(self, app_key: str, app_secret: str, host: str = "127.0.0.1", port: int = 0, *,
                 path: str = "/openapi/invoice") -> None:
        super().__init__(host, port)
        self.secrets = {app_key: app_secret}
        self.path = path
        self.ledger = TaxLedger()
        self.down = False
        self.fail_next = 0
        self.busy_next = 0
        self.slow_s = 0.0
        self.slow_next = 0
        self.raw_next: bytes | None = None
        self.calls: list[str] = []
        self.bad_signatures: list[str] = []
        self._nonces: set[str] = set()

    @property
    def endpoint(self) -> str:
        return f"{self.url}{self.path}"

    @property
    def invoices(self) -> dict[str, Issued]:
        return self.ledger.by_serial

    def routes(self) -> list[web.RouteDef]:
        return [web.post(self.path, self._call)]

    async def start(self) -> None:
        await super().start()
        self.ledger.base_url = self.url

    async def _call(self, request: web.Request) -> web.Response:
        try:
            fields = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.json_response({"code": INVALID, "message": "the body is not JSON"}, status=400)
        if not isinstance(fields, dict):
            return web.json_response({"code": INVALID, "message": "the body must be a JSON object"}, status=400)
        try:
            secret = self.secrets.get(str(fields.get("appKey")))
            if secret is None:
                raise signing.SignatureError("unknown appKey")
            signing.verify(fields, secret, now_ms=int(time.time() * 1000))
            nonce = str(fields.get("nonce") or "")
            if not nonce or nonce in self._nonces:
                raise signing.SignatureError("nonce missing or used before")
            self._nonces.add(nonce)
        except signing.SignatureError as exc:
            self.bad_signatures.append(str(exc))
            return web.json_response({"code": BAD_SIGNATURE, "message": str(exc)}, status=401)
        method = str(fields.get("method"))
        self.calls.append(method)
        if self.down:
            return web.Response(status=503)
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=500, text="internal error (simulated)")
        body = self._answer(method, fields.get("bizContent"))
        if self.slow_next > 0:
            self.slow_next -= 1
            await asyncio.sleep(self.slow_s)
        if self.raw_next is not None:
            raw, self.raw_next = self.raw_next, None
            return web.Response(body=raw, content_type="application/json")
        return web.json_response(body)

    def _answer(self, method: str, content: Any) -> dict[str, Any]:
        try:
            if self.busy_next > 0:
                self.busy_next -= 1
                raise PlatformAnswer(BUSY, "system busy, try later (simulated)")
            try:
                biz = orjson.loads(content) if isinstance(content, str) else None
            except orjson.JSONDecodeError:
                biz = None
            if not isinstance(biz, dict):
                raise PlatformAnswer(INVALID, "bizContent must be a JSON object in a string")
            if method == "invoice.issue":
                order, net_total = _order(biz)
                issued = self.ledger.issue(order, net_total=net_total)
            elif method == "invoice.query":
                issued = self.ledger.find_serial(str(biz.get("serialNo")))
            elif method == "invoice.download":
                issued = self.ledger.find_number(str(biz.get("invoiceNumber")))
            else:
                raise PlatformAnswer(INVALID, f"unknown method {method[:40]!r}")
        except PlatformAnswer as answer:
            return {"code": answer.code, "message": answer.message}
        return {"code": OK, "message": "", "data": _data(issued)}
