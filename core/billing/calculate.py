"""Billing one period: cut it, share its volume, split at the tiers, price each line.

Conventions (see :func:`bill_period`):

* periods are half-open ``[start, end)``: ``end`` is the first day *not* billed, so the worked
  example "10 Dec–9 Jan (31 days)" is ``start=12-10, end=01-10``, and consecutive periods chain with
  ``next.start == previous.end``;
* volumes are ``Decimal`` m³ with at most 3 decimals (more is refused, never silently rounded);
* money is ``Decimal`` yuan; every line's amount is rounded half-up to 0.01 on its own, and the total
  is the exact sum of the lines;
* prices include VAT; the VAT split is in :mod:`core.billing.vat`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal, localcontext
from fractions import Fraction

from core.billing.allocation import IntervalVolume, allocate, check_intervals, day_weights, interval_weights
from core.billing.base import BillingModel
from core.billing.household import Household
from core.billing.money import EXACT, ZERO_MONEY, ZERO_VOLUME, check_volume, round_money
from core.billing.segments import Segment, plan_segments
from core.billing.tariffs import FlatTariff, ResidentialTariff, TariffBook, TariffCategory
from core.billing.tiers import split_at_thresholds
from core.billing.vat import VatLine, vat_lines


class BillLine(BillingModel):
    """``volume_m3`` at ``unit_price`` (VAT included) in one tier of one cycle under one tariff version.

    ``start``/``end`` is the part of the period the line comes from. Flat tariffs bill tier 1 and have
    no cycle.
    """

    category: TariffCategory
    tariff_version: str
    effective_from: date
    cycle_start: date | None
    start: date
    end: date
    tier: int
    volume_m3: Decimal
    unit_price: Decimal
    amount: Decimal
    vat_rate: Decimal


class Bill(BillingModel):
    """The lines and totals for ``[start, end)``.

    ``total`` is the sum of the line amounts; ``vat`` splits it by rate (``net_total + tax_total ==
    total``). ``cumulative_after`` is the cycle-to-date volume on ``end``, ready to be the next
    period's ``cumulative_before`` (0 when ``end`` is a cycle start); ``None`` for flat tariffs.
    """

    category: TariffCategory
    start: date
    end: date
    volume_m3: Decimal
    cumulative_before: Decimal
    lines: tuple[BillLine, ...]
    vat: tuple[VatLine, ...]
    total: Decimal
    net_total: Decimal
    tax_total: Decimal
    cumulative_after: Decimal | None


def bill_period(
    book: TariffBook,
    category: TariffCategory,
    start: date,
    end: date,
    volume: Decimal,
    *,
    cumulative_before: Decimal = ZERO_VOLUME,
    household: Household | None = None,
    intervals: Sequence[IntervalVolume] | None = None,
) -> Bill:
    """Bill ``volume`` m³ used over ``[start, end)`` (``end`` exclusive).

    ``cumulative_before`` is the volume already used in the annual cycle that contains ``start``,
    before ``start`` (it must be 0 when ``start`` is itself a cycle start; it is ignored for flat
    tariffs). The period is cut at cycle starts, tariff changes and uplift-approval boundaries; the
    volume is shared between the parts by days, or by ``intervals`` when given (they must tile the
    period; their volumes are weights, so when they sum to ``volume`` each part gets exactly its
    measured volume). Each new cycle starts from 0.

    Raises ``ValueError`` for an empty period, a negative volume, a volume with more than 3 decimals
    or inconsistent interval data, ``TypeError`` for a float volume, and
    :class:`~core.billing.tariffs.TariffNotFound` when no tariff is in force on a day of the period.
    """
    if end <= start:
        raise ValueError(f"empty period {start.isoformat()}..{end.isoformat()}: end must be after start (exclusive)")
    volume = check_volume(volume)
    cumulative_before = check_volume(cumulative_before, "cumulative_before")
    if intervals is not None:
        check_intervals(intervals, start, end)
    with localcontext(EXACT):
        segments = plan_segments(book, category, start, end, household)
        first_cycle = segments[0].cycle_start
        if first_cycle == start and cumulative_before != 0:
            raise ValueError(
                f"cumulative_before is {cumulative_before} m³ but the period starts the cycle on "
                f"{start.isoformat()}, where the cumulative resets to 0"
            )
        bounds = [segment.bounds for segment in segments]
        weights = day_weights(bounds) if intervals is None else interval_weights(bounds, intervals)
        shares = allocate(volume, weights)
        cumulative: dict[date | None, Decimal] = {first_cycle: cumulative_before}
        lines: list[BillLine] = []
        for segment, share in zip(segments, shares, strict=True):
            used = cumulative.get(segment.cycle_start, ZERO_VOLUME)
            lines.extend(_price(segment, used, share))
            cumulative[segment.cycle_start] = used + share
        total = sum((line.amount for line in lines), ZERO_MONEY)
        vat = vat_lines((line.vat_rate, line.amount) for line in lines)
        tax_total = sum((line.tax for line in vat), ZERO_MONEY)
        return Bill(
            category=category,
            start=start,
            end=end,
            volume_m3=volume,
            cumulative_before=cumulative_before,
            lines=tuple(lines),
            vat=vat,
            total=total,
            net_total=total - tax_total,
            tax_total=tax_total,
            cumulative_after=_cumulative_on(end, segments[-1], cumulative),
        )


def _price(segment: Segment, used: Decimal, volume: Decimal) -> list[BillLine]:
    tariff = segment.tariff
    tiers: tuple[tuple[int, Decimal], ...]
    if isinstance(tariff, FlatTariff):
        tiers = ((1, volume),) if volume > 0 else ()
    else:
        tiers = split_at_thresholds(used, volume, segment.thresholds)
    return [
        _line(segment, tier, tier_volume, tariff.price if isinstance(tariff, FlatTariff) else tariff.prices[tier - 1])
        for tier, tier_volume in tiers
    ]


def _line(segment: Segment, tier: int, volume: Decimal, unit_price: Decimal) -> BillLine:
    tariff = segment.tariff
    return BillLine(
        category=tariff.category,
        tariff_version=tariff.version,
        effective_from=tariff.effective_from,
        cycle_start=segment.cycle_start,
        start=segment.start,
        end=segment.end,
        tier=tier,
        volume_m3=volume,
        unit_price=unit_price,
        amount=round_money(Fraction(volume) * Fraction(unit_price)),
        vat_rate=tariff.vat_rate,
    )


def _cumulative_on(end: date, last: Segment, cumulative: dict[date | None, Decimal]) -> Decimal | None:
    if not isinstance(last.tariff, ResidentialTariff):
        return None
    if last.tariff.cycle_start.cycle_of(end) != last.cycle_start:
        return ZERO_VOLUME
    return cumulative[last.cycle_start]
