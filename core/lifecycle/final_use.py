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
the last bill, and a postpaid meter with no reading to bill from.

An account with several meters takes one register per meter (:func:`final_registers`): each is
stored, and the bill is made on their sum, as the monthly run bills such an account
(:mod:`core.billing_run.several`); each meter's use starts where the last bill ended for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection
from ulid import ULID

from core.billing import TariffBook, TariffCategory
from core.billing_run.batch import tariff_category_of
from core.billing_run.periods import CHINA_TZ, days_through, period_boundary
from core.billing_run.result import SkippedAccount
from core.billing_run.single import bill_account, latest_bill, opening_register
from core.catalogue.messages import MeterReading, ReadingSource
from core.db.tables import reading
from core.db.tables_billing import meter
from core.errors import DomainRejected
from core.handlers.readings import store_readings
from core.lifecycle.models import FinalBill, FinalMeterUse
from core.messages import Caused, Incoming
from core.prepaid import AcceptedReading, PrepaidMeters, PrepaidSettings
from core.readings import DEFAULT_READINGS

QUIET = PrepaidSettings(enabled=True, notify=False, close_valve=False)
"""Charging the final reading of a prepaid meter: no low-balance SMS, no valve command."""


async def account_meters(conn: AsyncConnection, account_id: str) -> list[str]:
    """The account's meters, by id."""
    return list((await conn.execute(select(meter.c.id).where(meter.c.account_id == account_id)
                                    .order_by(meter.c.id))).scalars())


def clean_meter_readings(meter_readings: Mapping[str, Any] | None, what: str) -> dict[str, Decimal] | None:
    """A request's ``meter_readings``, each register checked and quantized (:func:`register_value`), by
    meter id in order: what the request's fingerprint holds and :func:`final_registers` takes."""
    if meter_readings is None:
        return None
    registers: dict[str, Decimal] = {}
    for m, v in sorted(meter_readings.items()):
        register = register_value(v, f"{what} reading of meter {str(m)[:32]}")
        if register is None:
            raise DomainRejected(f"the {what} reading of meter {str(m)[:32]} must be a number of m³")
        registers[str(m)] = register
    return registers


def final_registers(meters: Sequence[str], value: Decimal | None, meter_readings: Mapping[str, Decimal] | None,
                    account_number: str, field: str) -> dict[str, Decimal] | None:
    """The registers a close or a transfer stores, by meter: ``value`` (``field`` of the request) for an
    account with one meter, ``meter_readings`` (one per meter, from :func:`clean_meter_readings`) for
    any; ``None`` when none was given. ``value`` without a meter is ignored, as before."""
    if meter_readings is None:
        if value is None or not meters:
            return None
        if len(meters) > 1:
            raise DomainRejected(f"account {account_number} has {len(meters)} meters ({', '.join(meters)}): give "
                                 f"each one's register in meter_readings (meter id → m³) instead of {field}")
        return {meters[0]: value}
    if value is not None:
        raise DomainRejected(f"give either {field} or meter_readings, not both")
    registers = meter_readings
    unknown = sorted(set(registers) - set(meters))
    if unknown:
        raise DomainRejected(f"meter_readings names meters that are not account {account_number}'s: "
                             f"{', '.join(m[:32] for m in unknown[:5])} (its meters: {', '.join(meters) or 'none'})")
    missing = [m for m in meters if m not in registers]
    if missing:
        raise DomainRejected(f"meter_readings needs every meter of account {account_number}: missing "
                             f"{', '.join(missing)}")
    return {m: registers[m] for m in meters}


def register_value(value: Decimal | None, what: str) -> Decimal | None:
    """A meter register in m³ (0.001), or ``None``; anything else is refused."""
    if value is None:
        return None
    try:
        number = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise DomainRejected(f"the {what} must be a number of m³") from None
    if not number.is_finite() or number < 0 or number >= Decimal("1e11"):
        raise DomainRejected(f"the {what} must be a non-negative number of m³ below 10¹¹")
    return number.quantize(Decimal("0.001"))


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


async def bill_final_use(conn: AsyncConnection, book: TariffBook, row: Any, registers: Mapping[str, Decimal],
                         at: datetime, now: datetime, what: str) -> FinalBill:
    """Store the readings (one per meter) and bill a postpaid account's use up to them (module notes)."""
    previous = await latest_bill(conn, row.id)
    if previous is not None:
        start = previous.period_end
        if at < period_boundary(start):
            raise DomainRejected(
                f"account {row.account_number} is billed up to {start.isoformat()} (exclusive): a {what} at "
                f"{at.isoformat()} falls inside a billed period; take it on or after that day")
    else:
        start = row.opened_at.astimezone(CHINA_TZ).date()
    uses: list[tuple[str, Decimal, Decimal]] = []
    for meter_id, value in registers.items():
        # Where each meter's billed use ends: the register the last bill ended on for it, else (no bill
        # yet, or a meter the last bill did not cover) the register when the period began.
        opening = previous.ended_on(meter_id) if previous is not None else None
        if opening is None:
            opening = await opening_register(conn, meter_id, period_boundary(start), at)
        if opening is None:
            raise DomainRejected(f"meter {meter_id} has no reading before the {what} to bill from: record the "
                                 "reading taken when it was installed, then try again")
        _check_against_last(await _last_reading(conn, meter_id), meter_id, at, value, what)
        if value < opening:
            raise DomainRejected(f"the {what} reading {value} m³ of meter {meter_id} is lower than {opening} m³, "
                                 "where its billed use ends")
        uses.append((meter_id, opening, value))
    items = [await _store(conn, row.id, meter_id, at, value) for meter_id, value in registers.items()]
    first = next((item for item in items if item is not None), None)
    meter_id, opening, value = uses[0]
    issued = await bill_account(
        conn, book, account_id=row.id, category=category_of(row), meter_id=meter_id, period_start=start,
        period_end=days_through(at), opening_m3=opening, closing_m3=value,
        chained=previous.cumulative_after if previous is not None else None, now=now,
        cause=None if first is None else Caused(message_id=first.message_id, correlation_id=first.correlation_id,
                                                subject=row.id),
        meters=uses if len(uses) > 1 else ())
    if isinstance(issued, SkippedAccount):
        raise DomainRejected(f"the {what} bill cannot be made: {issued.reason.value} ({issued.detail})")
    if issued is None:
        raise DomainRejected(f"account {row.account_number} already has a bill for "
                             f"{start.isoformat()}..{days_through(at).isoformat()}")
    return FinalBill(bill_id=issued.bill_id, meter_id=meter_id, period_start=issued.period_start,
                     period_end=issued.period_end, reading_start_m3=issued.reading_start_m3,
                     reading_end_m3=issued.reading_end_m3, volume_m3=issued.volume_m3, total=issued.total,
                     meters=[FinalMeterUse(meter_id=u.meter_id, reading_start_m3=u.opening_m3,
                                           reading_end_m3=u.closing_m3, volume_m3=u.closing_m3 - u.opening_m3)
                             for u in issued.meters])


async def charge_prepaid_meters(conn: AsyncConnection, book: TariffBook, row: Any, meters: Sequence[str],
                                registers: Mapping[str, Decimal] | None, at: datetime, now: datetime,
                                what: str) -> Decimal:
    """A prepaid account's balance at a close or a transfer: each meter's reading charged (when given),
    the meters' balances summed (what one meter owes is set against what another holds: one holder)."""
    balance = Decimal("0.00")
    for meter_id in meters:
        balance += (await prepaid_balance(conn, meter_id) if registers is None
                    else await charge_final_use(conn, book, row, meter_id, at, registers[meter_id], now, what))
    return balance


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
