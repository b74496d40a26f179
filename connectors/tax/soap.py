"""The SOAP provider: our WSDL through zeep, the HTTP through aiohttp.

zeep builds each envelope from the WSDL (``create_message``) and reads each answer
(``process_reply``: faults, the operation's output, with entities, DTDs and external fetches
forbidden), while the call itself goes through the hub's aiohttp, so it never blocks the event loop
and shares the hub's timeout and error mapping. (zeep's own async transport needs httpx, a second
HTTP stack; zeep's sync client would need a thread per call in flight.) The WSDL is read from the
file we ship; the transport refuses to fetch anything over the network.

Errors: connection failures, timeouts, 429, 5xx without a SOAP fault and ``soap:Server`` faults are
transient; a ``soap:Client`` fault is a refusal; an answer that is not readable XML (broken, or with a
DTD or entities) is a ``MalformedAnswer``; the inner document's ``returnCode`` is read with the
configured :class:`~connectors.tax.settings.ReturnCodes`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import zeep
import zeep.exceptions
from lxml import etree

from connectors.tax import xmldoc
from connectors.tax.http import Answer, TaxHttp
from connectors.tax.model import DuplicateSerial, InvoiceOrder, IssuedInvoice, MalformedAnswer, Refused
from connectors.tax.settings import TaxSettings
from hub.errors import PermanentError, TransientError

log = logging.getLogger(__name__)

NAMESPACE = "urn:gashub:einvoice:1"
BINDING = f"{{{NAMESPACE}}}EInvoiceBinding"
UNREADABLE = (zeep.exceptions.XMLSyntaxError, zeep.exceptions.XMLParseError, zeep.exceptions.DTDForbidden,
              zeep.exceptions.EntitiesForbidden, zeep.exceptions.ExternalReferenceForbidden,
              zeep.exceptions.TransportError, zeep.exceptions.ValidationError, etree.XMLSyntaxError)


def safe_settings() -> zeep.Settings:
    return zeep.Settings(strict=True, forbid_dtd=True, forbid_entities=True, forbid_external=True,
                         xml_huge_tree=False)


class LocalOnlyTransport(zeep.Transport):
    """Loads the WSDL and its XSD from files; fetches nothing over the network."""

    def load(self, url: str) -> bytes:
        if "://" in url and not url.startswith("file://"):
            raise zeep.exceptions.ExternalReferenceForbidden(url)  # type: ignore[no-untyped-call]
        with open(url.removeprefix("file://"), "rb") as fh:
            return fh.read()


class _Reply:
    """The face of a ``requests.Response`` that zeep's ``process_reply`` reads."""

    def __init__(self, answer: Answer) -> None:
        self.status_code = answer.status
        self.content = answer.body
        self.headers = answer.headers
        self.encoding = "utf-8"


class SoapProvider:
    def __init__(self, settings: TaxSettings, *, clock: Callable[[], datetime] | None = None) -> None:
        self.settings = settings
        self.codes = settings.codes
        self.clock = clock or (lambda: datetime.now(UTC))
        transport = LocalOnlyTransport()  # type: ignore[no-untyped-call]
        self.client = zeep.Client(wsdl=str(settings.wsdl), transport=transport,  # type: ignore[no-untyped-call]
                                  settings=safe_settings())
        self.service = self.client.create_service(BINDING, settings.endpoint)  # type: ignore[no-untyped-call]
        self.http = TaxHttp(timeout_s=settings.timeout_s)

    def _ids(self) -> dict[str, Any]:
        return {"app_id": self.settings.app_id, "taxpayer_id": self.settings.seller_tax_id, "now": self.clock()}

    async def call(self, operation: str, document: str) -> etree._Element:
        """Send ``document`` as ``in0`` of ``operation``; the inner answer document's root."""
        binding = self.service._binding
        envelope = self.client.create_message(self.service, operation, in0=document)  # type: ignore[no-untyped-call]
        body = etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
        action = binding.get(operation).soapaction
        answer = await self.http.post(self.settings.endpoint, body, {
            "Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{action}"'})
        where = f"{self.settings.endpoint} {operation}"
        try:
            out = binding.process_reply(self.client, binding.get(operation), _Reply(answer))
        except zeep.exceptions.Fault as fault:
            code = str(fault.code or "")
            if code.rpartition(":")[2] == "Client":
                raise Refused(code, str(fault.message or "")) from None
            raise TransientError(f"{where}: SOAP fault {code}: {str(fault.message)[:200]}") from None
        except UNREADABLE as exc:
            first_line = str(exc).partition("\n")[0][:200]  # zeep appends the whole content after it
            if answer.status == 429 or answer.status >= 500:
                raise TransientError(f"{where} answered {answer.status}: {answer.body[:200]!r}") from None
            if answer.status >= 400:  # not a SOAP endpoint (a wrong address, a proxy's page)
                raise PermanentError(f"{where} answered {answer.status}: {answer.body[:200]!r}") from None
            raise MalformedAnswer(f"{where} answered {answer.status} with an unreadable SOAP envelope: "
                                  f"{type(exc).__name__}: {first_line}", answer.body) from None
        if answer.status >= 400:
            raise PermanentError(f"{where} answered {answer.status}")
        if not isinstance(out, str):
            raise MalformedAnswer(f"{where} answered no result string", answer.body)
        try:
            return xmldoc.parse(out)
        except xmldoc.BadXml as exc:
            raise MalformedAnswer(f"{where} answered a result document we refuse: {exc}", out.encode()) from None

    def _state(self, root: etree._Element, body: str) -> tuple[str, str]:
        try:
            return xmldoc.return_state(root)
        except xmldoc.BadXml as exc:
            raise MalformedAnswer(str(exc), body.encode()) from None

    def _invoice(self, root: etree._Element) -> IssuedInvoice:
        try:
            return xmldoc.issued_invoice(root)
        except xmldoc.BadXml as exc:
            raise MalformedAnswer(f"the tax platform's invoice is unreadable: {exc}",
                                  xmldoc.to_string(root).encode()) from None

    def _check(self, root: etree._Element, *, not_found_ok: bool = False) -> bool:
        """True when the answer carries an invoice; raises for busy, duplicate and refusals."""
        code, message = self._state(root, xmldoc.to_string(root))
        if code == self.codes.ok:
            return True
        if code in self.codes.busy:
            raise TransientError(f"tax platform busy ({code}): {message[:200]}")
        if code in self.codes.duplicate:
            raise DuplicateSerial(f"tax platform: request serial taken before ({code}): {message[:200]}")
        if not_found_ok and code in self.codes.not_found:
            return False
        raise Refused(code or "no code", message)

    async def issue(self, order: InvoiceOrder) -> IssuedInvoice:
        root = await self.call("IssueInvoice", xmldoc.issue_request(order, **self._ids()))
        self._check(root)
        return self._invoice(root)

    async def query(self, serial: str) -> IssuedInvoice | None:
        root = await self.call("QueryBySerial", xmldoc.query_request(serial, **self._ids()))
        return self._invoice(root) if self._check(root, not_found_ok=True) else None

    async def download(self, number: str) -> IssuedInvoice:
        root = await self.call("DownloadInvoice", xmldoc.download_request(number, **self._ids()))
        self._check(root)
        return self._invoice(root)

    async def aclose(self) -> None:
        await self.http.aclose()
