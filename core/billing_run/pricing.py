"""The billing run's calculator: :func:`core.billing.bill_period` for one category and one period,
prepared once and then applied to every account in whole numbers.

A run bills a million accounts over the same period with the same tariff book, so everything that
depends only on ``(book, category, start, end)`` — the cut into segments (cycle starts, tariff
changes), their days, thresholds, prices and VAT rates — is worked out once per category. What is
left per account is arithmetic on integers: volumes in 0.001 m³, money in 0.01 yuan, prices and
rates as exact fractions, and the same half-up rounding as :mod:`core.billing.money`
(``floor(x + 1/2)`` for ``x ≥ 0``, computed as ``(2·a + b) // (2·b)`` for ``x = a/b``):

* the volume is shared between segments by days: running bounds ``round(V·Dᵢ/D)``, as
  :func:`core.billing.allocation.allocate`;
* each segment's share splits at its thresholds from the cycle's cumulative, as
  :func:`core.billing.tiers.split_at_thresholds`;
* each line's amount is ``round(volume × price)`` to 0.01 yuan; the VAT of each rate's gross total
  is ``round(gross × rate / (1 + rate))``, as :func:`core.billing.vat.vat_split`.

The results are equal to ``bill_period``'s (``tests/unit/test_billing_pricing.py`` checks this on
random and edge cases, and the run's tests keep the worked examples); :meth:`PricedBill.as_bill`
builds the validated :class:`~core.billing.Bill` for such comparisons. Households (uplift) are not
handled here: the run prices the rare accounts whose approval covers a day of the period with
``bill_period`` itself (:func:`core.billing_run.batch.price_batch`); interval data is not part of a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import NamedTuple

from core.billing import Bill, BillLine, FlatTariff, ResidentialTariff, TariffBook, TariffCategory, VatLine
from core.billing.segments import plan_segments


def _milli(value: Decimal, name: str) -> int:
    """``value`` m³ as a whole number of 0.001 m³; ``ValueError`` like ``check_volume`` otherwise."""
    if not value.is_finite():
        raise ValueError(f"{name} must be a finite number of m³, got {value}")
    numerator, denominator = value.as_integer_ratio()
    scaled, remainder = divmod(numerator * 1000, denominator)
    if remainder:
        raise ValueError(f"{name} has more than 3 decimal places ({value} m³); round it before billing")
    if scaled < 0:
        raise ValueError(f"{name} must not be negative, got {value} m³")
    return scaled


def _round_ratio(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` (both ≥ 0, denominator > 0) rounded half-up to a whole number."""
    return (2 * numerator + denominator) // (2 * denominator)


def _volume(milli: int) -> Decimal:
    return Decimal(milli).scaleb(-3)


def _money(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


@dataclass(frozen=True, slots=True)
class _Segment:
    start: date
    end: date
    days: int
    tariff: ResidentialTariff | FlatTariff
    cycle_start: date | None
    thresholds: tuple[int, ...]
    """In 0.001 m³; empty for a flat tariff."""
    prices: tuple[Decimal, ...]
    """By tier (one for a flat tariff)."""
    price_ratios: tuple[tuple[int, int], ...]
    vat_rate: Decimal


class PricedLine(NamedTuple):
    """One bill line (as :class:`~core.billing.BillLine`, volume and amount also as integers)."""

    tier: int
    tariff_version: str
    effective_from: date
    cycle_start: date | None
    start: date
    end: date
    volume_milli: int
    unit_price: Decimal
    amount_cents: int
    vat_rate: Decimal

    @property
    def volume_m3(self) -> Decimal:
        return _volume(self.volume_milli)

    @property
    def amount(self) -> Decimal:
        return _money(self.amount_cents)


class PricedBill(NamedTuple):
    """What :func:`~core.billing.bill_period` returns, in a lighter form (tuples build fast)."""

    category: TariffCategory
    start: date
    end: date
    volume_milli: int
    cumulative_before_milli: int
    lines: tuple[PricedLine, ...]
    vat: tuple[tuple[Decimal, int, int], ...]
    """Per rate, lowest first: (rate, gross cents, tax cents)."""
    total_cents: int
    tax_cents: int
    cumulative_after_milli: int | None

    @property
    def volume_m3(self) -> Decimal:
        return _volume(self.volume_milli)

    @property
    def cumulative_before(self) -> Decimal:
        return _volume(self.cumulative_before_milli)

    @property
    def cumulative_after(self) -> Decimal | None:
        return None if self.cumulative_after_milli is None else _volume(self.cumulative_after_milli)

    @property
    def total(self) -> Decimal:
        return _money(self.total_cents)

    @property
    def tax_total(self) -> Decimal:
        return _money(self.tax_cents)

    @property
    def net_total(self) -> Decimal:
        return _money(self.total_cents - self.tax_cents)

    def as_bill(self) -> Bill:
        """The same bill as a validated :class:`~core.billing.Bill` (for comparisons; slower)."""
        return Bill(
            category=self.category,
            start=self.start,
            end=self.end,
            volume_m3=self.volume_m3,
            cumulative_before=self.cumulative_before,
            lines=tuple(
                BillLine(category=self.category, tariff_version=line.tariff_version,
                         effective_from=line.effective_from, cycle_start=line.cycle_start, start=line.start,
                         end=line.end, tier=line.tier, volume_m3=line.volume_m3, unit_price=line.unit_price,
                         amount=line.amount, vat_rate=line.vat_rate)
                for line in self.lines
            ),
            vat=tuple(VatLine(rate=rate, gross=_money(gross), net=_money(gross - tax), tax=_money(tax))
                      for rate, gross, tax in self.vat),
            total=self.total,
            net_total=self.net_total,
            tax_total=self.tax_total,
            cumulative_after=self.cumulative_after,
        )


class PeriodPricer:
    """Bills any volume of one category over ``[start, end)``; build once per run and category.

    Raises :class:`~core.billing.TariffNotFound` at construction when no tariff covers a day of the
    period, like ``bill_period`` does for every account.
    """

    __slots__ = ("_cumulative_on_end", "_first_cycle", "_rate_ratios", "_segments", "_total_days", "category", "end",
                 "start")

    def __init__(self, book: TariffBook, category: TariffCategory, start: date, end: date) -> None:
        if end <= start:
            raise ValueError(f"empty period {start.isoformat()}..{end.isoformat()}: end must be after start")
        self.category = category
        self.start = start
        self.end = end
        segments = []
        for s in plan_segments(book, category, start, end, None):
            tariff = s.tariff
            prices = (tariff.price,) if isinstance(tariff, FlatTariff) else tariff.prices
            segments.append(_Segment(
                start=s.start, end=s.end, days=(s.end - s.start).days, tariff=tariff, cycle_start=s.cycle_start,
                thresholds=tuple(_milli(t, "threshold") for t in s.thresholds), prices=prices,
                price_ratios=tuple(p.as_integer_ratio() for p in prices), vat_rate=tariff.vat_rate,
            ))
        self._segments = tuple(segments)
        self._rate_ratios = {s.vat_rate: s.vat_rate.as_integer_ratio() for s in segments}
        self._total_days = sum(s.days for s in segments)
        self._first_cycle = segments[0].cycle_start
        last = segments[-1]
        # cumulative_after: None for a flat tariff, 0 when ``end`` starts a new cycle, else the cycle's total.
        if not isinstance(last.tariff, ResidentialTariff):
            self._cumulative_on_end: str = "none"
        elif last.tariff.cycle_start.cycle_of(end) != last.cycle_start:
            self._cumulative_on_end = "zero"
        else:
            self._cumulative_on_end = "cycle"

    def bill(self, volume: Decimal, cumulative_before: Decimal) -> PricedBill:
        """``bill_period(book, category, start, end, volume, cumulative_before=…)``, equal in every field."""
        if not isinstance(volume, Decimal):
            if isinstance(volume, bool) or not isinstance(volume, int):
                raise TypeError(f"volume must be a Decimal (or int) in m³, not {type(volume).__name__}")
            volume = Decimal(volume)
        total_volume = _milli(volume, "volume")
        before = _milli(Decimal(cumulative_before), "cumulative_before")
        if self._first_cycle == self.start and before != 0:
            raise ValueError(
                f"cumulative_before is {cumulative_before} m³ but the period starts the cycle on "
                f"{self.start.isoformat()}, where the cumulative resets to 0"
            )
        cumulative: dict[date | None, int] = {self._first_cycle: before}
        lines: list[PricedLine] = []
        running_days = 0
        bound = 0
        for segment in self._segments:
            running_days += segment.days
            upper = _round_ratio(total_volume * running_days, self._total_days)
            share, bound = upper - bound, upper
            used = cumulative.get(segment.cycle_start, 0)
            self._price(segment, used, share, lines)
            cumulative[segment.cycle_start] = used + share
        total = 0
        gross_by_rate: dict[Decimal, int] = {}
        for line in lines:
            total += line.amount_cents
            gross_by_rate[line.vat_rate] = gross_by_rate.get(line.vat_rate, 0) + line.amount_cents
        vat = []
        tax_total = 0
        for rate, gross in sorted(gross_by_rate.items()) if len(gross_by_rate) > 1 else gross_by_rate.items():
            numerator, denominator = self._rate_ratios[rate]
            tax = _round_ratio(gross * numerator, denominator + numerator)
            vat.append((rate, gross, tax))
            tax_total += tax
        if self._cumulative_on_end == "none":
            after: int | None = None
        elif self._cumulative_on_end == "zero":
            after = 0
        else:
            after = cumulative[self._segments[-1].cycle_start]
        return PricedBill(self.category, self.start, self.end, total_volume, before, tuple(lines), tuple(vat), total,
                          tax_total, after)

    @staticmethod
    def _price(segment: _Segment, used: int, volume: int, out: list[PricedLine]) -> None:
        tiers: tuple[tuple[int, int], ...]
        if not segment.thresholds:  # a flat tariff: everything in tier 1
            tiers = ((1, volume),) if volume > 0 else ()
        else:
            low, high = used, used + volume
            parts: list[tuple[int, int]] = []
            tier_low = 0
            for tier, tier_high in enumerate((*segment.thresholds, None), start=1):
                top = high if tier_high is None else min(high, tier_high)
                share = top - max(low, tier_low)
                if share > 0:
                    parts.append((tier, share))
                if tier_high is not None:
                    tier_low = tier_high
            tiers = tuple(parts)
        tariff = segment.tariff
        for tier, tier_volume in tiers:
            numerator, denominator = segment.price_ratios[tier - 1]
            # volume/1000 × price, in 0.01 yuan: volume × numerator × 100 / (1000 × denominator)
            cents = _round_ratio(tier_volume * numerator, 10 * denominator)
            out.append(PricedLine(
                tier=tier, tariff_version=tariff.version, effective_from=tariff.effective_from,
                cycle_start=segment.cycle_start, start=segment.start, end=segment.end, volume_milli=tier_volume,
                unit_price=segment.prices[tier - 1], amount_cents=cents, vat_rate=segment.vat_rate,
            ))
