"""Estimates: consumption for a period from history, and the check that an estimate was too high.

An estimate comes from the same period last month, or last year, prorated by days to this period's
length, or else from the average daily use × days. The order is a setting. "The same period last
month" is the window shifted back one calendar month (the 31st becomes the last day of a shorter
month); it counts only when the history covers it completely. History periods must not overlap.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from core.readings.model import Finding, PreviousReading
from core.readings.register import SECONDS_PER_DAY, days_text, fmt, seconds
from core.readings.settings import DEFAULT_SETTINGS, ValidationSettings
from core.readings.vocabulary import Action, EstimationMethod, RuleId, Severity

_MONTHS_BACK = {EstimationMethod.LAST_MONTH: 1, EstimationMethod.LAST_YEAR: 12}


class PeriodUse(BaseModel):
    """Known consumption over ``[start, end)``: a billed period, a day, any interval."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: AwareDatetime
    end: AwareDatetime
    consumption_m3: Decimal = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> PeriodUse:
        if self.end <= self.start:
            raise ValueError("a period ends after it starts")
        return self


class Estimate(BaseModel):
    """An estimated consumption and how it was made (``basis``, English, with the numbers)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    consumption_m3: Decimal
    method: EstimationMethod
    basis: str


def shift_months(moment: datetime, months: int) -> datetime:
    """``moment`` moved by whole calendar months, the day clamped to the target month's length."""
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def use_in_window(history: Iterable[PeriodUse], start: datetime, end: datetime) -> Decimal | None:
    """Consumption within ``[start, end)``, each period prorated by its overlap; ``None`` unless the
    history covers the whole window."""
    covered = Decimal(0)
    total = Decimal(0)
    for period in history:
        lo, hi = max(period.start, start), min(period.end, end)
        if hi <= lo:
            continue
        overlap = seconds(hi - lo)
        covered += overlap
        total += period.consumption_m3 * overlap / seconds(period.end - period.start)
    return total if covered == seconds(end - start) else None


def estimate_consumption(
    start: datetime,
    end: datetime,
    *,
    history: Sequence[PeriodUse] = (),
    avg_daily_use_m3: Decimal | None = None,
    settings: ValidationSettings = DEFAULT_SETTINGS,
) -> Estimate | None:
    """Estimate consumption over ``[start, end)``; ``None`` when no method has what it needs."""
    if end <= start:
        raise ValueError("the period must end after it starts")
    length = seconds(end - start)
    for method in settings.estimation_order:
        if method is EstimationMethod.AVERAGE_DAILY:
            if avg_daily_use_m3 is None:
                continue
            value = avg_daily_use_m3 * length / SECONDS_PER_DAY
            basis = (f"average daily use {fmt(avg_daily_use_m3)} m³ × {days_text(end - start)} days")
            return Estimate(consumption_m3=_round(value, settings), method=method, basis=basis)
        back = _MONTHS_BACK[method]
        w_start, w_end = shift_months(start, -back), shift_months(end, -back)
        used = use_in_window(history, w_start, w_end)
        if used is None:
            continue
        value = used * length / seconds(w_end - w_start)
        basis = (f"{fmt(used)} m³ used {w_start.date()}–{w_end.date()} ({days_text(w_end - w_start)} days), "
                 f"scaled to {days_text(end - start)} days")
        return Estimate(consumption_m3=_round(value, settings), method=method, basis=basis)
    return None


def _round(value: Decimal, settings: ValidationSettings) -> Decimal:
    return value.quantize(settings.estimate_quantum, rounding=ROUND_HALF_UP)


def estimate_exceeds_actual(
    meter_id: str, actual_m3: Decimal, estimate: PreviousReading
) -> Finding | None:
    """An actual register read below an earlier estimated one: that estimate (and the bill made
    from it) was too high, so reverse it and bill again from the actual read."""
    if actual_m3 >= estimate.volume_m3:
        return None
    over = estimate.volume_m3 - actual_m3
    return Finding(rule=RuleId.ESTIMATE_ABOVE_ACTUAL, severity=Severity.WARNING, action=Action.REVERSE_AND_REBILL,
                   meter_id=meter_id,
                   message=f"actual read {fmt(actual_m3)} m³ is {fmt(over)} m³ below the estimate "
                           f"{fmt(estimate.volume_m3)} m³ of {estimate.read_at.isoformat()}: "
                           "reverse the estimated bill and re-bill")


def latest_estimate_since(
    previous: Iterable[PreviousReading], after: datetime | None, until: datetime
) -> PreviousReading | None:
    """The latest estimated reading in ``(after, until]`` (``after`` ``None``: no lower bound)."""
    candidates = [p for p in previous
                  if p.is_estimate and p.read_at <= until and (after is None or p.read_at > after)]
    return max(candidates, key=lambda p: p.read_at, default=None)
