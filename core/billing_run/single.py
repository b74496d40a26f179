"""Off-cycle bills: one account's bill for a period that does not follow the monthly grid.

An account closed (销户) or transferred (过户) in the middle of a month is billed up to that moment
(:mod:`core.lifecycle`), and the next monthly run bills it from the end of that bill to the end of the
month. Both go through the run's own pricing and writing (:func:`~core.billing_run.batch.price_batch`,
:func:`~core.billing_run.batch.write_batch`) with a one-account batch, so an off-cycle bill is priced
exactly as the run prices a period: cut at cycle starts and price changes (and the household's uplift
approval, when it covers a day of the period), shared by days, tier cumulative carried from the bill it
follows, one ``bill.issued`` per bill.

The two registers are given by the caller: the opening one is the register the previous bill ended
on (``reading_end_m3``), so consecutive bills chain without losing or doubling a litre even when the
previous bill ended between two readings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from core.accounts.household import approval_overlaps, household_for_period
from core.billing import TariffBook, TariffCategory
from core.billing_run.batch import RunPlan, price_batch, write_batch
from core.billing_run.periods import CHINA_TZ, period_boundary
from core.billing_run.result import BillingRunResult, SkippedAccount, SkipReason
from core.billing_run.several import MeterRegisters, MeterUse
from core.db.tables import reading
from core.db.tables_billing import bill, bill_meter, meter
from core.messages import Cause, Caused


@dataclass(frozen=True, slots=True)
class OffCycleBill:
    """A bill :func:`bill_account` issued."""

    bill_id: str
    meter_id: str
    period_start: date
    period_end: date
    reading_start_m3: Decimal
    reading_end_m3: Decimal
    volume_m3: Decimal
    total: Decimal
    cumulative_after: Decimal | None
    meters: tuple[MeterUse, ...] = ()
    """For an account with several meters: each meter's registers (the bill's are their sums)."""


@dataclass(frozen=True, slots=True)
class PreviousBill:
    """The account's latest issued bill: where the next one starts."""

    bill_id: str
    period_end: date
    reading_end_m3: Decimal
    cumulative_after: Decimal | None
    meter_id: str = ""
    meters: dict[str, Decimal] | None = None
    """For a bill of several meters: the register each ended on (``core_bill_meter``)."""

    def ended_on(self, meter_id: str) -> Decimal | None:
        """The register this bill ended on for ``meter_id``; ``None`` when the bill does not cover it."""
        if self.meters:
            return self.meters.get(meter_id)
        return self.reading_end_m3 if meter_id == self.meter_id else None


async def latest_bill(conn: AsyncConnection, account_id: str) -> PreviousBill | None:
    """The issued bill that ends latest (of several ending the same day, the one that starts latest)."""
    row = (await conn.execute(
        select(bill.c.id, bill.c.period_end, bill.c.reading_end_m3, bill.c.cumulative_after, bill.c.meter_id)
        .where(bill.c.account_id == account_id, bill.c.status == "issued")
        .order_by(bill.c.period_end.desc(), bill.c.period_start.desc()).limit(1))).first()
    if row is None:
        return None
    after = None if row.cumulative_after is None else Decimal(row.cumulative_after)
    meters = {m: Decimal(end) for m, end in await conn.execute(
        select(bill_meter.c.meter_id, bill_meter.c.reading_end_m3).where(bill_meter.c.bill_id == row.id))}
    return PreviousBill(row.id, row.period_end, Decimal(row.reading_end_m3), after, row.meter_id, meters or None)


async def bill_account(
    conn: AsyncConnection,
    book: TariffBook,
    *,
    account_id: str,
    category: TariffCategory,
    meter_id: str,
    period_start: date,
    period_end: date,
    opening_m3: Decimal,
    closing_m3: Decimal,
    chained: Decimal | None,
    now: datetime,
    cause: Cause | None = None,
    result: BillingRunResult | None = None,
    tz: tzinfo = CHINA_TZ,
    meters: Sequence[tuple[str, Decimal, Decimal]] = (),
) -> OffCycleBill | SkippedAccount | None:
    """Bill ``closing_m3 − opening_m3`` over ``[period_start, period_end)`` like the run bills a period.

    ``chained`` is the ``cumulative_after`` of the bill this one follows (``None``: none). ``cause`` (the
    closing reading's message and flow) is what ``bill.issued`` joins. Returns the bill, or why it
    could not be made (a register that went back, no tariff in force), or ``None`` when a bill for exactly
    that period exists already (the run's idempotency key); raises ``ValueError`` for an
    empty period. ``result``, when given, receives the bill as a run's batch would.

    For an account with several meters, ``meters`` gives each one's ``(meter_id, opening, closing)``:
    the bill is made on their sum (:mod:`core.billing_run.several`), and ``meter_id``, ``opening_m3`` and
    ``closing_m3`` are ignored.
    """
    plan = RunPlan(book, period_start, period_end, period_boundary(period_start, tz), period_boundary(period_end, tz),
                   now)
    several: dict[str, list[MeterRegisters]] | None = None
    if len(meters) > 1:
        message, flow = (cause.message_id, cause.correlation_id) if cause else (None, None)
        several = {account_id: [MeterRegisters(m, opening, closing, plan.closing_at, message, flow, None)
                                for m, opening, closing in meters]}
        meter_id = meters[0][0]
        opening_m3 = sum((m[1] for m in meters), Decimal("0.000"))
        closing_m3 = sum((m[2] for m in meters), Decimal("0.000"))
    row: tuple[Any, ...] = (
        account_id, *_account_category(category), meter_id, max(len(meters), 1), opening_m3, closing_m3,
        cause.message_id if cause else None, cause.correlation_id if cause else None,
        None, chained, None, None, None)  # not billed, chained, no held reading (registers given), not covered
    # The household in force for the period (the run's probe reads the same row), when its approval
    # covers a day of it: then the bill has the uplift, as the run's would.
    household = await household_for_period(conn, account_id, period_start, period_end)
    approved = household is not None and approval_overlaps(household, period_start, period_end)
    priced = price_batch(plan, [row], households={account_id: household} if household and approved else None,
                         several=several)
    if priced.skipped:
        return priced.skipped[0]
    out = result if result is not None else BillingRunResult(period_start=period_start, period_end=period_end)
    before = len(out.bill_ids)
    (bill_row,) = priced.bills
    await write_batch(conn, priced, out)
    if len(out.bill_ids) == before:
        return None
    return OffCycleBill(bill_id=bill_row[0], meter_id=meter_id, period_start=period_start, period_end=period_end,
                        reading_start_m3=bill_row[5], reading_end_m3=bill_row[6], volume_m3=bill_row[7],
                        total=bill_row[8], cumulative_after=bill_row[12],
                        meters=tuple(MeterUse(r[1], r[2], r[3], r[5]) for r in priced.bill_meters))


def _account_category(category: TariffCategory) -> tuple[str, str | None]:
    """``core_account``'s (category, subcategory) for a tariff category (what ``price_batch`` reads)."""
    if category is TariffCategory.RESIDENTIAL:
        return "residential", None
    return "non_residential", category.value


async def opening_register(conn: AsyncConnection, meter_id: str, boundary: datetime, until: datetime, *,
                           through: bool = False) -> Decimal | None:
    """A meter's register at ``boundary``: its last reading at or before it, else (a meter installed
    since) its first reading after it and before ``until`` (``through``: or at it)."""
    before = await conn.scalar(select(reading.c.volume_m3).where(reading.c.meter_id == meter_id,
                                                                 reading.c.read_at <= boundary)
                               .order_by(reading.c.read_at.desc()).limit(1))
    if before is None:
        end = reading.c.read_at <= until if through else reading.c.read_at < until
        before = await conn.scalar(select(reading.c.volume_m3).where(
            reading.c.meter_id == meter_id, reading.c.read_at > boundary, end)
            .order_by(reading.c.read_at).limit(1))
    return None if before is None else Decimal(before)


async def bill_rest(conn: AsyncConnection, plan: RunPlan, account_id: str, category: TariffCategory, start: date,
                    result: BillingRunResult, tz: tzinfo = CHINA_TZ) -> None:
    """In a run: bill ``[start, plan.period_end)`` for an account an off-cycle bill covers up to ``start``.

    Per meter of the account (installed before the period ends): the opening register is the one that
    bill ended on for it (a meter it did not cover: the meter's last reading at ``start``'s boundary, else
    its first reading after it, the installation's);
    the closing one is the last reading after ``start``'s boundary up to the run's end boundary (none:
    skipped, ``no_closing_reading``). Several meters are billed on their sum
    (:mod:`core.billing_run.several`).
    """
    previous = (await conn.execute(
        select(bill.c.id, bill.c.meter_id, bill.c.reading_end_m3, bill.c.cumulative_after)
        .where(bill.c.account_id == account_id, bill.c.status == "issued", bill.c.period_end == start)
        .order_by(bill.c.period_start.desc()).limit(1))).one()
    ended = {m: Decimal(end) for m, end in await conn.execute(
        select(bill_meter.c.meter_id, bill_meter.c.reading_end_m3).where(bill_meter.c.bill_id == previous.id))}
    if not ended:
        ended = {previous.meter_id: Decimal(previous.reading_end_m3)}
    meters = list((await conn.execute(
        select(meter.c.id).where(meter.c.account_id == account_id, meter.c.installed_at < plan.period_end)
        .order_by(meter.c.id))).scalars()) or [previous.meter_id]
    after = period_boundary(start, tz)
    uses: list[tuple[str, Decimal, Decimal]] = []
    cause, latest_at = None, None
    for meter_id in meters:
        opening = ended.get(meter_id)
        if opening is None:  # a meter that bill did not cover
            opening = await opening_register(conn, meter_id, after, plan.closing_at, through=True)
        if opening is None:
            result.skipped.append(SkippedAccount(account_id, meter_id, SkipReason.NO_OPENING_READING,
                                                 f"meter {meter_id}: none at or before {after}"))
            return
        closing = (await conn.execute(
            select(reading.c.volume_m3, reading.c.read_at, reading.c.message_id, reading.c.correlation_id)
            .where(reading.c.meter_id == meter_id, reading.c.read_at > after, reading.c.read_at <= plan.closing_at)
            .order_by(reading.c.read_at.desc()).limit(1))).first()
        if closing is None:
            result.skipped.append(SkippedAccount(account_id, meter_id, SkipReason.NO_CLOSING_READING,
                                                 f"no reading after {start} (billed up to there off-cycle)"))
            return
        uses.append((meter_id, opening, Decimal(closing.volume_m3)))
        if closing.correlation_id is not None and (latest_at is None or closing.read_at > latest_at):
            latest_at = closing.read_at
            cause = Caused(message_id=closing.message_id, correlation_id=closing.correlation_id, subject=account_id)
    chained = None if previous.cumulative_after is None else Decimal(previous.cumulative_after)
    meter_id, opening_m3, closing_m3 = uses[0]
    issued = await bill_account(conn, plan.book, account_id=account_id, category=category, meter_id=meter_id,
                                period_start=start, period_end=plan.period_end, opening_m3=opening_m3,
                                closing_m3=closing_m3, chained=chained, now=plan.now, cause=cause, result=result,
                                tz=tz, meters=uses if len(uses) > 1 else ())
    if issued is None:
        result.already_billed += 1
    elif isinstance(issued, SkippedAccount):
        result.skipped.append(issued)
