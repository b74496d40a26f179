"""The XML documents that travel inside the SOAP strings, and the one safe way we read XML.

Every request and answer is one ``<interface>`` document, in the layout of the legacy providers'
``eiInterface`` (partners.md)::

    <interface>
      <globalInfo><appId/><interfaceCode/><requestTime/><dataExchangeId/><taxpayerId/></globalInfo>
      <returnStateInfo><returnCode/><returnMessage/></returnStateInfo>
      <Data>…</Data>
    </interface>

``Data`` of an issue request: ``FPQQLSH`` (our request serial), ``KPLX`` (0 blue, 1 red), ``XSF_NSRSBH``
(the seller's tax id), ``KHBH`` (the user number: the gas account), ``GMF_MC`` / ``GMF_NSRSBH`` (buyer
name and tax id), ``YFP_HM`` (a red invoice's blue number), ``JSHJ`` / ``HJJE`` / ``HJSE`` (gross, net,
tax) and ``XMXX`` with one ``XM`` per line (``XMMC`` name, ``SPBM`` tax code, ``DW`` unit, ``XMSL``
quantity, ``XMDJ`` net unit price, ``XMJE`` net amount, ``SL`` rate, ``SE`` tax). Query by serial sends
``FPQQLSH``; download sends ``FPHM``. An answer's ``Data`` names the invoice: ``FPQQLSH``, ``FPHM``
(20 digits), ``KPRQ`` (yyyyMMddHHmmss, Beijing), ``FPLXDM`` (81 special, 82 ordinary), ``KPLX``,
``GMF_MC``, ``KHBH``, ``JSHJ``, ``HJSE``, ``PDF_URL`` — the fields ``mappings/tax-invoice-result.toml``
reads.

Reading XML: lxml with entities left unresolved, no network, no DTD loading, no huge trees; and any
document that declares a DOCTYPE or holds an entity reference is refused outright (billion laughs,
external entities), as is anything not well-formed. Text is escaped by lxml when we build.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from lxml import etree

from connectors.tax.model import INVOICE_NUMBER, InvoiceOrder, IssuedInvoice, Line

CHINA = timezone(timedelta(hours=8))
ISSUE = "ECXML.FPKJ.BC.E_INV"
QUERY = "ECXML.FPCX.LSH.E_INV"
DOWNLOAD = "ECXML.FPXZ.CX.E_INV"
INVOICE_TYPES = {"81": "digital_special", "82": "digital_ordinary"}
MAX_DOCUMENT = 1_000_000


class BadXml(ValueError):
    """A document we refuse to read, with the reason in words."""


def safe_parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           huge_tree=False, remove_pis=True, remove_comments=True)


def parse(raw: bytes | str) -> etree._Element:
    """Parse one document safely, or ``BadXml`` saying why not."""
    data = raw.encode() if isinstance(raw, str) else raw
    if len(data) > MAX_DOCUMENT:
        raise BadXml(f"document of {len(data)} bytes is over the {MAX_DOCUMENT}-byte limit")
    if not data.strip():
        raise BadXml("empty document")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:  # refused before the parser sees it (also checked after)
        raise BadXml("the document declares a DTD (entity declarations are refused)")
    try:
        root = etree.fromstring(data, safe_parser())
    except etree.XMLSyntaxError as exc:
        raise BadXml(f"not well-formed XML: {exc}") from None
    tree = root.getroottree()
    if getattr(tree.docinfo, "doctype", "") or tree.docinfo.internalDTD is not None:
        raise BadXml("the document declares a DTD (entity declarations are refused)")
    if any(isinstance(node, etree._Entity) for node in root.iter()):
        raise BadXml("the document holds an entity reference (entities are refused)")
    return root


def _sub(parent: etree._Element, tag: str, text: object | None = None) -> etree._Element:
    child = etree.SubElement(parent, tag)
    if text is not None:
        child.text = str(text)
    return child


def document(code: str, exchange_id: str, *, app_id: str, taxpayer_id: str, now: datetime,
             return_code: str = "", return_message: str = "") -> tuple[etree._Element, etree._Element]:
    """An empty ``<interface>`` and its ``Data`` element."""
    root = etree.Element("interface")
    info = _sub(root, "globalInfo")
    _sub(info, "appId", app_id)
    _sub(info, "interfaceCode", code)
    _sub(info, "requestTime", now.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S"))
    _sub(info, "dataExchangeId", exchange_id)
    _sub(info, "taxpayerId", taxpayer_id)
    state = _sub(root, "returnStateInfo")
    _sub(state, "returnCode", return_code)
    _sub(state, "returnMessage", return_message)
    return root, _sub(root, "Data")


def to_string(root: etree._Element) -> str:
    return etree.tostring(root, encoding="unicode")


def issue_request(order: InvoiceOrder, *, app_id: str, taxpayer_id: str, now: datetime) -> str:
    root, data = document(ISSUE, order.serial, app_id=app_id, taxpayer_id=taxpayer_id, now=now)
    for tag, value in (("FPQQLSH", order.serial), ("KPLX", "1" if order.red else "0"),
                       ("XSF_NSRSBH", taxpayer_id), ("KHBH", order.user_number), ("GMF_MC", order.buyer_name),
                       ("GMF_NSRSBH", order.buyer_tax_id or ""), ("YFP_HM", order.original_number or ""),
                       ("JSHJ", order.total), ("HJJE", order.net_total), ("HJSE", order.total_tax)):
        _sub(data, tag, value)
    items = _sub(data, "XMXX")
    for line in order.lines:
        item = _sub(items, "XM")
        for tag, value in (("XMMC", line.name), ("SPBM", line.tax_code), ("DW", line.unit),
                           ("XMSL", line.quantity), ("XMDJ", line.unit_price), ("XMJE", line.amount),
                           ("SL", line.tax_rate), ("SE", line.tax)):
            _sub(item, tag, value)
    return to_string(root)


def query_request(serial: str, *, app_id: str, taxpayer_id: str, now: datetime) -> str:
    root, data = document(QUERY, serial, app_id=app_id, taxpayer_id=taxpayer_id, now=now)
    _sub(data, "FPQQLSH", serial)
    return to_string(root)


def download_request(number: str, *, app_id: str, taxpayer_id: str, now: datetime) -> str:
    root, data = document(DOWNLOAD, number, app_id=app_id, taxpayer_id=taxpayer_id, now=now)
    _sub(data, "FPHM", number)
    return to_string(root)


def text(parent: etree._Element, path: str) -> str:
    found = parent.find(path)
    return (found.text or "").strip() if found is not None else ""


def return_state(root: etree._Element) -> tuple[str, str]:
    """``(returnCode, returnMessage)``; ``BadXml`` when the document is not an ``<interface>``."""
    if root.tag != "interface" or root.find("returnStateInfo/returnCode") is None:
        raise BadXml(f"not an <interface> answer with returnStateInfo/returnCode (root <{str(root.tag)[:40]}>)")
    return text(root, "returnStateInfo/returnCode"), text(root, "returnStateInfo/returnMessage")


def issued_invoice(root: etree._Element) -> IssuedInvoice:
    """The invoice an answer's ``Data`` names; ``BadXml`` saying which field is wrong."""
    data = root.find("Data")
    if data is None:
        raise BadXml("the answer has no <Data>")
    number = text(data, "FPHM")
    if not INVOICE_NUMBER.fullmatch(number):
        raise BadXml(f"FPHM is not a 20-digit invoice number: {number[:40]!r}")
    try:
        issued_at = datetime.strptime(text(data, "KPRQ"), "%Y%m%d%H%M%S").replace(tzinfo=CHINA)
    except ValueError:
        raise BadXml(f"KPRQ is not yyyyMMddHHmmss: {text(data, 'KPRQ')[:20]!r}") from None
    try:
        total, total_tax = Decimal(text(data, "JSHJ")), Decimal(text(data, "HJSE"))
    except ArithmeticError:
        raise BadXml("JSHJ or HJSE is not a number") from None
    serial, name, user = text(data, "FPQQLSH"), text(data, "GMF_MC"), text(data, "KHBH")
    for tag, value in (("FPQQLSH", serial), ("GMF_MC", name), ("KHBH", user)):
        if not value:
            raise BadXml(f"the answer's Data has no {tag}")
    code = text(data, "FPLXDM")
    return IssuedInvoice(serial=serial, number=number, invoice_type=INVOICE_TYPES.get(code, f"type {code}"[:32]),
                         issued_at=issued_at, buyer_name=name, user_number=user, total=total, total_tax=total_tax,
                         pdf_url=text(data, "PDF_URL") or None, red=text(data, "KPLX") == "1")


def order_lines(data: etree._Element) -> Sequence[Line]:
    """The lines of an issue request's ``Data`` (the simulator's side); ``ArithmeticError`` on a bad number."""
    return [Line(name=text(xm, "XMMC"), tax_code=text(xm, "SPBM"), unit=text(xm, "DW"),
                 quantity=Decimal(text(xm, "XMSL")), unit_price=Decimal(text(xm, "XMDJ")),
                 amount=Decimal(text(xm, "XMJE")), tax_rate=Decimal(text(xm, "SL")), tax=Decimal(text(xm, "SE")))
            for xm in data.findall("XMXX/XM")]
