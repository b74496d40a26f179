"""Accounts with several meters (a kitchen meter and a water-heater meter, a restaurant's two lines):
one bill per account and period, on the meters' volumes summed.

Why summed: the residential tiers are per household (domain.md rule 1-4), and a household is an
account, so the thresholds apply to everything the account used, not to each meter apart; a flat
non-residential price gives the same total either way.

The rules, per meter of the account installed before the period ends (a meter installed later is not
part of the period):

* Its registers are found as a single meter's are (:mod:`core.billing_run.batch`): the last billable
  reading at or before the start boundary, the last billable one after it up to the end boundary. A
  meter installed inside the period (``installed_at`` on or after its first day) has no reading before
  it: it opens at its first billable reading in the period, the installation's, as a close or a
  transfer opens it (:mod:`core.lifecycle.final_use`). A meter still missing a register (one that fell
  silent, or one taken out in an exchange: meters cannot be removed from an account yet) makes the
  whole account skipped with that meter named: a bill on the other meters alone would look complete
  and be short.
* The held-reading rules hold per meter: a meter whose latest reading is held (no estimate due)
  holds the account's bill (``reading_held``); one whose reading asks for an estimate is estimated
  from its own average daily use (the account's earlier bills are sums and say nothing of one
  meter), and without one the account is ``no_estimate``. The bill is then ``estimated`` and an
  estimated reading is stored for that meter at the end boundary.
* The bill's ``meter_id`` is the account's first meter (by id); its ``reading_start_m3`` and
  ``reading_end_m3`` are the sums of the meters' registers (so ``end − start = volume`` holds for
  every bill); each meter's registers and volume are in ``core_bill_meter``, and ``bill.issued``
  lists them in ``meters``. When only one of the meters is part of the period (the other was
  installed later), the bill is a one-meter bill: no ``core_bill_meter`` rows, no ``meters``.
* The reading that causes the bill (``bill.issued`` joins its flow) is the latest closing reading of
  the meters.

Cost: nothing for accounts with one meter. A batch with several-meter accounts reads their meters'
registers in one more query (seven index probes per meter), and the average daily use of the meters
that need an estimate in one more.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import case, null, select
from sqlalchemy.ext.asyncio import AsyncConnection

from core.billing_run.estimates import ESTIMATE_DUE, HELD, EstimateInputs, average_daily_use, billable, flags
from core.billing_run.result import SkippedAccount, SkipReason
from core.db.tables import reading
from core.db.tables_billing import meter
from core.readings import Estimate


@dataclass(frozen=True, slots=True)
class MeterRegisters:
    """One meter's registers for the period, as read by :func:`meter_registers`."""

    meter_id: str
    opening_m3: Decimal | None
    closing_m3: Decimal | None
    closing_at: datetime | None
    closing_message: str | None
    closing_flow: str | None
    latest_quality: str | None
    avg_daily_use_m3: Decimal | None = None
    """Filled only for a meter whose latest reading asks for an estimate."""
    installed_opening_m3: Decimal | None = None
    """For a meter installed inside the period: its first billable reading in it (the opening then)."""


@dataclass(frozen=True, slots=True)
class MeterUse:
    """What one meter contributes to an account's bill."""

    meter_id: str
    opening_m3: Decimal
    closing_m3: Decimal
    estimated: bool


@dataclass(frozen=True, slots=True)
class Combined:
    """The account's summed registers, each meter's use and the reading that causes the bill."""

    opening_m3: Decimal
    closing_m3: Decimal
    meters: tuple[MeterUse, ...]
    closing_message: str | None
    closing_flow: str | None

    @property
    def estimated(self) -> bool:
        return any(m.estimated for m in self.meters)


async def meter_registers(
    conn: AsyncConnection, account_ids: Sequence[str], *, period_start: date, period_end: date, opening_at: datetime,
    closing_at: datetime,
) -> dict[str, list[MeterRegisters]]:
    """Per account of ``account_ids``: its meters installed before ``period_end``, by id, with their
    registers (one query), and the average daily use of those that need an estimate (one more, only
    then)."""
    if not account_ids:
        return {}
    period = (reading.c.read_at > opening_at, reading.c.read_at <= closing_at)

    def probe(column: Any, *window: Any, first: bool = False) -> Any:
        return (select(column).where(reading.c.meter_id == meter.c.id, *window)
                .order_by(reading.c.read_at if first else reading.c.read_at.desc()).limit(1).scalar_subquery())

    installed_inside = case((meter.c.installed_at >= period_start,
                             probe(reading.c.volume_m3, *period, *billable(), first=True)), else_=null())

    rows = (await conn.execute(
        select(meter.c.account_id, meter.c.id,
               probe(reading.c.volume_m3, reading.c.read_at <= opening_at, *billable()),
               probe(reading.c.volume_m3, *period, *billable()),
               probe(reading.c.read_at, *period, *billable()),
               probe(reading.c.message_id, *period, *billable()),
               probe(reading.c.correlation_id, *period, *billable()),
               probe(reading.c.quality, *period),
               installed_inside)
        .where(meter.c.account_id.in_(sorted(set(account_ids))), meter.c.installed_at < period_end)
        .order_by(meter.c.account_id, meter.c.id))).all()
    wanted = [row[1] for row in rows if {HELD, ESTIMATE_DUE} <= flags(row[7])]
    averages = await average_daily_use(conn, wanted, closing_at) if wanted else {}
    out: dict[str, list[MeterRegisters]] = {}
    for account_id, meter_id, opening, closing, closing_read_at, message, flow, quality, installed in rows:
        out.setdefault(account_id, []).append(MeterRegisters(
            meter_id, opening, closing, closing_read_at, message, flow, quality, averages.get(meter_id), installed))
    return out


def combine(account_id: str, registers: Sequence[MeterRegisters], *, opening_at: datetime,
            estimate: Callable[[EstimateInputs], Estimate | None]) -> Combined | SkippedAccount:
    """The account's bill inputs from its meters' registers, or why it cannot be billed (the first meter,
    by id, that stops it). ``estimate(inputs)`` is the run's :meth:`RunPlan.estimate`."""
    if not registers:
        return SkippedAccount(account_id, None, SkipReason.NO_OPENING_READING,
                              "none of its meters was installed before the period ended")
    uses: list[MeterUse] = []
    latest: MeterRegisters | None = None
    for meter_regs in registers:
        meter_id, opening, closing = meter_regs.meter_id, meter_regs.opening_m3, meter_regs.closing_m3
        if opening is None:  # installed inside the period: from its installation reading
            opening = meter_regs.installed_opening_m3
        estimated = False
        quality = flags(meter_regs.latest_quality)
        if HELD in quality:
            if ESTIMATE_DUE not in quality:
                return SkippedAccount(account_id, meter_id, SkipReason.READING_HELD,
                                      f"meter {meter_id}'s latest reading in the period is held: resolve its exception")
            if opening is None:
                return SkippedAccount(account_id, meter_id, SkipReason.NO_OPENING_READING,
                                      f"meter {meter_id}: none at or before {opening_at}")
            made: Estimate | None = estimate(EstimateInputs((), meter_regs.avg_daily_use_m3))
            if made is None:
                return SkippedAccount(account_id, meter_id, SkipReason.NO_ESTIMATE,
                                      f"meter {meter_id}'s reading is held and it has no average daily use")
            closing, estimated = opening + made.consumption_m3, True
        if opening is None:
            return SkippedAccount(account_id, meter_id, SkipReason.NO_OPENING_READING,
                                  f"meter {meter_id}: none at or before {opening_at}")
        if closing is None:
            return SkippedAccount(account_id, meter_id, SkipReason.NO_CLOSING_READING,
                                  f"meter {meter_id}: no reading in the period")
        if closing < opening:
            return SkippedAccount(account_id, meter_id, SkipReason.NEGATIVE_CONSUMPTION,
                                  f"meter {meter_id}: {opening} m³ -> {closing} m³")
        uses.append(MeterUse(meter_id, opening, closing, estimated))
        if not estimated and meter_regs.closing_at is not None and (
                latest is None or latest.closing_at is None or meter_regs.closing_at > latest.closing_at):
            latest = meter_regs
    return Combined(
        opening_m3=sum((u.opening_m3 for u in uses), Decimal("0.000")),
        closing_m3=sum((u.closing_m3 for u in uses), Decimal("0.000")),
        meters=tuple(uses),
        closing_message=latest.closing_message if latest is not None else None,
        closing_flow=latest.closing_flow if latest is not None else None,
    )
