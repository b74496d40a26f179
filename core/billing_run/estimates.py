"""Bills on good readings only: which readings a billing run may bill, and the estimate it bills when
the period's latest reading is held (VEE, domain.md).

A reading whose rules hold billing is stored with the quality flag ``held`` (``core.readings``:
negative, conflict, clock, capacity, spike...). The run never takes a held reading as a register.
When the latest reading of the period is held:

* ``held`` alone ("exception; hold billing": negative, clock, capacity): no bill; the account is
  reported as ``reading_held`` until an operator resolves the exception (accepts or corrects the
  reading) and a later run bills it;
* ``held`` with ``estimate_due`` ("exception, then estimate": a spike): an estimated bill — the
  volume from :func:`core.readings.estimate_consumption` (the same period last month or last year
  from the account's bills, else the average daily use of its good readings over the last year),
  ``quality = 'estimated'`` on the bill and ``estimated`` on ``bill.issued``, and an estimated
  reading (source ``estimate``) at the end boundary so that the next period opens where this one
  closed. Without history to estimate from, the account is reported as ``no_estimate``.

The inputs of the estimates are read only for the accounts of a batch that need one: two set-based
queries, none per account.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from core.catalogue.messages import ReadingSource
from core.db.tables import reading
from core.db.tables_billing import bill
from core.readings import PeriodUse, QualityFlag, shift_months

HELD = QualityFlag.HELD.value
ESTIMATE_DUE = QualityFlag.ESTIMATE_DUE.value
HELD_PATTERN = f"%{HELD}%"
AVERAGE_SPAN = timedelta(days=365)
"""How far back the average daily use of good readings looks."""
AVERAGE_MIN_SPAN = timedelta(days=7)
"""Good readings closer together than this give no average."""


def billable() -> tuple[Any, ...]:
    """The predicate of readings a bill may use: not held."""
    return (reading.c.quality.not_like(HELD_PATTERN),)


def flags(quality: str | None) -> frozenset[str]:
    return frozenset((quality or "").split(","))


@dataclass(frozen=True, slots=True)
class EstimateInputs:
    """What an account's estimate is made from."""

    history: tuple[PeriodUse, ...] = ()
    avg_daily_use_m3: Decimal | None = None


async def estimate_inputs(
    conn: AsyncConnection, accounts: Sequence[tuple[str, str]], *, period_start_at: datetime, closing_at: datetime,
    boundary: Any, tz: tzinfo,
) -> dict[str, EstimateInputs]:
    """For ``(account_id, meter_id)`` pairs: their issued bills of the 13 months before the period (as
    local-time ``PeriodUse``) and their meter's average daily use from the good actual readings of
    the last year. ``boundary(day)`` is the run's ``period_boundary``."""
    if not accounts:
        return {}
    account_ids = sorted({a for a, _ in accounts})
    since = shift_months(period_start_at.astimezone(tz), -13).date()
    history: dict[str, list[PeriodUse]] = {}
    rows = await conn.execute(
        select(bill.c.account_id, bill.c.period_start, bill.c.period_end, bill.c.volume_m3)
        .where(bill.c.account_id.in_(account_ids), bill.c.status == "issued", bill.c.period_end > since,
               bill.c.period_end <= period_start_at.astimezone(tz).date())
        .order_by(bill.c.account_id, bill.c.period_start))
    for account_id, start, end, volume in rows:
        history.setdefault(account_id, []).append(PeriodUse(
            start=boundary(start).astimezone(tz), end=boundary(end).astimezone(tz), consumption_m3=volume))
    averages = await average_daily_use(conn, sorted({m for _, m in accounts}), closing_at)
    return {
        account_id: EstimateInputs(tuple(history.get(account_id, ())), averages.get(meter_id))
        for account_id, meter_id in accounts
    }


async def average_daily_use(conn: AsyncConnection, meter_ids: list[str], until: datetime) -> dict[str, Decimal]:
    """Per meter: (last − first good actual register) / days between them, over the year to ``until``."""
    good = (reading.c.source != ReadingSource.ESTIMATE.value, reading.c.quality.not_like("%suspect%"), *billable())
    span = (select(reading.c.meter_id, func.min(reading.c.read_at).label("lo"), func.max(reading.c.read_at).label("hi"))
            .where(reading.c.meter_id.in_(meter_ids), reading.c.read_at > until - AVERAGE_SPAN,
                   reading.c.read_at <= until, *good)
            .group_by(reading.c.meter_id).subquery("span"))
    first, last = reading.alias("first"), reading.alias("last")
    rows = await conn.execute(
        select(span.c.meter_id, span.c.lo, span.c.hi, first.c.volume_m3, last.c.volume_m3)
        .join(first, and_(first.c.meter_id == span.c.meter_id, first.c.read_at == span.c.lo))
        .join(last, and_(last.c.meter_id == span.c.meter_id, last.c.read_at == span.c.hi)))
    out: dict[str, Decimal] = {}
    for meter_id, lo, hi, v_lo, v_hi in rows:
        days = Decimal((hi - lo).total_seconds()) / 86400
        if hi - lo >= AVERAGE_MIN_SPAN and v_hi >= v_lo:
            out[meter_id] = (v_hi - v_lo) / days
    return out
