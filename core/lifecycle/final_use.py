"""The final (or transfer) reading of an account's meter, and what the use up to it costs.

The reading is stored like any other (:func:`core.handlers.readings.store_readings`, source ``final``,
quality ``valid``): it is the meter's register from then on, a baseline for the validation rules and
an opening register for later bills. Then:

* **postpaid**: the use since the end of the account's last bill (or its opening) is billed, up to
  and including the day of the reading (:func:`core.billing_run.single.bill_account`, the monthly
  run's pricing), with a ``bill.issued`` caused by the reading;
* **prepaid**: the reading is charged to the meter's balance like any accepted reading
  (:class:`core.prepaid.PrepaidMeters`, without reminders or a valve command: the account is leaving).

Refused (``DomainRejected``), before anything is written: a reading lower than the meter's last one
or the register the last bill ended on, a time before the meter's last reading or before the end of
the last bill, an account with several meters (each would need its own final reading), and a postpaid meter
with no reading to bill from.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection
from ulid import ULID

from core.billing import TariffBook, TariffCategory
from core.billing_run.batch import tariff_category_of
from core.billing_run.periods import CHINA_TZ, days_through, period_boundary
from core.billing_run.result import SkippedAccount
from core.billing_run.single import bill_account, latest_bill
from core.catalogue.messages import MeterReading, ReadingSource
from core.db.tables import reading
from core.db.tables_billing import meter
from core.errors import DomainRejected
from core.handlers.readings import store_readings
from core.lifecycle.models import FinalBill
from core.messages import Caused, Incoming
from core.prepaid import AcceptedReading, PrepaidMeters, PrepaidSettings
from core.readings import DEFAULT_READINGS

QUIET = PrepaidSettings(enabled=True, notify=False, close_valve=False)
"""Charging the final reading of a prepaid meter: no low-balance SMS, no valve command."""


async def account_meter(conn: AsyncConnection, account_id: str, account_number: str) -> str | None:
    """The account's meter, ``None`` without one. Several are refused: a close or a transfer takes one
    final reading, and per-meter final readings are not built yet (the monthly run bills such an
    account on its meters' sum, :mod:`core.billing_run.several`)."""
    ids = list((await conn.execute(select(meter.c.id).where(meter.c.account_id == account_id)
                                   .order_by(meter.c.id))).scalars())
    if len(ids) > 1:
        raise DomainRejected(f"account {account_number} has {len(ids)} meters ({', '.join(ids)}): a close or a "
                             "transfer takes one final reading, and an account with several meters cannot be "
                             "closed or transferred in one call yet (see 'Accounts with several meters' in "
                             "docs/operations.md)")
    return ids[0] if ids else None


def category_of(row: Any) -> TariffCategory:
    found = tariff_category_of(row.category, row.subcategory)
    if found is None:  # the table's check constraint makes this impossible
        raise DomainRejected(f"account {row.account_number} has no tariff category")
    return found


async def _last_reading(conn: AsyncConnection, meter_id: str) -> Any:
    return (await conn.execute(select(reading.c.read_at, reading.c.volume_m3).where(reading.c.meter_id == meter_id)
                               .order_by(reading.c.read_at.desc()).limit(1))).first()


def _check_against_last(last: Any, meter_id: str, at: datetime, value: Decimal, what: str) -> None:
    if last is None:
        return
    if last.read_at > at:
        raise DomainRejected(
            f"meter {meter_id} was read at {last.read_at.isoformat()}, after the {what} time {at.isoformat()}: "
            f"a {what} needs a reading taken after the meter's last one")
    if Decimal(last.volume_m3) > value:
        raise DomainRejected(
            f"the {what} reading {value} m³ is lower than meter {meter_id}'s last reading {last.volume_m3} m³ "
            f"of {last.read_at.isoformat()}")


async def _store(conn: AsyncConnection, account_id: str, meter_id: str, at: datetime, value: Decimal
                 ) -> Incoming | None:
    """Store the reading; ``None`` when the meter has it already (the same value at that time; another
    value is a ``Conflict``)."""
    reading_id = str(ULID())
    item = Incoming(message_id=reading_id, type="meter.reading", subject=account_id, correlation_id=reading_id,
                    data=MeterReading(meter_id=meter_id, read_at=at, volume_m3=value, source=ReadingSource.FINAL))
    inserted = await store_readings(conn, [item], ["valid"])
    return item if inserted else None


async def bill_final_use(conn: AsyncConnection, book: TariffBook, row: Any, meter_id: str, at: datetime,
                         value: Decimal, now: datetime, what: str) -> FinalBill:
    """Store the reading and bill a postpaid account's use up to it (module notes)."""
    previous = await latest_bill(conn, row.id)
    if previous is not None:
        start = previous.period_end
        if at < period_boundary(start):
            raise DomainRejected(
                f"account {row.account_number} is billed up to {start.isoformat()} (exclusive): a {what} at "
                f"{at.isoformat()} falls inside a billed period; take it on or after that day")
        opening: Decimal | None = previous.reading_end_m3
        chained = previous.cumulative_after
    else:
        start = row.opened_at.astimezone(CHINA_TZ).date()
        opening = await _opening_register(conn, meter_id, period_boundary(start), at)
        chained = None
    if opening is None:
        raise DomainRejected(f"meter {meter_id} has no reading before the {what} to bill from: record the reading "
                             "taken when it was installed, then try again")
    last = await _last_reading(conn, meter_id)
    _check_against_last(last, meter_id, at, value, what)
    if value < opening:
        raise DomainRejected(f"the {what} reading {value} m³ is lower than {opening} m³, where the last bill "
                             "ended")
    item = await _store(conn, row.id, meter_id, at, value)
    issued = await bill_account(
        conn, book, account_id=row.id, category=category_of(row), meter_id=meter_id, period_start=start,
        period_end=days_through(at), opening_m3=opening, closing_m3=value, chained=chained, now=now,
        cause=None if item is None else Caused(message_id=item.message_id, correlation_id=item.correlation_id,
                                               subject=row.id))
    if isinstance(issued, SkippedAccount):
        raise DomainRejected(f"the {what} bill cannot be made: {issued.reason.value} ({issued.detail})")
    if issued is None:
        raise DomainRejected(f"account {row.account_number} already has a bill for "
                             f"{start.isoformat()}..{days_through(at).isoformat()}")
    return FinalBill(bill_id=issued.bill_id, meter_id=meter_id, period_start=issued.period_start,
                     period_end=issued.period_end, reading_start_m3=issued.reading_start_m3,
                     reading_end_m3=issued.reading_end_m3, volume_m3=issued.volume_m3, total=issued.total)


async def _opening_register(conn: AsyncConnection, meter_id: str, boundary: datetime, at: datetime) -> Decimal | None:
    """The register when the account opened: the last reading at or before its first day's boundary,
    else the meter's first reading after it (before ``at``)."""
    before = await conn.scalar(select(reading.c.volume_m3).where(reading.c.meter_id == meter_id,
                                                                 reading.c.read_at <= boundary)
                               .order_by(reading.c.read_at.desc()).limit(1))
    if before is None:
        before = await conn.scalar(select(reading.c.volume_m3).where(
            reading.c.meter_id == meter_id, reading.c.read_at > boundary, reading.c.read_at < at)
            .order_by(reading.c.read_at).limit(1))
    return None if before is None else Decimal(before)


async def charge_final_use(conn: AsyncConnection, book: TariffBook, row: Any, meter_id: str, at: datetime,
                           value: Decimal, now: datetime, what: str) -> Decimal:
    """Store a prepaid meter's reading and charge it to the balance; returns the balance after."""
    last = await _last_reading(conn, meter_id)
    _check_against_last(last, meter_id, at, value, what)
    item = await _store(conn, row.id, meter_id, at, value)
    if item is None:  # read and charged already
        return await prepaid_balance(conn, meter_id)
    accepted = AcceptedReading(
        cause=item, meter_id=meter_id, account_id=row.id, category=category_of(row), read_at=at, volume_m3=value,
        baseline_at=None if last is None else last.read_at,
        consumption_m3=None if last is None else value - Decimal(last.volume_m3), avg_daily_use_m3=None)

    async def no_phones(meter_ids: set[str]) -> dict[str, str]:
        return {}

    await PrepaidMeters(QUIET, book, DEFAULT_READINGS.rules).deduct(conn, [accepted], phones=no_phones, now=now)
    return await prepaid_balance(conn, meter_id)


async def prepaid_balance(conn: AsyncConnection, meter_id: str) -> Decimal:
    value = await conn.scalar(select(meter.c.prepaid_balance).where(meter.c.id == meter_id))
    return Decimal(value or 0).quantize(Decimal("0.01"))
