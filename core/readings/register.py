"""Register arithmetic: baseline choice, consumption and rollover, exact in ``Decimal``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from core.readings.model import PreviousReading

SECONDS_PER_HOUR = 3600
SECONDS_PER_DAY = 86400


def seconds(delta: timedelta) -> Decimal:
    """A duration in seconds, exactly."""
    return Decimal(delta.days * SECONDS_PER_DAY + delta.seconds) + Decimal(delta.microseconds).scaleb(-6)


def fmt(value: Decimal, places: int = 3) -> str:
    """A number for a message, with fixed decimals."""
    return f"{value:.{places}f}"


def hours_text(delta: timedelta) -> str:
    return fmt(seconds(delta) / SECONDS_PER_HOUR, 2)


def days_text(delta: timedelta) -> str:
    return fmt(seconds(delta) / SECONDS_PER_DAY, 2)


def baseline(previous: Iterable[PreviousReading], before: datetime) -> PreviousReading | None:
    """The latest actual (not estimated) reading strictly before ``before``."""
    candidates = [p for p in previous if not p.is_estimate and p.read_at < before]
    return max(candidates, key=lambda p: p.read_at, default=None)


def unchanged_since(previous: Iterable[PreviousReading], base: PreviousReading) -> datetime:
    """The earliest time of the run of actual readings, ending at ``base``, that all show its value."""
    actual = sorted((p for p in previous if not p.is_estimate and p.read_at <= base.read_at),
                    key=lambda p: p.read_at, reverse=True)
    since = base.read_at
    for p in actual:
        if p.volume_m3 != base.volume_m3:
            break
        since = p.read_at
    return since


@dataclass(frozen=True, slots=True)
class Consumption:
    """Use between two register values. ``rolled_over`` when it was corrected for a wrap-around."""

    raw_m3: Decimal
    value_m3: Decimal
    rolled_over: bool
    register_span: Decimal


def register_span(digits: int) -> Decimal:
    """10^digits: the value after which the register wraps to zero."""
    return Decimal(1).scaleb(digits)


def is_rollover(previous_m3: Decimal, current_m3: Decimal, digits: int, fraction: Decimal) -> bool:
    """The table's test: previous − current > fraction × 10^digits."""
    return previous_m3 - current_m3 > fraction * register_span(digits)


def consumption(
    previous_m3: Decimal, current_m3: Decimal, *, digits: int, fraction: Decimal, correct_rollover: bool
) -> Consumption:
    """Consumption from ``previous_m3`` to ``current_m3``; a rollover gives current + 10^digits − previous.

    A corrected value that would still be negative (a previous value beyond the register) is left raw.
    """
    raw = current_m3 - previous_m3
    span = register_span(digits)
    if correct_rollover and is_rollover(previous_m3, current_m3, digits, fraction):
        corrected = current_m3 + span - previous_m3
        if corrected >= 0:
            return Consumption(raw, corrected, True, span)
    return Consumption(raw, raw, False, span)
