"""The VAT inside a bill: prices include VAT, so the tax is taken out of the gross, not added.

For each rate the bill carries, ``tax = gross − gross / (1 + rate)`` rounded half-up to 0.01 yuan, on
the rate's gross total (one rounding per rate, like an invoice's tax summary, rather than one per line),
and ``net = gross − tax`` so that ``net + tax`` is exactly the gross.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from fractions import Fraction

from core.billing.base import BillingModel
from core.billing.money import ZERO_MONEY, round_money


class VatLine(BillingModel):
    """The VAT split of everything billed at one rate."""

    rate: Decimal
    gross: Decimal
    net: Decimal
    tax: Decimal


def vat_split(gross: Decimal, rate: Decimal) -> VatLine:
    """Take the VAT out of a VAT-inclusive ``gross``: 168.00 at 9 % is 154.13 net + 13.87 tax."""
    exact_gross = Fraction(gross)
    tax = round_money(exact_gross - exact_gross / (1 + Fraction(rate)))
    return VatLine(rate=rate, gross=gross, net=gross - tax, tax=tax)


def vat_lines(amounts: Iterable[tuple[Decimal, Decimal]]) -> tuple[VatLine, ...]:
    """One :class:`VatLine` per rate (lowest rate first) from ``(rate, amount)`` pairs."""
    gross_by_rate: dict[Decimal, Decimal] = {}
    for rate, amount in amounts:
        gross_by_rate[rate] = gross_by_rate.get(rate, ZERO_MONEY) + amount
    return tuple(vat_split(gross, rate) for rate, gross in sorted(gross_by_rate.items()))
