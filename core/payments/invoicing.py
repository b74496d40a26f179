"""Invoice lines and request serials: pure rules, no database.

Prices and payments include VAT, so each line's tax is taken out of its gross with
:func:`core.billing.vat.vat_split` (``tax = gross − gross / (1 + rate)``, half-up to 0.01, per line),
and the line prints the net amount (金额) and the tax (税额): ``amount + tax`` is exactly the gross,
so a request's ``total`` (价税合计) is exactly what was paid or billed. Unit prices are net, half-up to
six decimals.

* A **payment** invoice has one line of quantity 1 (no volume is known when money arrives) at the
  payment's amount and the configured rate.
* A **bill** invoice has one line per bill line (tier, cycle, tariff version): its volume in m³, its
  amount, its rate.
* A **red** request reverses part or all of a payment invoice: one line of quantity −1 at minus the
  refunded amount, with the blue line's name, tax code and rate.

Serials are derived from rows that are written exactly once (a payment, a bill, a refund), so a
retried message can never ask for a second invoice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from core.billing.money import ZERO_MONEY, round_half_up
from core.billing.vat import vat_split
from core.catalogue.messages import InvoiceLine

UNIT_PRICE_PLACES = 6


@dataclass(frozen=True, slots=True)
class GrossLine:
    """What was charged for one line, VAT included (negative on a red request)."""

    name: str
    tax_code: str
    unit: str
    quantity: Decimal
    gross: Decimal
    tax_rate: Decimal


def invoice_line(line: GrossLine) -> InvoiceLine:
    """The line as the invoice prints it: net amount, tax, net unit price."""
    if line.quantity == 0:
        raise ValueError(f"invoice line {line.name!r} has no quantity")
    split = vat_split(line.gross, line.tax_rate)
    return InvoiceLine(
        name=line.name,
        tax_code=line.tax_code,
        unit=line.unit,
        quantity=line.quantity,
        unit_price=round_half_up(Fraction(split.net) / Fraction(line.quantity), UNIT_PRICE_PLACES),
        amount=split.net,
        tax_rate=line.tax_rate,
        tax=split.tax,
    )


def totals(lines: Sequence[InvoiceLine]) -> tuple[Decimal, Decimal]:
    """``(total, total_tax)``: the gross (Σ amount + tax) and the tax."""
    tax = sum((line.tax for line in lines), ZERO_MONEY)
    return sum((line.amount for line in lines), ZERO_MONEY) + tax, tax


def payment_lines(amount: Decimal, *, name: str, tax_code: str, vat_rate: Decimal) -> list[InvoiceLine]:
    return [invoice_line(GrossLine(name, tax_code, "", Decimal("1.000"), amount, vat_rate))]


def bill_lines(
    lines: Sequence[tuple[Decimal, Decimal, Decimal]], *, name: str, tax_code: str
) -> list[InvoiceLine]:
    """From the bill's ``(volume_m3, amount, vat_rate)`` lines, in line order."""
    return [invoice_line(GrossLine(name, tax_code, "m3", volume, amount, rate)) for volume, amount, rate in lines]


def red_lines(blue: InvoiceLine, refunded: Decimal) -> list[InvoiceLine]:
    """The red line reversing ``refunded`` yuan of a one-line payment invoice."""
    if refunded <= 0:
        raise ValueError("a red line reverses a positive refunded amount")
    return [invoice_line(GrossLine(blue.name, blue.tax_code, blue.unit, -blue.quantity, -refunded, blue.tax_rate))]


def payment_serial(payment_id: str) -> str:
    return f"PAY-{payment_id}"


def bill_serial(bill_id: str) -> str:
    return f"BILL-{bill_id}"


def red_serial(refund_row_id: str) -> str:
    return f"RED-{refund_row_id}"
