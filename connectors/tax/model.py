"""What the tax connector's providers share: the order it asks for, the invoice it gets back, the
refusals a provider can answer, and the ``TaxProvider`` role both wire styles (SOAP, REST) play.

Errors a provider raises (besides the hub's ``TransientError`` / ``ConnectorTimeout`` for transport
failures and 5xx)::

    PermanentError
    └── Refused               the platform refused the request for good: ``code`` is its return code
    TransientError
    ├── MalformedAnswer       the answer is not a document we can read (broken XML or JSON, entities,
    │                         a DTD): whether the invoice was issued is unknown, so it is retried,
    │                         and the retry asks by serial first
    └── DuplicateSerial       the platform already took this request serial: fetch, never issue again
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from hub.errors import PermanentError, TransientError

INVOICE_NUMBER = re.compile(r"[0-9]{20}", re.ASCII)
LINE_FIELDS = ("name", "tax_code", "unit", "quantity", "unit_price", "amount", "tax_rate", "tax")


class Refused(PermanentError):
    """A business refusal: the platform's ``code`` and ``message`` go into ``invoice.failed``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"tax platform refused ({code}): {message[:300]}")
        self.code = code
        self.message = message[:300]


class MalformedAnswer(TransientError):
    """An answer we cannot read. ``body`` is what came (for the audit record's hash)."""

    def __init__(self, message: str, body: bytes) -> None:
        super().__init__(message)
        self.body = body


class DuplicateSerial(TransientError):
    """The platform says this request serial was used before: the invoice exists, fetch it."""


@dataclass(frozen=True, slots=True)
class Line:
    name: str
    tax_code: str
    unit: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal
    """Net (金额, VAT excluded)."""
    tax_rate: Decimal
    tax: Decimal


@dataclass(frozen=True, slots=True)
class InvoiceOrder:
    """One ``invoice.requested``, as the providers need it."""

    serial: str
    red: bool
    user_number: str
    buyer_name: str
    buyer_tax_id: str | None
    original_number: str | None
    lines: Sequence[Line]
    total: Decimal
    """价税合计 (gross): Σ amount + tax; negative on a red invoice."""
    total_tax: Decimal

    @property
    def net_total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal("0.00"))


@dataclass(frozen=True, slots=True)
class IssuedInvoice:
    """An invoice the platform issued (answered by issue, query-by-serial or download)."""

    serial: str
    number: str
    invoice_type: str
    issued_at: datetime
    buyer_name: str
    user_number: str
    total: Decimal
    total_tax: Decimal
    pdf_url: str | None = None
    red: bool = False


class TaxProvider(Protocol):
    """A tax service provider's wire protocol. Every method raises ``Refused`` for a business refusal,
    ``TransientError`` (or ``ConnectorTimeout``) when the platform cannot be reached or answers 5xx,
    and ``MalformedAnswer`` for an answer that cannot be read."""

    async def issue(self, order: InvoiceOrder) -> IssuedInvoice:
        """Issue a blue or red invoice; ``DuplicateSerial`` when the serial was taken before."""

    async def query(self, serial: str) -> IssuedInvoice | None:
        """The invoice issued under ``serial``, or ``None`` when there is none (yet)."""

    async def download(self, number: str) -> IssuedInvoice:
        """An issued invoice by its 20-digit number."""

    async def aclose(self) -> None:
        """Release connections; must not raise."""


def order_from(data: Mapping[str, Any]) -> InvoiceOrder:
    """The order for an ``invoice.requested`` message's data (already validated by the catalogue).
    ``PermanentError`` names what is missing: such a message cannot become an invoice however often
    it is retried."""
    for name in ("request_serial", "account_id", "user_name", "lines", "total", "total_tax"):
        if data.get(name) in (None, "", []):
            raise PermanentError(f"invoice.requested has no {name!r}: the tax platform cannot issue it")
    raw_lines = data["lines"]
    if not isinstance(raw_lines, list) or not all(isinstance(line, Mapping) for line in raw_lines):
        raise PermanentError("invoice.requested 'lines' must be a list of line objects")
    lines = []
    for n, raw in enumerate(raw_lines):
        missing = [f for f in LINE_FIELDS if f not in raw]
        if missing:
            raise PermanentError(f"invoice.requested lines[{n}] has no {missing[0]!r}")
        lines.append(Line(name=str(raw["name"]), tax_code=str(raw["tax_code"]), unit=str(raw["unit"] or ""),
                          quantity=decimal(raw["quantity"], f"lines[{n}].quantity"),
                          unit_price=decimal(raw["unit_price"], f"lines[{n}].unit_price"),
                          amount=decimal(raw["amount"], f"lines[{n}].amount"),
                          tax_rate=decimal(raw["tax_rate"], f"lines[{n}].tax_rate"),
                          tax=decimal(raw["tax"], f"lines[{n}].tax")))
    red = str(data.get("kind") or "blue") == "red"
    original = data.get("original_invoice_number")
    if red and (not isinstance(original, str) or not INVOICE_NUMBER.fullmatch(original)):
        raise PermanentError("a red invoice.requested needs original_invoice_number (20 digits)")
    return InvoiceOrder(
        serial=str(data["request_serial"]), red=red, user_number=str(data["account_id"]),
        buyer_name=str(data["user_name"]), buyer_tax_id=data.get("buyer_tax_id") or None,
        original_number=original if red else None, lines=lines,
        total=decimal(data["total"], "total"), total_tax=decimal(data["total_tax"], "total_tax"))


def decimal(value: Any, where: str) -> Decimal:
    """A finite decimal from a string or number, or ``PermanentError`` naming ``where``."""
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise PermanentError(f"{where} is not a number: {str(value)[:20]!r}") from None
    if not number.is_finite():
        raise PermanentError(f"{where} must be a finite number")
    return number


def issued_data(invoice: IssuedInvoice, order: InvoiceOrder) -> dict[str, Any]:
    """``invoice.issued`` data (for ``core:record_invoice_issued``) from what the platform issued for
    ``order``. An invoice for another serial, account or totals is a ``PermanentError``: the invoice
    exists at the tax authority and an operator must look."""
    if invoice.serial != order.serial:
        raise PermanentError(f"tax platform answered serial {invoice.serial[:64]!r} for {order.serial!r}")
    if invoice.user_number != order.user_number:
        raise PermanentError(f"tax platform issued {invoice.number} for user {invoice.user_number[:40]!r}, "
                             f"{order.user_number!r} was asked")
    if (invoice.total, invoice.total_tax) != (order.total, order.total_tax):
        raise PermanentError(f"tax platform issued invoice {invoice.number} for {invoice.total} "
                             f"(tax {invoice.total_tax}); {order.total} (tax {order.total_tax}) was asked")
    return {
        "request_serial": order.serial, "account_id": invoice.user_number, "user_name": invoice.buyer_name,
        "invoice_type": invoice.invoice_type, "invoice_number": invoice.number,
        "issued_at": invoice.issued_at.isoformat(), "total": str(invoice.total),
        "total_tax": str(invoice.total_tax), "pdf_url": invoice.pdf_url,
    }
