"""Bills on good readings only (SQLite and PostgreSQL): a reading the validation rules held is never
billed as it is. Held for a spike ("exception, then estimate"), the period is billed on an estimate,
marked as such; held for a register going back ("exception; hold billing"), the bill waits. The
held readings come from ``core:record_reading`` itself; the numbers are worked out by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import orjson
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from core.billing_run import SkipReason
from core.catalogue.messages import MeterReading, ReadingSource
from core.db.tables import outbox, reading
from core.db.tables_accounts import account
from core.db.tables_billing import bill, meter
from core.handlers.readings import record_reading
from core.messages import Incoming
from tests.flow.test_billing_run import FEB, JAN, MAR, OPENED, _run, _skips, engine

__all__ = ["engine"]  # the billing city, shared with test_billing_run
APR = date(2026, 4, 1)
D = Decimal


def utc(month: int, day: int, hour: int = 16) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


LOCAL_JAN_1, LOCAL_FEB_1, LOCAL_MAR_1 = datetime(2025, 12, 31, 16, tzinfo=UTC), utc(1, 31), utc(2, 28)


async def _accounts(eng: AsyncEngine, *ids: str) -> None:
    async with eng.begin() as conn:
        await conn.execute(insert(account), [
            {"id": a, "account_number": f"SXH{n:07d}", "category": "residential", "subcategory": None,
             "billing": "postpaid", "status": "active", "premises_id": "P1", "customer_id": "C1", "opened_at": OPENED}
            for n, a in enumerate(ids)])
        await conn.execute(insert(meter), [
            {"id": f"M{a}", "account_id": a, "model": "G2.5", "installed_at": date(2025, 6, 1),
             "valve_state": "open", "prepaid_balance": D("0.00")} for a in ids])


async def _stored(eng: AsyncEngine, meter_id: str, *points: tuple[datetime, str, str]) -> None:
    async with eng.begin() as conn:
        await conn.execute(insert(reading), [
            {"id": f"{meter_id}-{at:%y%m%d%H}", "meter_id": meter_id, "read_at": at, "volume_m3": D(v),
             "source": "manual", "quality": quality, "message_id": f"{meter_id}-{at:%y%m%d%H}"}
            for at, v, quality in points])


async def _arrives(eng: AsyncEngine, meter_id: str, at: datetime, volume: str) -> str:
    """A reading through ``core:record_reading``; returns the quality it was stored with."""
    data = MeterReading(meter_id=meter_id, read_at=at, volume_m3=D(volume), source=ReadingSource.MANUAL)
    async with eng.begin() as conn:
        await record_reading(conn, [Incoming(f"in-{meter_id}", "meter.reading", meter_id, "c", data)], now=at)
        return str(await conn.scalar(select(reading.c.quality).where(reading.c.meter_id == meter_id,
                                                                     reading.c.read_at == at)))


async def test_a_held_reading_is_not_billed_and_a_spike_is_billed_on_an_estimate(engine: AsyncEngine) -> None:
    await _accounts(engine, "H1", "H2", "H3", "H4", "H5")
    # H1: 62 m³ in January (2 m³ a day); then a register of 2000 on 28 February: 938 m³ in 28 days is
    # more than 5 × the average: a spike, held with an estimate due.
    await _stored(engine, "MH1", (LOCAL_JAN_1, "1000.000", "valid"), (LOCAL_FEB_1, "1062.000", "valid"))
    assert await _arrives(engine, "MH1", utc(2, 28, 15), "2000.000") == "suspect,held,estimate_due"
    # H2: the register goes back in February: held, no estimate ("exception; hold billing").
    await _stored(engine, "MH2", (LOCAL_JAN_1, "480.000", "valid"), (LOCAL_FEB_1, "500.000", "valid"))
    assert await _arrives(engine, "MH2", utc(2, 20), "490.000") == "suspect,held"
    # H3: a held reading early in February, a good one later: the good one closes the period.
    await _stored(engine, "MH3", (LOCAL_FEB_1, "300.000", "valid"), (utc(2, 10), "290.000", "suspect,held"),
                  (utc(2, 25), "310.000", "valid"))
    # H4: a spike with nothing to estimate from (one good reading, no bills).
    await _stored(engine, "MH4", (LOCAL_FEB_1, "100.000", "valid"),
                  (utc(2, 20), "900.000", "suspect,held,estimate_due"))
    # H5: no bill to compare with, but 31.5 m³ in the 21 days to 1 February: 1.5 m³ a day.
    await _stored(engine, "MH5", (utc(1, 10), "200.000", "valid"), (LOCAL_FEB_1, "231.500", "valid"),
                  (utc(2, 25), "999.000", "suspect,held,estimate_due"))

    january = await _run(engine, JAN, FEB)
    assert {a: r for a, r in _skips(january).items() if a.startswith("H")} == {
        "H3": SkipReason.NO_OPENING_READING, "H4": SkipReason.NO_OPENING_READING,
        "H5": SkipReason.NO_OPENING_READING}
    february = await _run(engine, FEB, MAR)
    assert {a: r for a, r in _skips(february).items() if a.startswith("H")} == {
        "H2": SkipReason.READING_HELD, "H4": SkipReason.NO_ESTIMATE}

    async with engine.connect() as conn:
        bills = {(r.account_id, r.period_start): r for r in await conn.execute(
            select(bill).where(bill.c.account_id.like("H%")))}
        events = {orjson.loads(r.data)["bill_id"]: orjson.loads(r.data) for r in await conn.execute(
            select(outbox.c.data).where(outbox.c.type == "bill.issued"))}
        estimated_reading = (await conn.execute(select(reading).where(
            reading.c.meter_id == "MH1", reading.c.source == "estimate"))).one()
    # January from actual readings: 62 m³ × 3.00 = 186.00; H2 20 m³ × 3.00 = 60.00.
    assert (bills["H1", JAN].volume_m3, bills["H1", JAN].total, bills["H1", JAN].quality) == (
        D("62.000"), D("186.00"), "actual")
    assert (bills["H2", JAN].total, ("H2", FEB) in bills) == (D("60.00"), False)
    # H1 February: the same period last month was 62 m³ in 31 days; February has 28:
    # 62 × 28 / 31 = 56.000 m³, all tier 1 (62 + 56 < 300): 56 × 3.00 = 168.00.
    feb1 = bills["H1", FEB]
    assert (feb1.quality, feb1.volume_m3, feb1.total) == ("estimated", D("56.000"), D("168.00"))
    assert (feb1.reading_start_m3, feb1.reading_end_m3, feb1.cumulative_before, feb1.cumulative_after) == (
        D("1062.000"), D("1118.000"), D("62.000"), D("118.000"))
    assert feb1.id in february.estimated_bill_ids
    assert events[feb1.id]["estimated"] is True
    assert events[bills["H1", JAN].id]["estimated"] is False
    assert (estimated_reading.read_at, estimated_reading.volume_m3, estimated_reading.quality) == (
        LOCAL_MAR_1, D("1118.000"), "estimated")
    # H3: 310 − 300 = 10 m³ × 3.00 = 30.00 from the good reading; the held one is skipped over.
    assert (bills["H3", FEB].volume_m3, bills["H3", FEB].total, bills["H3", FEB].quality) == (
        D("10.000"), D("30.00"), "actual")
    # H5: 1.5 m³ a day × 28 days = 42.000 m³ × 3.00 = 126.00.
    assert (bills["H5", FEB].quality, bills["H5", FEB].volume_m3, bills["H5", FEB].total) == (
        "estimated", D("42.000"), D("126.00"))

    # Running February again bills nothing twice and estimates no reading twice.
    again = await _run(engine, FEB, MAR)
    assert (again.bills_issued, again.estimated_bill_ids) == (0, [])
    # March opens where the estimate closed: 1150 − 1118 = 32 m³ × 3.00 = 96.00 (no use billed twice).
    await _stored(engine, "MH1", (utc(3, 31, 15), "1150.000", "valid"))
    await _run(engine, MAR, APR)
    async with engine.connect() as conn:
        mar1 = (await conn.execute(select(bill).where(bill.c.account_id == "H1", bill.c.period_start == MAR))).one()
    assert (mar1.reading_start_m3, mar1.volume_m3, mar1.total, mar1.quality) == (
        D("1118.000"), D("32.000"), D("96.00"), "actual")
