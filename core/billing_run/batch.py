"""One batch of a billing run: read everything it needs in one query, price it in memory, write it
in three bulk statements. See :mod:`core.billing_run.run` for the rules and the pipeline."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, case, func, null, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from core.accounts.household import approved_households
from core.billing import (
    Bill,
    BillLine,
    Household,
    ResidentialTariff,
    TariffBook,
    TariffCategory,
    TariffNotFound,
    bill_period,
)
from core.billing_run.estimates import (
    ESTIMATE_DUE,
    HELD,
    HELD_PATTERN,
    EstimateInputs,
    billable,
    estimate_inputs,
    flags,
)
from core.billing_run.pricing import PeriodPricer, PricedBill, PricedLine
from core.billing_run.result import BillingRunResult, SkippedAccount, SkipReason
from core.billing_run.several import Combined, MeterRegisters, combine, meter_registers
from core.catalogue.messages import BillIssued, BillMeterUse, ReadingSource
from core.db.bulk import insert_columns, insert_new
from core.db.tables import reading
from core.db.tables_accounts import account, account_household
from core.db.tables_billing import bill, bill_line, bill_meter, meter
from core.ids import new_ids
from core.messages import Cause, Caused, Event
from core.outbox import emit
from core.readings import DEFAULT_SETTINGS, Estimate, QualityFlag, ValidationSettings, estimate_consumption

CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
ZERO_VOLUME = Decimal("0.000")
ZERO_MONEY = Decimal("0.00")
BILL_COLUMNS = (
    "id", "account_id", "meter_id", "period_start", "period_end", "reading_start_m3", "reading_end_m3", "volume_m3",
    "total", "net_total", "tax_total", "cumulative_before", "cumulative_after", "category", "status", "created_at",
    "quality",
)
BILL_METER_COLUMNS = ("bill_id", "meter_id", "reading_start_m3", "reading_end_m3", "volume_m3", "estimated")
LINE_COLUMNS = (
    "bill_id", "line_no", "tier", "tariff_version", "cycle_start", "start", "end", "volume_m3", "unit_price",
    "amount", "vat_rate",
)


class RunPlan:
    """What stays the same for every batch of a run: the period, its boundaries and, per category, the
    calculator (or why the category cannot be billed) and whether a chaining bill's cumulative carries.

    Only one thread at a time may price with a plan (its per-category cache is not locked).
    """

    def __init__(self, book: TariffBook, period_start: date, period_end: date, opening_at: datetime,
                 closing_at: datetime, now: datetime, until: str | None = None,
                 rules: ValidationSettings = DEFAULT_SETTINGS, tz: tzinfo = CHINA_TZ,
                 boundary: Callable[[date], datetime] | None = None) -> None:
        self.until = until
        self.rules = rules
        """How estimates are made (``estimation_order``, ``estimate_quantum``)."""
        self.tz = tz
        self.boundary = boundary or (lambda day: datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC))
        """Only accounts with ids below this (a share of the city for one of several parallel runs)."""
        self.book = book
        self.period_start = period_start
        self.period_end = period_end
        self.opening_at = opening_at
        self.closing_at = closing_at
        self.now = now
        self._pricers: dict[TariffCategory, tuple[PeriodPricer | TariffNotFound, bool]] = {}
        self.probe_households = True
        """Whether ``batch_query`` probes each account's household; the run turns it off when no recorded
        approval covers a day of the period (then no household changes a bill)."""

    def pricer(self, category: TariffCategory) -> tuple[PeriodPricer | TariffNotFound, bool]:
        """The category's calculator (or ``TariffNotFound``) and whether a chaining bill's cumulative
        carries into the period (see :func:`cumulative_before`)."""
        found = self._pricers.get(category)
        if found is None:
            try:
                pricer: PeriodPricer | TariffNotFound = PeriodPricer(
                    self.book, category, self.period_start, self.period_end)
            except TariffNotFound as exc:
                pricer = exc
            carries = cumulative_before(self.book, category, self.period_start, Decimal(1)) != 0
            found = self._pricers[category] = (pricer, carries)
        return found

    def estimate(self, inputs: EstimateInputs | None) -> Estimate | None:
        """The period's estimated use from ``inputs`` (local times: "last month" is a calendar month)."""
        if inputs is None:
            return None
        return estimate_consumption(self.opening_at.astimezone(self.tz), self.closing_at.astimezone(self.tz),
                                    history=inputs.history, avg_daily_use_m3=inputs.avg_daily_use_m3,
                                    settings=self.rules)

    def batch_query(self, after: str, size: int, *, dialect: str) -> Select[Any]:
        """Up to ``size`` active postpaid accounts with a meter, by id after ``after``, each with everything its
        bill needs, in one round trip: its first meter and meter count, the opening register (the last
        reading at or before the start boundary), the closing register (the last reading after the start
        boundary, up to the end boundary), whether the period is billed already and the chaining bill's
        ``cumulative_after``, and the id of its household row for the period (the latest recorded one in
        force before the period ends: :meth:`households_for` reads the few with an approval). Every lookup
        is one index probe per account: correlated subqueries with ``LIMIT 1``, which PostgreSQL cannot
        turn into a scan of a whole table."""
        page = (
            select(account.c.id, account.c.category, account.c.subcategory,
                   func.min(meter.c.id).label("meter_id"), func.count(meter.c.id).label("meters"))
            .join(meter, meter.c.account_id == account.c.id)
            # The second bound lets the planner start the meter index at ``after`` too.
            # Prepaid accounts pay as they use (core.prepaid charges each reading): never billed.
            .where(account.c.status == "active", account.c.billing == "postpaid", account.c.id > after,
                   meter.c.account_id > after, *([account.c.id < self.until] if self.until is not None else []))
            .group_by(account.c.id, account.c.category, account.c.subcategory)
            .order_by(account.c.id)
            .limit(size)
            .subquery("page")
        )

        def register(*window: Any, column: Any = reading.c.volume_m3) -> Any:
            return (select(column).where(reading.c.meter_id == page.c.meter_id, *window)
                    .order_by(reading.c.read_at.desc()).limit(1).scalar_subquery())

        billed = (select(bill.c.id).where(bill.c.account_id == page.c.id, bill.c.period_start == self.period_start,
                                          bill.c.period_end == self.period_end).limit(1).scalar_subquery())
        # How far an off-cycle bill (a transfer's, core.lifecycle) overlapping the period reaches.
        covered = (select(func.max(bill.c.period_end))
                   .where(bill.c.account_id == page.c.id, bill.c.status == "issued",
                          bill.c.period_start < self.period_end, bill.c.period_end > self.period_start)
                   .scalar_subquery())
        chained = (select(bill.c.cumulative_after)
                   .where(bill.c.account_id == page.c.id, bill.c.period_start < self.period_start,
                          bill.c.period_end == self.period_start, bill.c.status == "issued")
                   .order_by(bill.c.period_start.desc()).limit(1).scalar_subquery())
        household: Any = null()
        if self.probe_households:
            household = (select(account_household.c.id)
                         .where(account_household.c.account_id == page.c.id,
                                account_household.c.effective_from < self.period_end)
                         .order_by(account_household.c.recorded_at.desc(), account_household.c.id.desc())
                         .limit(1).scalar_subquery())
        # Held readings are never a register (core.billing_run.estimates). The period's latest reading
        # (held or not: held, it holds the bill or asks for an estimate) is one probe; on PostgreSQL,
        # when it is not held it is also the closing register, and only when it is held does a second
        # probe look for the last billable one (a gating condition on the outer row: no scan otherwise):
        # two probes per account where one scalar subquery per column made four (the read of a batch of
        # 2,000: 48 ms → 34 ms). SQLite has no LATERAL: one subquery per column there.
        period = (reading.c.read_at > self.opening_at, reading.c.read_at <= self.closing_at)
        names = ("volume_m3", "message_id", "correlation_id")
        source: Any = page
        if dialect == "postgresql":
            latest = (select(*(reading.c[n] for n in names), reading.c.quality)
                      .where(reading.c.meter_id == page.c.meter_id, *period)
                      .order_by(reading.c.read_at.desc()).limit(1).lateral("latest"))
            held = latest.c.quality.like(HELD_PATTERN)
            closing = (select(*(reading.c[n] for n in names))
                       .where(reading.c.meter_id == page.c.meter_id, *period, *billable(), held)
                       .order_by(reading.c.read_at.desc()).limit(1).lateral("closing"))
            registers = [case((held, closing.c[n]), else_=latest.c[n]) for n in names]
            latest_quality: Any = latest.c.quality
            source = page.outerjoin(latest, true()).outerjoin(closing, true())
        else:
            registers = [register(*period, *billable(), column=reading.c[n]) for n in names]
            latest_quality = register(*period, column=reading.c.quality)
        return select(
            page.c.id, page.c.category, page.c.subcategory, page.c.meter_id, page.c.meters,
            register(reading.c.read_at <= self.opening_at, *billable()).label("opening_m3"),
            # The reading that closes the period causes the bill: bill.issued joins its flow.
            registers[0].label("closing_m3"), registers[1].label("closing_message"),
            registers[2].label("closing_flow"),
            billed.label("billed"), chained.label("chained"),
            latest_quality.label("latest_quality"),
            covered.label("covered"),
            household.label("household"),
        ).select_from(source).order_by(page.c.id)

    async def estimates_for(self, conn: AsyncConnection, rows: Sequence[Any]) -> dict[str, EstimateInputs]:
        """The estimate inputs of the batch's accounts whose latest reading asks for one (usually none:
        then no query at all)."""
        wanted = [(row[0], row[3]) for row in rows
                  if row[9] is None and row[4] == 1 and {HELD, ESTIMATE_DUE} <= flags(row[11])]
        if not wanted:
            return {}
        return await estimate_inputs(conn, wanted, period_start_at=self.opening_at, closing_at=self.closing_at,
                                     boundary=self.boundary, tz=self.tz)

    async def meters_for(self, conn: AsyncConnection, rows: Sequence[Any]) -> dict[str, list[MeterRegisters]]:
        """The meters and registers of the batch's accounts with several meters that are still to bill
        (:mod:`core.billing_run.several`; usually none: then no query at all)."""
        wanted = [row[0] for row in rows if row[4] > 1 and row[9] is None and row[12] is None]
        if not wanted:
            return {}
        return await meter_registers(conn, wanted, period_start=self.period_start, period_end=self.period_end,
                                     opening_at=self.opening_at, closing_at=self.closing_at)

    async def households_for(self, conn: AsyncConnection, rows: Sequence[Any]) -> dict[str, Household]:
        """The households of the batch's accounts whose uplift approval covers a day of the period, by
        account (rare: no query at all when no account of the batch has a household recorded)."""
        return await approved_households(conn, [row[13] for row in rows if row[13] is not None],
                                         self.period_start, self.period_end)


@dataclass(slots=True)
class PricedBatch:
    """A batch priced in memory: the bill rows to insert and, per bill, what its lines and event need."""

    accounts: int
    already_billed: int = 0
    skipped: list[SkippedAccount] = field(default_factory=list)
    bills: list[tuple[Any, ...]] = field(default_factory=list)
    """Rows of ``core_bill`` in ``BILL_COLUMNS`` order."""
    lines: list[tuple[Any, ...]] = field(default_factory=list)
    """Rows of ``core_bill_line`` in ``LINE_COLUMNS`` order, for every bill."""
    events: list[tuple[Event, Cause | None]] = field(default_factory=list)
    """One ``bill.issued`` per bill row, in the same order."""
    estimated_readings: list[tuple[Any, ...]] = field(default_factory=list)
    """For estimated bills: ``(bill id, meter id, read at, register, id suffix)``, one per estimated
    meter (:func:`_insert_estimated_readings`)."""
    bill_meters: list[tuple[Any, ...]] = field(default_factory=list)
    """For bills of accounts with several meters: rows of ``core_bill_meter`` in ``BILL_METER_COLUMNS``
    order."""
    rest: list[Rest] = field(default_factory=list)
    """Accounts whose period an off-cycle bill covers in part: the rest is billed one by one."""


@dataclass(frozen=True, slots=True)
class Rest:
    """An account to bill from ``start`` (the end of an off-cycle bill inside the period) to the period's end."""

    account_id: str
    category: TariffCategory
    start: date


def price_batch(plan: RunPlan, batch: list[Any], estimates: Mapping[str, EstimateInputs] | None = None,
                households: Mapping[str, Household] | None = None,
                several: Mapping[str, Sequence[MeterRegisters]] | None = None) -> PricedBatch:
    """Price the rows of one ``batch_query`` (with ``estimates_for``, ``households_for`` and
    ``meters_for`` those rows): no I/O, so it can run in a worker thread while the connection writes
    the previous batch.

    An account with several meters is priced on their volumes summed (:mod:`core.billing_run.several`).

    An account in ``households`` (its approval covers a day of the period) is priced by the reference
    ``bill_period(..., household=)``, which raises its thresholds on the days the approval covers; every
    other account by the run's whole-number :class:`~core.billing_run.pricing.PeriodPricer`."""
    out = PricedBatch(accounts=len(batch))
    period_start, period_end, now = plan.period_start, plan.period_end, plan.now
    ids = iter(new_ids(len(batch)))
    for (account_id, category, subcategory, meter_id, meters, opening_m3, closing_m3, closing_message, closing_flow,
         billed, chained, latest_quality, covered, _household) in batch:
        if billed is not None or (covered is not None and covered >= period_end):
            out.already_billed += 1
            continue
        tariff_category = tariff_category_of(category, subcategory)
        if covered is not None and tariff_category is not None:
            out.rest.append(Rest(account_id, tariff_category, covered))
            continue
        estimated: Estimate | None = None
        combined = None
        if meters > 1:
            found = combine(account_id, (several or {}).get(account_id, ()), opening_at=plan.opening_at,
                            estimate=plan.estimate)
            if isinstance(found, SkippedAccount):
                out.skipped.append(found)
                continue
            combined = found
            opening_m3, closing_m3 = found.opening_m3, found.closing_m3
            closing_message, closing_flow = found.closing_message, found.closing_flow
            meter_id = found.meters[0].meter_id
        latest = flags(latest_quality)
        if combined is None and HELD in latest:
            if ESTIMATE_DUE not in latest:
                out.skipped.append(SkippedAccount(account_id, meter_id, SkipReason.READING_HELD,
                                                  "the period's latest reading is held: resolve its exception"))
                continue
            if opening_m3 is None:
                out.skipped.append(SkippedAccount(account_id, meter_id, SkipReason.NO_OPENING_READING,
                                                  f"none at or before {plan.opening_at}"))
                continue
            estimated = plan.estimate((estimates or {}).get(account_id))
            if estimated is None:
                out.skipped.append(SkippedAccount(account_id, meter_id, SkipReason.NO_ESTIMATE,
                                                  "the period's reading is held and there is no history to estimate"))
                continue
            closing_m3 = opening_m3 + estimated.consumption_m3
            closing_message = closing_flow = None
        skip = skip_reason(account_id, meter_id, opening_m3, closing_m3, plan.opening_at)
        if skip is not None:
            out.skipped.append(skip)
            continue
        if tariff_category is None:
            out.skipped.append(
                SkippedAccount(account_id, meter_id, SkipReason.UNKNOWN_CATEGORY, f"{category}/{subcategory}"))
            continue
        pricer, carries = plan.pricer(tariff_category)
        if isinstance(pricer, TariffNotFound):
            out.skipped.append(SkippedAccount(account_id, meter_id, SkipReason.NO_TARIFF, str(pricer)))
            continue
        before = chained if carries and chained is not None else ZERO_VOLUME
        household = households.get(account_id) if households else None
        issued: PricedBill | Bill
        if household is not None and tariff_category is TariffCategory.RESIDENTIAL:
            issued = bill_period(plan.book, tariff_category, period_start, period_end, closing_m3 - opening_m3,
                                 cumulative_before=Decimal(before), household=household)
        else:
            issued = pricer.bill(closing_m3 - opening_m3, before)
        bill_id = next(ids)
        volume, total, net_total, tax_total = issued.volume_m3, issued.total, issued.net_total, issued.tax_total
        is_estimate = estimated is not None or (combined is not None and combined.estimated)
        out.bills.append((bill_id, account_id, meter_id, period_start, period_end, opening_m3, closing_m3, volume,
                          total, net_total, tax_total, issued.cumulative_before, issued.cumulative_after,
                          tariff_category.value, "issued", now, "estimated" if is_estimate else "actual"))
        if estimated is not None:
            out.estimated_readings.append((bill_id, meter_id, plan.closing_at, closing_m3, ""))
        uses = None if combined is None else _meter_parts(out, bill_id, combined, plan.closing_at)
        out.lines.extend((bill_id, n, line.tier, line.tariff_version, line.cycle_start, line.start, line.end,
                          line.volume_m3, line.unit_price, line.amount, line.vat_rate)
                         for n, line in enumerate(_lines(issued), start=1))
        # model_construct: the fields are the row just built from the pricer's quantized amounts, and
        # validating a million of them cost a run about 8 % of its client CPU
        # (tests/unit/test_billing_pricing.py holds the two equal).
        out.events.append((Event(type="bill.issued", subject=account_id, data=BillIssued.model_construct(
            bill_id=bill_id, account_id=account_id, meter_id=meter_id, period_start=period_start,
            period_end=period_end, category=tariff_category.value, volume_m3=volume, total=total,
            net_total=net_total, tax_total=tax_total, issued_at=now, estimated=is_estimate, meters=uses)),
            _cause(closing_message, closing_flow, account_id)))
    return out


def _meter_parts(out: PricedBatch, bill_id: str, combined: Combined, closing_at: datetime) -> list[BillMeterUse] | None:
    """What a bill on several meters adds: the estimated readings of its estimated meters and, when more
    than one meter is part of the period, its ``core_bill_meter`` rows and ``bill.issued``'s ``meters``
    (``None`` otherwise: a one-meter bill)."""
    several = len(combined.meters) > 1
    uses: list[BillMeterUse] = []
    for n, use in enumerate(combined.meters):
        if use.estimated:
            suffix = f"-{n}" if several else ""
            out.estimated_readings.append((bill_id, use.meter_id, closing_at, use.closing_m3, suffix))
        if several:
            volume = use.closing_m3 - use.opening_m3
            out.bill_meters.append((bill_id, use.meter_id, use.opening_m3, use.closing_m3, volume, use.estimated))
            uses.append(BillMeterUse.model_construct(meter_id=use.meter_id, reading_start_m3=use.opening_m3,
                                                     reading_end_m3=use.closing_m3, volume_m3=volume,
                                                     estimated=use.estimated))
    return uses or None


def _lines(issued: PricedBill | Bill) -> Sequence[PricedLine | BillLine]:
    """The lines of either kind of bill (they have the same fields)."""
    return issued.lines


def _cause(message_id: str | None, correlation_id: str | None, account_id: str) -> Cause | None:
    """The closing reading, when it came through the hub in a flow (readings loaded otherwise have none)."""
    if message_id is None or correlation_id is None:
        return None
    return Caused(message_id=message_id, correlation_id=correlation_id, subject=account_id)


async def write_batch(conn: AsyncConnection, priced: PricedBatch, result: BillingRunResult) -> None:
    """Insert the bills (leaving out any another run inserted meanwhile), then the lines and events of those
    this run really inserted; add the batch to ``result``."""
    result.accounts_seen += priced.accounts
    result.already_billed += priced.already_billed
    result.skipped.extend(priced.skipped)
    if not priced.bills:
        return
    bills, lines, events = priced.bills, priced.lines, priced.events
    inserted = await insert_new(conn, bill, dict(zip(BILL_COLUMNS, zip(*bills, strict=True), strict=True)))
    if len(inserted) < len(bills):  # lost a race with another run: keep what this run inserted
        result.already_billed += len(bills) - len(inserted)
        events = [event for row, event in zip(bills, events, strict=True) if row[0] in inserted]
        bills = [row for row in bills if row[0] in inserted]
        lines = [line for line in lines if line[0] in inserted]
    if lines:
        await insert_columns(conn, bill_line, dict(zip(LINE_COLUMNS, zip(*lines, strict=True), strict=True)))
    bill_meters = [row for row in priced.bill_meters if row[0] in inserted]
    if bill_meters:
        await insert_columns(conn, bill_meter,
                             dict(zip(BILL_METER_COLUMNS, zip(*bill_meters, strict=True), strict=True)))
    estimated = [row for row in priced.estimated_readings if row[0] in inserted]
    if estimated:
        await _insert_estimated_readings(conn, estimated)
    await emit(conn, events)
    result.bill_ids.extend(row[0] for row in bills)
    result.estimated_bill_ids.extend(dict.fromkeys(row[0] for row in estimated))
    result.total_billed += sum((row[8] for row in bills), ZERO_MONEY)
    result.bills_issued += len(events)


async def _insert_estimated_readings(conn: AsyncConnection, rows: list[tuple[Any, ...]]) -> None:
    """The registers estimated bills closed on, as estimated readings at the end boundary (id
    ``E`` + the bill id, and ``-n`` for the n-th meter of an account with several): the next period
    opens there. A reading already stored at that very time
    wins (the next run then opens from the last billable reading before it)."""
    await insert_columns(conn, reading, {
        "id": [f"E{r[0]}{r[4]}"[:32] for r in rows],
        "meter_id": [r[1] for r in rows],
        "read_at": [r[2] for r in rows],
        "volume_m3": [r[3] for r in rows],
        "source": [ReadingSource.ESTIMATE.value] * len(rows),
        "quality": [QualityFlag.ESTIMATED.value] * len(rows),
        "message_id": [f"E{r[0]}{r[4]}" for r in rows],
        "correlation_id": [None] * len(rows),
    }, ignore_conflicts=True)


def tariff_category_of(category: str, subcategory: str | None) -> TariffCategory | None:
    if category == "residential":
        return TariffCategory.RESIDENTIAL
    if category == "non_residential" and subcategory in ("industrial", "commercial", "heating"):
        return TariffCategory(subcategory)
    return None


def skip_reason(
    account_id: str, meter_id: str, opening_m3: Decimal | None, closing_m3: Decimal | None, opening_at: datetime
) -> SkippedAccount | None:
    if opening_m3 is None:
        return SkippedAccount(account_id, meter_id, SkipReason.NO_OPENING_READING, f"none at or before {opening_at}")
    if closing_m3 is None:
        return SkippedAccount(account_id, meter_id, SkipReason.NO_CLOSING_READING, "no reading in the period")
    if closing_m3 < opening_m3:
        return SkippedAccount(
            account_id, meter_id, SkipReason.NEGATIVE_CONSUMPTION, f"{opening_m3} m³ -> {closing_m3} m³"
        )
    return None


def cumulative_before(
    book: TariffBook, category: TariffCategory, period_start: date, previous_after: Decimal | None
) -> Decimal:
    """The chaining bill's ``cumulative_after``, or 0 (no chaining bill, flat tariff, cycle start)."""
    if previous_after is None or category is not TariffCategory.RESIDENTIAL:
        return ZERO_VOLUME
    try:
        tariff = book.in_force(category, period_start)
    except TariffNotFound:
        return ZERO_VOLUME
    if isinstance(tariff, ResidentialTariff) and tariff.cycle_start.cycle_of(period_start) == period_start:
        return ZERO_VOLUME
    return Decimal(previous_after)
