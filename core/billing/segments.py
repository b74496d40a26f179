"""Cutting a billing period into parts that each have one tariff, one cycle and one set of thresholds.

A period is cut at every annual cycle start (residential), every tariff version taking effect, and
every day a household's uplift approval starts or stops applying. Periods are half-open
``[start, end)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from itertools import pairwise

from core.billing.household import Household
from core.billing.tariffs import FlatTariff, ResidentialTariff, TariffBook, TariffCategory


@dataclass(frozen=True, slots=True)
class Segment:
    """``[start, end)`` under one tariff version; ``cycle_start`` and ``thresholds`` are residential only."""

    start: date
    end: date
    tariff: ResidentialTariff | FlatTariff
    cycle_start: date | None
    thresholds: tuple[Decimal, ...]

    @property
    def bounds(self) -> tuple[date, date]:
        return (self.start, self.end)


def plan_segments(
    book: TariffBook,
    category: TariffCategory,
    start: date,
    end: date,
    household: Household | None,
) -> tuple[Segment, ...]:
    """The parts of ``[start, end)``, in date order; they tile the period exactly."""
    spans = book.spans(category, start, end)
    cuts: set[date] = {start, end}
    for span in spans:
        cuts.add(span.start)
        if isinstance(span.tariff, ResidentialTariff):
            cuts.update(span.tariff.cycle_start.starts_within(span.start, span.end))
    if category == TariffCategory.RESIDENTIAL and household is not None and household.approval is not None:
        cuts.update(day for day in household.approval.boundaries() if start < day < end)
    segments: list[Segment] = []
    for lo, hi in pairwise(sorted(cuts)):
        tariff = next(span.tariff for span in spans if span.start <= lo < span.end)
        if isinstance(tariff, ResidentialTariff):
            segments.append(
                Segment(lo, hi, tariff, tariff.cycle_start.cycle_of(lo), tariff.thresholds_for(household, lo))
            )
        else:
            segments.append(Segment(lo, hi, tariff, None, ()))
    return tuple(segments)
