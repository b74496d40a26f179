"""Splitting a period's volume between its parts without losing or creating a single litre.

A period cut at a cycle start, a price change or an approval boundary shares its volume between the
parts in proportion to their days, or to interval data (daily or hourly-summed meter volumes) when it
is given. Parts are quantized to 0.001 m³ by rounding the *running* total half-up and taking
differences: the parts always sum exactly to the input, none is negative, and with two parts this is
exactly "round the first, give the remainder to the last".
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from fractions import Fraction
from itertools import pairwise

from pydantic import Field, field_validator, model_validator

from core.billing.base import BillingModel
from core.billing.money import VOLUME_PLACES, check_volume, round_half_up


class IntervalVolume(BillingModel):
    """Volume measured over ``[start, end)`` (end exclusive, at least one day)."""

    start: date
    end: date
    volume_m3: Decimal = Field(ge=0, allow_inf_nan=False)

    @field_validator("volume_m3")
    @classmethod
    def _three_places(cls, value: Decimal) -> Decimal:
        return check_volume(value, "interval volume_m3")

    @model_validator(mode="after")
    def _not_empty(self) -> IntervalVolume:
        if self.end <= self.start:
            raise ValueError(f"interval {self.start.isoformat()}..{self.end.isoformat()} is empty (end is exclusive)")
        return self

    @property
    def days(self) -> int:
        return (self.end - self.start).days


def allocate(volume: Decimal, weights: Sequence[Fraction]) -> tuple[Decimal, ...]:
    """Share ``volume`` (0.001 m³ exact) in proportion to ``weights``; the parts sum exactly to it.

    Part *i* is ``round(V·W_i/W) − round(V·W_{i−1}/W)`` where ``W_i`` is the running total of the
    weights, so every part is ≥ 0 and the last running total is ``V`` itself.
    """
    volume = check_volume(volume)
    if any(weight < 0 for weight in weights):
        raise ValueError("allocation weights must not be negative")
    total = sum(weights, Fraction(0))
    if total == 0:
        if volume == 0:
            return tuple(round_half_up(0, VOLUME_PLACES) for _ in weights)
        raise ValueError(f"cannot share {volume} m³: every part has zero weight (no days or no interval volume)")
    running = Fraction(0)
    bounds = [round_half_up(0, VOLUME_PLACES)]
    for weight in weights:
        running += weight
        bounds.append(round_half_up(Fraction(volume) * running / total, VOLUME_PLACES))
    return tuple(hi - lo for lo, hi in pairwise(bounds))


def day_weights(parts: Sequence[tuple[date, date]]) -> tuple[Fraction, ...]:
    """Each ``[start, end)`` part weighs its number of days."""
    return tuple(Fraction((end - start).days) for start, end in parts)


def check_intervals(intervals: Sequence[IntervalVolume], start: date, end: date) -> None:
    """Interval data must tile ``[start, end)``: in order, no gap, no overlap."""
    if not intervals:
        raise ValueError("interval data is empty; pass None to split by days")
    if intervals[0].start != start or intervals[-1].end != end:
        raise ValueError(
            f"interval data covers {intervals[0].start.isoformat()}..{intervals[-1].end.isoformat()}, "
            f"not the period {start.isoformat()}..{end.isoformat()}"
        )
    for before, after in pairwise(intervals):
        if before.end != after.start:
            raise ValueError(
                f"interval data has a gap or an overlap between {before.end.isoformat()} and {after.start.isoformat()}"
            )


def interval_weights(parts: Sequence[tuple[date, date]], intervals: Sequence[IntervalVolume]) -> tuple[Fraction, ...]:
    """Each part weighs the interval volume inside it; an interval cut by a part boundary counts by days."""
    weights: list[Fraction] = []
    for start, end in parts:
        weight = Fraction(0)
        for interval in intervals:
            overlap = (min(end, interval.end) - max(start, interval.start)).days
            if overlap > 0:
                weight += Fraction(interval.volume_m3) * overlap / interval.days
        weights.append(weight)
    return tuple(weights)
