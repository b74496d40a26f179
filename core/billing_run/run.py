"""One billing run: every active account with a meter, for one period ``[period_start, period_end)``.

How a bill is made (the decisions, in one place):

* **Accounts**: ``core_account.status = 'active'`` with at least one row in ``core_meter``. An account
  with several meters is skipped and reported (``several_meters``): meter exchanges need both
  meters' registers and are not billed automatically.
* **Category**: ``residential`` accounts bill on the tiered residential tariff; ``non_residential``
  ones on the flat tariff of their subcategory (industrial, commercial, heating).
* **Volume**: the last reading at or before the end boundary minus the last reading at or before the
  start boundary. A boundary is local midnight (China Standard Time, UTC+8, no DST) at the start of
  the boundary day, since ``period_end`` is the first day *not* billed. Accounts are skipped and
  reported when there is no reading at or before the start (``no_opening_reading``), no reading
  after the start boundary up to the end boundary (``no_closing_reading``), or the register went
  backwards (``negative_consumption``: the domain rules hold billing).
* **Cumulative**: the tier cumulative before the period is the ``cumulative_after`` of the account's
  issued bill that ends exactly on ``period_start`` (the bills chain), and 0 otherwise: when the
  period starts a cycle, when there is no such bill (first bill, or a gap), or when that bill was on
  a flat tariff. A gap therefore restarts the tiers; bill periods are meant to chain.
* **Idempotency**: a bill is unique per ``(account_id, period_start, period_end)``. Accounts already
  billed for the period are counted in ``already_billed`` and left alone; the insert also ignores
  conflicts, so two runs racing each other cannot issue a bill twice, and lines and events are
  written only for the bills this run really inserted.
* **Events**: one ``bill.issued`` per new bill, through :func:`core.outbox.emit` in the caller's
  transaction.
* **Credit**: given ``payments`` (:class:`core.payments.Payments`), the accounts' unused credit
  (earlier overpayments) is spent on the new bills in the same transaction, oldest bill first, with
  the invoice requests the invoice policy asks for.
* **Cost**: per batch of ``batch_size`` accounts, five set-based reads (accounts with meters,
  opening readings, closing readings, chaining bills, bills already issued) and three bulk writes
  (bills, lines, outbox) — no query per account. Everything runs on the caller's connection and in
  its transaction; a failed run can simply be run again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from ulid import ULID

from core.billing import Bill, ResidentialTariff, TariffBook, TariffCategory, TariffNotFound, bill_period
from core.catalogue.messages import BillIssued
from core.db.bulk import insert_many
from core.db.tables import reading
from core.db.tables_accounts import account
from core.db.tables_billing import bill, bill_line, meter
from core.messages import Event
from core.outbox import emit
from core.payments import Payments

CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
"""China Standard Time: UTC+8 all year."""


class SkipReason(StrEnum):
    SEVERAL_METERS = "several_meters"
    NO_OPENING_READING = "no_opening_reading"
    NO_CLOSING_READING = "no_closing_reading"
    NEGATIVE_CONSUMPTION = "negative_consumption"
    UNKNOWN_CATEGORY = "unknown_category"
    NO_TARIFF = "no_tariff"


@dataclass(frozen=True, slots=True)
class SkippedAccount:
    account_id: str
    meter_id: str | None
    reason: SkipReason
    detail: str = ""


@dataclass(slots=True)
class BillingRunResult:
    """What a run did; ``progress`` receives it after every batch, totals so far."""

    period_start: date
    period_end: date
    accounts_seen: int = 0
    bills_issued: int = 0
    already_billed: int = 0
    total_billed: Decimal = Decimal("0.00")
    bill_ids: list[str] = field(default_factory=list)
    skipped: list[SkippedAccount] = field(default_factory=list)
    batches: int = 0


def period_boundary(day: date, tz: tzinfo = CHINA_TZ) -> datetime:
    """The instant a billing day starts: local midnight, as an aware UTC datetime."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def _category(category: str, subcategory: str | None) -> TariffCategory | None:
    if category == "residential":
        return TariffCategory.RESIDENTIAL
    if category == "non_residential" and subcategory in ("industrial", "commercial", "heating"):
        return TariffCategory(subcategory)
    return None


async def run_billing(
    conn: AsyncConnection,
    *,
    book: TariffBook,
    period_start: date,
    period_end: date,
    now: datetime,
    batch_size: int = 1000,
    progress: Callable[[BillingRunResult], None] | None = None,
    tz: tzinfo = CHINA_TZ,
    payments: Payments | None = None,
) -> BillingRunResult:
    """Bill every active metered account for ``[period_start, period_end)`` (see the module notes).

    ``now`` stamps the bills (``created_at``) and their ``bill.issued`` events; it must be aware.
    Runs in the caller's transaction; commit after it returns.
    """
    if period_end <= period_start:
        raise ValueError(f"empty period {period_start}..{period_end}: period_end is exclusive")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    result = BillingRunResult(period_start=period_start, period_end=period_end)
    opening_at = period_boundary(period_start, tz)
    closing_at = period_boundary(period_end, tz)
    after = ""
    while True:
        batch = await _accounts_batch(conn, after, batch_size)
        if not batch:
            break
        after = batch[-1][0]
        issued_before = len(result.bill_ids)
        await _bill_batch(conn, batch, book, period_start, period_end, opening_at, closing_at, now, result)
        if payments is not None and len(result.bill_ids) > issued_before:
            billed = [row[0] for row in batch]
            await emit(conn, await payments.apply_credit(conn, billed, now))
        result.batches += 1
        if progress is not None:
            progress(result)
        if len(batch) < batch_size:
            break
    return result


async def _accounts_batch(conn: AsyncConnection, after: str, size: int) -> list[tuple[str, str, str | None, str, int]]:
    """Active accounts with a meter, by id after ``after``: (id, category, subcategory, meter, meters)."""
    stmt = (
        select(account.c.id, account.c.category, account.c.subcategory, func.min(meter.c.id), func.count(meter.c.id))
        .join(meter, meter.c.account_id == account.c.id)
        .where(account.c.status == "active", account.c.id > after)
        .group_by(account.c.id, account.c.category, account.c.subcategory)
        .order_by(account.c.id)
        .limit(size)
    )
    return [(r[0], r[1], r[2], r[3], int(r[4])) for r in await conn.execute(stmt)]


async def _last_readings(
    conn: AsyncConnection, meter_ids: Sequence[str], at: datetime
) -> dict[str, tuple[datetime, Decimal]]:
    """Per meter, the last reading at or before ``at``: one grouped query joined back to its row."""
    last = (
        select(reading.c.meter_id, func.max(reading.c.read_at).label("read_at"))
        .where(reading.c.meter_id.in_(list(meter_ids)), reading.c.read_at <= at)
        .group_by(reading.c.meter_id)
        .subquery()
    )
    stmt = select(reading.c.meter_id, reading.c.read_at, reading.c.volume_m3).join(
        last, and_(reading.c.meter_id == last.c.meter_id, reading.c.read_at == last.c.read_at)
    )
    return {r.meter_id: (r.read_at, Decimal(r.volume_m3)) for r in await conn.execute(stmt)}


async def _bill_batch(
    conn: AsyncConnection,
    batch: list[tuple[str, str, str | None, str, int]],
    book: TariffBook,
    period_start: date,
    period_end: date,
    opening_at: datetime,
    closing_at: datetime,
    now: datetime,
    result: BillingRunResult,
) -> None:
    result.accounts_seen += len(batch)
    account_ids = [row[0] for row in batch]
    done = set(
        (
            await conn.execute(
                select(bill.c.account_id).where(
                    bill.c.account_id.in_(account_ids),
                    bill.c.period_start == period_start,
                    bill.c.period_end == period_end,
                )
            )
        ).scalars()
    )
    result.already_billed += len(done)
    todo = []
    for account_id, category, subcategory, meter_id, meters in batch:
        if account_id in done:
            continue
        if meters > 1:
            result.skipped.append(SkippedAccount(account_id, None, SkipReason.SEVERAL_METERS, f"{meters} meters"))
            continue
        todo.append((account_id, category, subcategory, meter_id))
    if not todo:
        return
    meter_ids = [row[3] for row in todo]
    opening = await _last_readings(conn, meter_ids, opening_at)
    closing = await _last_readings(conn, meter_ids, closing_at)
    chained = {
        r.account_id: r.cumulative_after
        for r in await conn.execute(
            select(bill.c.account_id, bill.c.cumulative_after).where(
                bill.c.account_id.in_([row[0] for row in todo]),
                bill.c.period_end == period_start,
                bill.c.status == "issued",
            )
        )
    }

    bills: list[dict[str, Any]] = []
    made: dict[str, tuple[str, str, Bill]] = {}
    for account_id, category, subcategory, meter_id in todo:
        skip = _skip_reason(account_id, meter_id, opening.get(meter_id), closing.get(meter_id), opening_at)
        if skip is not None:
            result.skipped.append(skip)
            continue
        tariff_category = _category(category, subcategory)
        if tariff_category is None:
            result.skipped.append(
                SkippedAccount(account_id, meter_id, SkipReason.UNKNOWN_CATEGORY, f"{category}/{subcategory}")
            )
            continue
        start_m3, end_m3 = opening[meter_id][1], closing[meter_id][1]
        cumulative_before = _cumulative_before(book, tariff_category, period_start, chained.get(account_id))
        try:
            issued = bill_period(
                book, tariff_category, period_start, period_end, end_m3 - start_m3,
                cumulative_before=cumulative_before,
            )
        except TariffNotFound as exc:
            result.skipped.append(SkippedAccount(account_id, meter_id, SkipReason.NO_TARIFF, str(exc)))
            continue
        bill_id = str(ULID())
        made[bill_id] = (account_id, meter_id, issued)
        bills.append(
            {
                "id": bill_id,
                "account_id": account_id,
                "meter_id": meter_id,
                "period_start": period_start,
                "period_end": period_end,
                "reading_start_m3": start_m3,
                "reading_end_m3": end_m3,
                "volume_m3": issued.volume_m3,
                "total": issued.total,
                "net_total": issued.net_total,
                "tax_total": issued.tax_total,
                "cumulative_before": issued.cumulative_before,
                "cumulative_after": issued.cumulative_after,
                "category": tariff_category.value,
                "status": "issued",
                "created_at": now,
            }
        )
    inserted = {row[0] for row in await insert_many(conn, bill, bills, ignore_conflicts=True, returning=("id",))}
    result.already_billed += len(bills) - len(inserted)  # lost a race with another run
    lines: list[dict[str, Any]] = []
    events: list[tuple[Event, None]] = []
    for bill_id in (b["id"] for b in bills if b["id"] in inserted):
        account_id, meter_id, issued = made[bill_id]
        lines.extend(
            {
                "bill_id": bill_id,
                "line_no": n,
                "tier": line.tier,
                "tariff_version": line.tariff_version,
                "cycle_start": line.cycle_start,
                "start": line.start,
                "end": line.end,
                "volume_m3": line.volume_m3,
                "unit_price": line.unit_price,
                "amount": line.amount,
                "vat_rate": line.vat_rate,
            }
            for n, line in enumerate(issued.lines, start=1)
        )
        events.append(
            (
                Event(
                    type="bill.issued",
                    subject=account_id,
                    data=BillIssued(
                        bill_id=bill_id,
                        account_id=account_id,
                        meter_id=meter_id,
                        period_start=period_start,
                        period_end=period_end,
                        category=issued.category.value,
                        volume_m3=issued.volume_m3,
                        total=issued.total,
                        net_total=issued.net_total,
                        tax_total=issued.tax_total,
                        issued_at=now,
                    ),
                ),
                None,
            )
        )
        result.bill_ids.append(bill_id)
        result.total_billed += issued.total
    await insert_many(conn, bill_line, lines)
    await emit(conn, events)
    result.bills_issued += len(events)


def _skip_reason(
    account_id: str,
    meter_id: str,
    opening: tuple[datetime, Decimal] | None,
    closing: tuple[datetime, Decimal] | None,
    opening_at: datetime,
) -> SkippedAccount | None:
    if opening is None:
        return SkippedAccount(account_id, meter_id, SkipReason.NO_OPENING_READING, f"none at or before {opening_at}")
    if closing is None or closing[0] <= opening_at:
        return SkippedAccount(account_id, meter_id, SkipReason.NO_CLOSING_READING, "no reading in the period")
    if closing[1] < opening[1]:
        return SkippedAccount(
            account_id, meter_id, SkipReason.NEGATIVE_CONSUMPTION, f"{opening[1]} m³ -> {closing[1]} m³"
        )
    return None


def _cumulative_before(
    book: TariffBook, category: TariffCategory, period_start: date, previous_after: Decimal | None
) -> Decimal:
    """The chaining bill's ``cumulative_after``, or 0 (no chaining bill, flat tariff, cycle start)."""
    if previous_after is None or category is not TariffCategory.RESIDENTIAL:
        return Decimal("0.000")
    try:
        tariff = book.in_force(category, period_start)
    except TariffNotFound:
        return Decimal("0.000")
    if isinstance(tariff, ResidentialTariff) and tariff.cycle_start.cycle_of(period_start) == period_start:
        return Decimal("0.000")
    return Decimal(previous_after)
