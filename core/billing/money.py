"""Exact rounding and input checks for money (0.01 yuan) and volumes (0.001 m³).

Every rounding in the billing engine goes through :func:`round_half_up`, which works on exact
fractions: the result never depends on the caller's :mod:`decimal` context.
"""

from __future__ import annotations

import math
from decimal import Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow
from fractions import Fraction

MONEY_PLACES = 2
VOLUME_PLACES = 3
ZERO_MONEY = Decimal("0.00")
ZERO_VOLUME = Decimal("0.000")

EXACT = Context(prec=60, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
"""A context for volume and money sums: any operation that would round raises instead."""


def round_half_up(value: Fraction | Decimal | int, places: int) -> Decimal:
    """``value`` rounded to ``places`` decimals, ties away from zero (``ROUND_HALF_UP``), exactly."""
    scaled = Fraction(value) * 10**places
    magnitude = math.floor(abs(scaled) + Fraction(1, 2))
    sign = 1 if scaled < 0 and magnitude else 0
    return Decimal((sign, tuple(int(digit) for digit in str(magnitude)), -places))


def round_money(value: Fraction | Decimal | int) -> Decimal:
    """Half-up to 0.01 yuan."""
    return round_half_up(value, MONEY_PLACES)


def has_at_most(value: Decimal, places: int) -> bool:
    """True when ``value`` is finite and needs no more than ``places`` decimals (``1.2300`` has 2)."""
    return value.is_finite() and (Fraction(value) * 10**places).denominator == 1


def check_volume(value: Decimal | int, name: str = "volume") -> Decimal:
    """A non-negative volume with at most 3 decimals, returned with exactly 3 (``Decimal('12.500')``).

    Floats are refused (binary fractions are not meter volumes); more than 3 significant decimals are
    refused rather than silently rounded, so billed volume is always exactly what was measured.
    """
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError(f"{name} must be a Decimal (or int) in m³, not {type(value).__name__}")
    decimal_value = Decimal(value)
    if not decimal_value.is_finite():
        raise ValueError(f"{name} must be a finite number of m³, got {decimal_value}")
    if decimal_value < 0:
        raise ValueError(f"{name} must not be negative, got {decimal_value} m³")
    if not has_at_most(decimal_value, VOLUME_PLACES):
        raise ValueError(
            f"{name} has more than {VOLUME_PLACES} decimal places ({decimal_value} m³); "
            "volumes are measured to 0.001 m³, round it before billing"
        )
    return round_half_up(decimal_value, VOLUME_PLACES)
