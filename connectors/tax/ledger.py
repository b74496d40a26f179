"""The simulated tax platform's books, shared by the SOAP and REST simulators: what it checks in a
request, the invoices it issued by serial and by number, and the return codes it answers with.

Codes (the defaults of :class:`~connectors.tax.settings.ReturnCodes`): ``0000`` ok, ``9999`` busy,
``3001`` request serial taken before, ``4004`` no such invoice, ``2001`` invalid request (the message
names the field), ``2002`` unknown original invoice, ``2003`` red total over what is left of the blue
one. A serial is issued once: the same serial again is ``3001`` whatever it carries, as real platforms
answer (流水号重复), and the caller asks for the invoice by serial.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from connectors.tax.model import INVOICE_NUMBER, InvoiceOrder, IssuedInvoice
from connectors.tax.xmldoc import CHINA

RATES = frozenset({Decimal("0.09"), Decimal("0.13"), Decimal("0.06"), Decimal("0.05"), Decimal("0.03"),
                   Decimal("0.01"), Decimal(0)})
CENT = Decimal("0.01")
OK, BUSY, DUPLICATE, NOT_FOUND = "0000", "9999", "3001", "4004"
INVALID, UNKNOWN_ORIGINAL, OVER_REVERSED = "2001", "2002", "2003"


class PlatformAnswer(Exception):
    """Anything but an issued invoice: the platform's ``code`` and ``message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Issued:
    invoice: IssuedInvoice
    order: InvoiceOrder
    type_code: str = "82"


class TaxLedger:
    def __init__(self, base_url: str = "http://127.0.0.1") -> None:
        self.base_url = base_url
        self.by_serial: dict[str, Issued] = {}
        """Issued invoices by request serial, in the order they were issued."""
        self.by_number: dict[str, Issued] = {}
        self.refused: list[str] = []
        self.refuse_next: list[tuple[str, str]] = []
        """Business errors to answer to the next issue requests (fault injection)."""
        self._numbers = itertools.count(1)

    def issue(self, order: InvoiceOrder, *, net_total: Decimal) -> Issued:
        if order.serial in self.by_serial:
            raise PlatformAnswer(DUPLICATE, f"request serial {order.serial} was used before")
        if self.refuse_next:
            code, message = self.refuse_next.pop(0)
            self.refused.append(message)
            raise PlatformAnswer(code, message)
        try:
            self._check(order, net_total)
        except PlatformAnswer as exc:
            self.refused.append(exc.message)
            raise
        now = datetime.now(CHINA).replace(microsecond=0)
        number = f"{now.year % 100:02d}33{next(self._numbers):016d}"
        invoice = IssuedInvoice(serial=order.serial, number=number, invoice_type="digital_ordinary",
                                issued_at=now, buyer_name=order.buyer_name, user_number=order.user_number,
                                total=order.total, total_tax=order.total_tax, red=order.red,
                                pdf_url=f"{self.base_url}/invoices/{number}.pdf")
        issued = Issued(invoice, order)
        self.by_serial[order.serial] = self.by_number[number] = issued
        return issued

    def find_serial(self, serial: str) -> Issued:
        if serial not in self.by_serial:
            raise PlatformAnswer(NOT_FOUND, f"no invoice for request serial {serial[:64]}")
        return self.by_serial[serial]

    def find_number(self, number: str) -> Issued:
        if number not in self.by_number:
            raise PlatformAnswer(NOT_FOUND, f"no invoice {number[:20]}")
        return self.by_number[number]

    def _check(self, order: InvoiceOrder, net_total: Decimal) -> None:
        def invalid(message: str) -> PlatformAnswer:
            return PlatformAnswer(INVALID, message)

        if not 1 <= len(order.serial) <= 64:
            raise invalid("FPQQLSH must be 1-64 characters")
        if not order.buyer_name.strip():
            raise invalid("GMF_MC (buyer name) is required")
        if not order.user_number:
            raise invalid("KHBH (user number) is required")
        if not order.lines:
            raise invalid("at least one line (XMXX/XM) is required")
        for n, line in enumerate(order.lines, start=1):
            if not line.name or not line.tax_code:
                raise invalid(f"line {n}: name and tax code are required")
            if line.quantity == 0:
                raise invalid(f"line {n}: quantity must not be zero")
            if line.tax_rate not in RATES:
                raise invalid(f"line {n}: tax rate {line.tax_rate} is not a VAT rate")
            if abs(line.amount * line.tax_rate - line.tax) > CENT:
                raise invalid(f"line {n}: tax {line.tax} is not {line.tax_rate} of {line.amount}")
        net = sum((line.amount for line in order.lines), Decimal(0))
        tax = sum((line.tax for line in order.lines), Decimal(0))
        if (net, tax, net + tax) != (net_total, order.total_tax, order.total):
            raise invalid(f"the lines add up to {net} + {tax} tax = {net + tax}, but the totals are "
                          f"{net_total} + {order.total_tax} = {order.total}")
        if order.red != (order.total < 0):
            raise invalid("a blue invoice has a positive total, a red one a negative total")
        if order.red:
            self._check_red(order)

    def _check_red(self, order: InvoiceOrder) -> None:
        original = order.original_number or ""
        if not INVOICE_NUMBER.fullmatch(original):
            raise PlatformAnswer(INVALID, "a red invoice needs YFP_HM, the blue invoice's 20-digit number")
        blue = self.by_number.get(original)
        if blue is None or blue.invoice.red:
            raise PlatformAnswer(UNKNOWN_ORIGINAL, f"original invoice {original} was not issued here as blue")
        if blue.invoice.user_number != order.user_number:
            raise PlatformAnswer(INVALID, f"red invoice for another buyer than invoice {original}")
        reversed_ = sum((i.invoice.total for i in self.by_number.values() if i.order.original_number == original),
                        Decimal(0))
        if blue.invoice.total + reversed_ + order.total < 0:
            raise PlatformAnswer(OVER_REVERSED, f"red total {order.total} is more than the "
                                                f"{blue.invoice.total + reversed_} left of invoice {original}")
