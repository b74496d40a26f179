"""``EInvoiceSimulator``: a tax service provider that speaks SOAP 1.1, for tests and the demo.

A real SOAP server on aiohttp: ``GET {path}?wsdl`` serves the WSDL we ship (its address rewritten to
this server) and ``GET /einvoice.xsd`` its schema; ``POST {path}`` takes a SOAP envelope, parses it
and the document inside ``in0`` with the safe parser (:func:`connectors.tax.xmldoc.parse`), and
answers ``IssueInvoice``, ``QueryBySerial`` and ``DownloadInvoice`` from its :class:`TaxLedger`.
A request it cannot read gets a ``soap:Client`` fault.

Fault injection, for the next requests: ``down`` (503, no body), ``fail_next`` (500 with a
``soap:Server`` fault), ``busy_next`` (``9999``), ``slow_s`` with ``slow_next`` (the request is
carried out, the answer held back: the caller times out not knowing it was issued),
``ledger.refuse_next`` (a business refusal), ``broken_next`` (a truncated envelope) and
``raw_next`` / ``inner_next`` (this exact envelope, or this exact result string, e.g. a billion-laughs
document).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from aiohttp import web
from lxml import etree

from connectors.tax import xmldoc
from connectors.tax.ledger import BUSY, INVALID, OK, Issued, PlatformAnswer, TaxLedger
from connectors.tax.model import InvoiceOrder
from connectors.tax.settings import WSDL
from hub.connectors.http import read_capped
from hub.connectors.simulation import HttpSimulator

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
NAMESPACE = "urn:gashub:einvoice:1"
PLACEHOLDER = "http://127.0.0.1:8094/einvoice"
OPERATIONS = ("IssueInvoice", "QueryBySerial", "DownloadInvoice")


class BadRequest(ValueError):
    """A SOAP request the platform cannot read (answered with a ``soap:Client`` fault)."""


def envelope(body_child: etree._Element) -> bytes:
    root = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soapenv": SOAP_ENV})
    etree.SubElement(root, f"{{{SOAP_ENV}}}Body").append(body_child)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="utf-8"))


def fault(code: str, message: str) -> bytes:
    node = etree.Element(f"{{{SOAP_ENV}}}Fault")
    etree.SubElement(node, "faultcode").text = code
    etree.SubElement(node, "faultstring").text = message
    return envelope(node)


def result(operation: str, out: str) -> bytes:
    node = etree.Element(f"{{{NAMESPACE}}}{operation}Response", nsmap={"tns": NAMESPACE})
    etree.SubElement(node, f"{{{NAMESPACE}}}out").text = out
    return envelope(node)


def order_of(data: etree._Element) -> tuple[InvoiceOrder, Decimal]:
    """The order an issue request's ``Data`` carries, and its stated net total (``HJJE``)."""
    t = xmldoc.text
    try:
        lines = xmldoc.order_lines(data)
        totals = Decimal(t(data, "JSHJ")), Decimal(t(data, "HJSE")), Decimal(t(data, "HJJE"))
    except ArithmeticError:
        raise PlatformAnswer(INVALID, "an amount, quantity, price or rate is not a number") from None
    order = InvoiceOrder(serial=t(data, "FPQQLSH"), red=t(data, "KPLX") == "1", user_number=t(data, "KHBH"),
                         buyer_name=t(data, "GMF_MC"), buyer_tax_id=t(data, "GMF_NSRSBH") or None,
                         original_number=t(data, "YFP_HM") or None, lines=lines, total=totals[0], total_tax=totals[1])
    return order, totals[2]


class EInvoiceSimulator(HttpSimulator):
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, path: str = "/einvoice") -> None:
        super().__init__(host, port)
        self.path = path
        self.ledger = TaxLedger()
        self.down = False
        self.fail_next = 0
        self.busy_next = 0
        self.slow_s = 0.0
        self.slow_next = 0
        self.broken_next = 0
        self.raw_next: bytes | None = None
        self.inner_next: str | None = None
        self.calls: list[str] = []
        """Every operation asked, in order (including those answered with an injected fault)."""
        self.bad_requests: list[str] = []

    @property
    def endpoint(self) -> str:
        return f"{self.url}{self.path}"

    @property
    def invoices(self) -> dict[str, Issued]:
        return self.ledger.by_serial

    def routes(self) -> list[web.RouteDef]:
        return [web.get(self.path, self._wsdl), web.get("/einvoice.xsd", self._xsd), web.post(self.path, self._soap)]

    async def start(self) -> None:
        await super().start()
        self.ledger.base_url = self.url

    async def _wsdl(self, request: web.Request) -> web.Response:
        if "wsdl" not in request.query:
            return web.Response(status=404, text="ask for ?wsdl")
        text = WSDL.read_text(encoding="utf-8").replace(PLACEHOLDER, self.endpoint)
        return web.Response(text=text, content_type="text/xml")

    async def _xsd(self, request: web.Request) -> web.Response:
        return web.Response(text=(Path(WSDL).parent / "einvoice.xsd").read_text(encoding="utf-8"),
                            content_type="text/xml")

    def _xml(self, body: bytes, status: int = 200) -> web.Response:
        return web.Response(body=body, status=status, content_type="text/xml", charset="utf-8")

    async def _soap(self, request: web.Request) -> web.Response:
        raw = await read_capped(request.content, xmldoc.MAX_DOCUMENT)
        try:
            operation, inner = self._read(raw)
        except (BadRequest, xmldoc.BadXml) as exc:
            self.bad_requests.append(str(exc))
            return self._xml(fault("soapenv:Client", str(exc)), 500)
        self.calls.append(operation)
        if self.down:
            return web.Response(status=503)
        if self.fail_next > 0:
            self.fail_next -= 1
            return self._xml(fault("soapenv:Server", "internal error (simulated)"), 500)
        answer = self._answer(operation, inner)
        if self.slow_next > 0:
            self.slow_next -= 1
            await asyncio.sleep(self.slow_s)
        if self.raw_next is not None:
            body, self.raw_next = self.raw_next, None
            return self._xml(body)
        if self.broken_next > 0:
            self.broken_next -= 1
            return self._xml(result(operation, answer)[:-40])
        if self.inner_next is not None:
            answer, self.inner_next = self.inner_next, None
        return self._xml(result(operation, answer))

    def _read(self, raw: bytes) -> tuple[str, etree._Element]:
        root = xmldoc.parse(raw)
        if root.tag != f"{{{SOAP_ENV}}}Envelope":
            raise BadRequest("not a SOAP 1.1 envelope")
        body = root.find(f"{{{SOAP_ENV}}}Body")
        call = body[0] if body is not None and len(body) else None
        if call is None or not isinstance(call.tag, str):
            raise BadRequest("the SOAP body is empty")
        name = etree.QName(call).localname
        if etree.QName(call).namespace != NAMESPACE or name not in OPERATIONS:
            raise BadRequest(f"unknown operation {str(call.tag)[:80]}")
        in0 = call.find(f"{{{NAMESPACE}}}in0")
        if in0 is None or not in0.text:
            raise BadRequest(f"{name} needs in0 (the request document)")
        return name, xmldoc.parse(in0.text)

    def _answer(self, operation: str, inner: etree._Element) -> str:
        data = inner.find("Data")
        code = xmldoc.text(inner, "globalInfo/interfaceCode")
        root, out = xmldoc.document(code, xmldoc.text(inner, "globalInfo/dataExchangeId"), app_id="simulator",
                                    taxpayer_id=xmldoc.text(inner, "globalInfo/taxpayerId"),
                                    now=datetime.now(xmldoc.CHINA))
        try:
            if self.busy_next > 0:
                self.busy_next -= 1
                raise PlatformAnswer(BUSY, "system busy, try later (simulated)")
            if data is None:
                raise PlatformAnswer(INVALID, "the request has no Data")
            if operation == "IssueInvoice":
                order, net_total = order_of(data)
                issued = self.ledger.issue(order, net_total=net_total)
            elif operation == "QueryBySerial":
                issued = self.ledger.find_serial(xmldoc.text(data, "FPQQLSH"))
            else:
                issued = self.ledger.find_number(xmldoc.text(data, "FPHM"))
        except PlatformAnswer as answer:
            root.find("returnStateInfo/returnCode").text = answer.code  # type: ignore[union-attr]
            root.find("returnStateInfo/returnMessage").text = answer.message  # type: ignore[union-attr]
            return xmldoc.to_string(root)
        root.find("returnStateInfo/returnCode").text = OK  # type: ignore[union-attr]
        inv = issued.invoice
        for tag, value in (("FPQQLSH", inv.serial), ("FPHM", inv.number),
                           ("KPRQ", inv.issued_at.strftime("%Y%m%d%H%M%S")), ("FPLXDM", issued.type_code),
                           ("KPLX", "1" if inv.red else "0"), ("GMF_MC", inv.buyer_name), ("KHBH", inv.user_number),
                           ("JSHJ", inv.total), ("HJSE", inv.total_tax), ("PDF_URL", inv.pdf_url or "")):
            etree.SubElement(out, tag).text = str(value)
        return xmldoc.to_string(root)
