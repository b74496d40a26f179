"""The REST provider: signed JSON (:mod:`connectors.tax.signing`) to one URL, ``method`` naming the call.

Methods: ``invoice.issue`` (bizContent: ``serialNo``, ``invoiceKind`` blue/red, ``originalInvoiceNumber``,
``sellerTaxId``, ``buyer{name, taxId, userNumber}``, ``items[{name, taxCode, unit, quantity, unitPrice,
amount, taxRate, tax}]``, ``totalAmount``, ``totalNet``, ``totalTax``), ``invoice.query`` (``serialNo``),
``invoice.download`` (``invoiceNumber``). Answer: ``{code, message, data}``; ``data`` names the invoice:
``serialNo``, ``invoiceNumber``, ``invoiceDate`` (ISO 8601 with offset), ``invoiceType``, ``buyerName``,
``userNumber``, ``totalAmount``, ``totalTax``, ``pdfUrl``, ``invoiceKind``. Amounts are decimal strings.
Errors as for SOAP: transport, 429 and 5xx transient; ``code`` read with the configured return codes;
an answer that is not a JSON object is a ``MalformedAnswer``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from connectors.tax.http import TaxHttp
from connectors.tax.model import (
    INVOICE_NUMBER,
    DuplicateSerial,
    InvoiceOrder,
    IssuedInvoice,
    MalformedAnswer,
    Refused,
)
from connectors.tax.settings import TaxSettings
from connectors.tax.signing import signed_request
from hub.errors import PermanentError, TransientError


def biz_issue(order: InvoiceOrder, seller_tax_id: str) -> dict[str, Any]:
    return {
        "serialNo": order.serial, "invoiceKind": "red" if order.red else "blue",
        "originalInvoiceNumber": order.original_number, "sellerTaxId": seller_tax_id,
        "buyer": {"name": order.buyer_name, "taxId": order.buyer_tax_id, "userNumber": order.user_number},
        "items": [{"name": x.name, "taxCode": x.tax_code, "unit": x.unit, "quantity": str(x.quantity),
                   "unitPrice": str(x.unit_price), "amount": str(x.amount), "taxRate": str(x.tax_rate),
                   "tax": str(x.tax)} for x in order.lines],
        "totalAmount": str(order.total), "totalNet": str(order.net_total), "totalTax": str(order.total_tax),
    }


def invoice_from(data: Any, body: bytes) -> IssuedInvoice:
    """The invoice ``data`` names; ``MalformedAnswer`` saying which field is wrong."""
    if not isinstance(data, Mapping):
        raise MalformedAnswer("the answer's data is not an object", body)
    number = data.get("invoiceNumber")
    if not isinstance(number, str) or not INVOICE_NUMBER.fullmatch(number):
        raise MalformedAnswer(f"invoiceNumber is not 20 digits: {str(number)[:40]!r}", body)
    try:
        issued_at = datetime.fromisoformat(str(data.get("invoiceDate")))
        total, tax = Decimal(str(data.get("totalAmount"))), Decimal(str(data.get("totalTax")))
    except (ValueError, InvalidOperation):
        raise MalformedAnswer(f"invoice {number}: invoiceDate, totalAmount or totalTax is malformed", body) from None
    if issued_at.tzinfo is None:
        raise MalformedAnswer(f"invoice {number}: invoiceDate has no UTC offset", body)
    fields = {k: data.get(k) for k in ("serialNo", "invoiceType", "buyerName", "userNumber")}
    for name, value in fields.items():
        if not isinstance(value, str) or not value:
            raise MalformedAnswer(f"invoice {number} has no {name}", body)
    pdf = data.get("pdfUrl")
    return IssuedInvoice(serial=str(fields["serialNo"]), number=number, invoice_type=str(fields["invoiceType"])[:32],
                         issued_at=issued_at, buyer_name=str(fields["buyerName"]),
                         user_number=str(fields["userNumber"]),
                         total=total, total_tax=tax, pdf_url=pdf if isinstance(pdf, str) else None,
                         red=data.get("invoiceKind") == "red")


class RestProvider:
    def __init__(self, settings: TaxSettings, *, clock_ms: Callable[[], int] | None = None) -> None:
        assert settings.app_key is not None
        assert settings.app_secret is not None  # the settings model requires both for "rest"
        self.settings = settings
        self.codes = settings.codes
        self.app_key = settings.app_key
        self.secret = settings.app_secret.get_secret_value()
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.http = TaxHttp(timeout_s=settings.timeout_s)

    async def call(self, method: str, biz: Mapping[str, Any], *, not_found_ok: bool = False) -> IssuedInvoice | None:
        request = signed_request(method, orjson.dumps(dict(biz)).decode(), app_key=self.app_key,
                                 secret=self.secret, now_ms=self.clock_ms())
        url = self.settings.endpoint
        answer = await self.http.post(url, orjson.dumps(request), {"Content-Type": "application/json"})
        if answer.status == 429 or answer.status >= 500:
            raise TransientError(f"{url} {method} answered {answer.status}: {answer.body[:200]!r}")
        try:
            doc = orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            if answer.status >= 400:
                raise PermanentError(f"{url} {method} answered {answer.status}: {answer.body[:200]!r}")
            raise MalformedAnswer(f"{url} {method} answered {answer.status} with a body that is not a JSON object",
                                  answer.body)
        code, message = str(doc.get("code", "")), str(doc.get("message", ""))
        if code == self.codes.ok and answer.status < 400:
            return invoice_from(doc.get("data"), answer.body)
        if code in self.codes.busy:
            raise TransientError(f"tax platform busy ({code}): {message[:200]}")
        if code in self.codes.duplicate:
            raise DuplicateSerial(f"tax platform: request serial taken before ({code}): {message[:200]}")
        if not_found_ok and code in self.codes.not_found:
            return None
        raise Refused(code or f"HTTP {answer.status}", message)

    async def issue(self, order: InvoiceOrder) -> IssuedInvoice:
        found = await self.call("invoice.issue", biz_issue(order, self.settings.seller_tax_id))
        assert found is not None
        return found

    async def query(self, serial: str) -> IssuedInvoice | None:
        return await self.call("invoice.query", {"serialNo": serial}, not_found_ok=True)

    async def download(self, number: str) -> IssuedInvoice:
        found = await self.call("invoice.download", {"invoiceNumber": number})
        assert found is not None
        return found

    async def aclose(self) -> None:
        await self.http.aclose()
