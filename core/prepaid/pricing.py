"""Pricing the gas used between two readings with the tariff in force, exactly.

The same rules as :func:`core.billing.bill_period` and the same building blocks (tariff spans, cycle
starts and price changes from :func:`core.billing.segments.plan_segments`, tier splits at the
cycle's cumulative thresholds, volume shared with :func:`core.billing.allocate`), for an interval
that runs from one reading's time to another's rather than over whole days:

* the interval ``[start, end)`` is cut where a cycle starts or a price changes (both at local
  midnight, China Standard Time); the volume is shared between the parts in proportion to the time
  each part covers (a month-long interval from midnight to midnight shares by days, like a bill);
* residential parts split at the tier thresholds from the cycle's cumulative (``CycleUse``), which
  resets to zero in a new cycle; flat tariffs price every m³ alike;
* a household with an approved uplift (rule 4) gets the raised thresholds on the days its approval
  covers, and the interval is also cut where the approval starts or stops, exactly as a postpaid bill
  (``plan_segments`` with the household: the same code);
* the cost is *exact* (volume × unit price, no rounding): the caller turns costs into whole-fen
  deductions, carrying what is left over so that nothing is lost or gained reading after reading.

No I/O and no pydantic models on this path: it runs for every reading of a prepaid meter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal, localcontext
from fractions import Fraction
from functools import lru_cache

from core.billing import FlatTariff, Household, TariffBook, TariffCategory
from core.billing.allocation import allocate
from core.billing.money import EXACT, ZERO_VOLUME
from core.billing.segments import Segment, plan_segments
from core.billing.tiers import split_at_thresholds

CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class CycleUse:
    """Residential tiers: ``used_m3`` already priced in the annual cycle that starts on ``start``
    (``None`` before anything was priced)."""

    start: date | None
    used_m3: Decimal


NO_CYCLE = CycleUse(None, ZERO_VOLUME)


@dataclass(frozen=True, slots=True)
class PricedLine:
    """``volume_m3`` at ``unit_price`` (VAT included) in one tier of one tariff version."""

    tariff_version: str
    tier: int
    volume_m3: Decimal
    unit_price: Decimal

    @property
    def cost(self) -> Decimal:
        """Exact, not rounded."""
        with localcontext(EXACT):
            return self.volume_m3 * self.unit_price


@dataclass(frozen=True, slots=True)
class PricedUse:
    lines: tuple[PricedLine, ...]
    cost: Decimal
    """The exact sum of the lines' costs."""
    cycle: CycleUse
    """The residential cumulative after this use (unchanged for flat tariffs)."""

    @property
    def unit_price_now(self) -> Decimal | None:
        """The price of the last m³ priced: what the next m³ is likely to cost."""
        return self.lines[-1].unit_price if self.lines else None

    def detail(self, limit: int = 200) -> str:
        """The lines in words, e.g. ``RES-2025 t1 1.200 m³ × 2.40; RES-2025 t2 0.300 m³ × 2.88``."""
        text = "; ".join(f"{ln.tariff_version} t{ln.tier} {ln.volume_m3} m³ × {ln.unit_price}" for ln in self.lines)
        return text if len(text) <= limit else text[: limit - 1] + "…"


class Pricer:
    """Prices intervals of use with one tariff book (the plan of each interval's days is cached)."""

    def __init__(self, book: TariffBook, tz: tzinfo = CHINA_TZ) -> None:
        self.book = book
        self.tz = tz
        self._plan: Callable[[TariffCategory, date, date, Household | None], tuple[Segment, ...]] = lru_cache(
            maxsize=4096)(lambda category, lo, hi, household: plan_segments(book, category, lo, hi, household))

    def price(self, category: TariffCategory, start: datetime, end: datetime, volume: Decimal,
              cycle: CycleUse = NO_CYCLE, household: Household | None = None) -> PricedUse:
        """Price ``volume`` m³ used over ``[start, end)`` (aware times, ``end`` after ``start``), with
        ``household``'s uplift where its approval covers the days (``None``: the plain thresholds).

        Raises :class:`~core.billing.TariffNotFound` when no tariff of ``category`` is in force on a
        day of the interval, ``ValueError`` for an empty interval or a volume that is negative or has
        more than 3 decimals.
        """
        if end <= start:
            raise ValueError(f"empty interval {start.isoformat()}..{end.isoformat()}")
        first = start.astimezone(self.tz).date()
        last = end.astimezone(self.tz).date() + DAY
        segments = self._plan(category, first, last, household)
        if len(segments) == 1:
            shares: tuple[Decimal, ...] = (volume,)
        else:
            weights = [self._overlap(s, start, end) for s in segments]
            shares = allocate(volume, weights)
        cumulative: dict[date | None, Decimal] = {cycle.start: cycle.used_m3}
        lines: list[PricedLine] = []
        after = cycle
        for segment, share in zip(segments, shares, strict=True):
            tariff = segment.tariff
            if isinstance(tariff, FlatTariff):
                if share > 0:
                    lines.append(PricedLine(tariff.version, 1, share, tariff.price))
                continue
            used = cumulative.get(segment.cycle_start, ZERO_VOLUME)
            for tier, part in split_at_thresholds(used, share, segment.thresholds):
                lines.append(PricedLine(tariff.version, tier, part, tariff.prices[tier - 1]))
            cumulative[segment.cycle_start] = used + share
            after = CycleUse(segment.cycle_start, cumulative[segment.cycle_start])
        with localcontext(EXACT):
            cost = sum((line.volume_m3 * line.unit_price for line in lines), Decimal(0))
        return PricedUse(tuple(lines), cost, after)

    def _overlap(self, segment: Segment, start: datetime, end: datetime) -> Fraction:
        """Seconds of ``[start, end)`` inside the segment's days."""
        lo = max(start, datetime.combine(segment.start, time(0), tzinfo=self.tz))
        hi = min(end, datetime.combine(segment.end, time(0), tzinfo=self.tz))
        if hi <= lo:
            return Fraction(0)
        span = hi - lo
        return Fraction(span.days * 86400 + span.seconds) + Fraction(span.microseconds, 1_000_000)
