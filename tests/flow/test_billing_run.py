"""Billing runs against a real database, on SQLite and on PostgreSQL (migrated with Alembic).

A small city: a residential account whose second period crosses a tier (domain.md's worked example,
280 m³ then 50 m³ → 168.00 yuan), a commercial account on a flat price, accounts with missing
readings or several meters, a closed account and an account with no meter.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from core.billing import FlatTariff, ResidentialTariff, TariffBook, TariffCategory
from core.billing_run import BillingRunResult, SkipReason, period_boundary, run_billing
from core.db.tables import outbox, reading
from core.db.tables_accounts import account, customer, premises
from core.db.tables_billing import bill, bill_line, meter
from hub.migrations import upgrade
from tests.flow.conftest import fresh_postgres_database

BOOK = TariffBook(
    versions=(
        ResidentialTariff(
            version="RES-2025",
            effective_from=date(2025, 1, 1),
            thresholds_m3=(Decimal(300), Decimal(600)),
            prices=(Decimal("3.00"), Decimal("3.60"), Decimal("4.50")),
        ),
        FlatTariff(
            version="COM-2025", effective_from=date(2025, 1, 1), category=TariffCategory.COMMERCIAL,
            price=Decimal("3.80"),
        ),
        FlatTariff(
            version="IND-2025", effective_from=date(2025, 1, 1), category=TariffCategory.INDUSTRIAL,
            price=Decimal("3.20"),
        ),
    )
)
JAN, FEB, MAR = date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)
NOW = datetime(2026, 3, 2, 1, tzinfo=UTC)
OPENED = datetime(2025, 6, 1, tzinfo=UTC)

# account id: (category, subcategory, status, meters)
CITY: dict[str, tuple[str, str | None, str, tuple[str, ...]]] = {
    "A1": ("residential", None, "active", ("M1",)),
    "A2": ("non_residential", "commercial", "active", ("M2",)),
    "A3": ("residential", None, "active", ("M3",)),
    "A4": ("residential", None, "active", ("M4",)),
    "A5": ("residential", None, "closed", ("M5",)),
    "A6": ("residential", None, "active", ()),
    "A7": ("non_residential", "industrial", "active", ("M7a", "M7b")),
}


READINGS: list[tuple[str, datetime, str]] = [
    # A1: 280 m³ in January, 50 m³ in February; the boundaries are local midnights (16:00 UTC).
    ("M1", datetime(2025, 12, 31, 16, tzinfo=UTC), "1000.000"),
    ("M1", datetime(2026, 1, 15, 3, tzinfo=UTC), "1100.000"),
    ("M1", datetime(2026, 1, 31, 16, tzinfo=UTC), "1280.000"),
    ("M1", datetime(2026, 2, 28, 16, tzinfo=UTC), "1330.000"),
    ("M1", datetime(2026, 3, 1, 2, tzinfo=UTC), "1400.000"),  # after the period: ignored
    # A2: commercial, first read on 20 January: not billable for January, 100 m³ for February.
    ("M2", datetime(2026, 1, 20, 2, tzinfo=UTC), "500.000"),
    ("M2", datetime(2026, 2, 28, 15, 59, tzinfo=UTC), "600.000"),
    # A3: no readings at all. A4: one reading before February, none in it.
    ("M4", datetime(2026, 1, 10, tzinfo=UTC), "42.000"),
    # A5 is closed: its readings bill nothing.
    ("M5", datetime(2025, 12, 1, tzinfo=UTC), "1.000"),
    ("M5", datetime(2026, 2, 27, tzinfo=UTC), "9.000"),
    ("M7a", datetime(2025, 12, 1, tzinfo=UTC), "1.000"),
    ("M7b", datetime(2026, 2, 27, tzinfo=UTC), "9.000"),
]


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/billing.db"
        drop = None
    else:
        url, drop = await fresh_postgres_database(request.getfixturevalue("postgres_url"))
    try:
        await asyncio.to_thread(upgrade, url)
        eng = create_async_engine(url)
        try:
            async with eng.begin() as conn:
                await _build_city(conn)
            yield eng
        finally:
            await eng.dispose()
    finally:
        if drop is not None:
            await drop()


async def _build_city(conn: Any) -> None:
    await conn.execute(insert(customer), [{
        "id": "C1", "name_enc": "x", "phone_enc": "x", "id_number_enc": "x", "phone_bidx": "p",
        "id_number_bidx": "i", "created_at": OPENED,
    }])
    await conn.execute(insert(premises), [{
        "id": "P1", "address_enc": "x", "district": "yuecheng", "lat": 30.0, "lon": 120.58, "created_at": OPENED,
    }])
    await conn.execute(insert(account), [
        {
            "id": account_id, "account_number": f"SX{n:08d}", "category": category, "subcategory": sub,
            "billing": "postpaid", "status": status, "premises_id": "P1", "customer_id": "C1",
            "opened_at": OPENED,
        }
        for n, (account_id, (category, sub, status, _)) in enumerate(CITY.items())
    ])
    await conn.execute(insert(meter), [
        {"id": meter_id, "account_id": account_id, "model": "G2.5", "installed_at": date(2025, 6, 1),
         "replace_by": date(2035, 6, 1), "valve_state": "open", "prepaid_balance": Decimal("0.00")}
        for account_id, (*_, meters) in CITY.items()
        for meter_id in meters
    ])
    await conn.execute(insert(meter), [{  # a spare meter in stock, on no account
        "id": "M99", "account_id": None, "model": "G4", "installed_at": date(2025, 6, 1), "replace_by": None,
        "valve_state": "unknown", "prepaid_balance": Decimal("0.00"),
    }])
    await conn.execute(insert(reading), [
        {"id": f"R{n}", "meter_id": m, "read_at": at, "volume_m3": Decimal(v), "source": "manual",
         "quality": "", "message_id": f"msg-{n}"}
        for n, (m, at, v) in enumerate(READINGS)
    ])


async def _run(eng: AsyncEngine, start: date, end: date, seen: list[int] | None = None) -> BillingRunResult:
    def progress(result: BillingRunResult) -> None:
        if seen is not None:
            seen.append(result.accounts_seen)

    async with eng.begin() as conn:
        return await run_billing(
            conn, book=BOOK, period_start=start, period_end=end, now=NOW, batch_size=2, progress=progress
        )


async def _counts(eng: AsyncEngine) -> tuple[int, int, int]:
    async with eng.connect() as conn:
        return (
            int(await conn.scalar(select(func.count()).select_from(bill)) or 0),
            int(await conn.scalar(select(func.count()).select_from(bill_line)) or 0),
            int(await conn.scalar(select(func.count()).select_from(outbox)) or 0),
        )


def _skips(result: BillingRunResult) -> dict[str, SkipReason]:
    return {s.account_id: s.reason for s in result.skipped}


async def test_two_periods_chain_the_tiers_and_rerunning_bills_nothing_twice(engine: AsyncEngine) -> None:
    seen: list[int] = []
    january = await _run(engine, JAN, FEB, seen)
    assert january.accounts_seen == 5  # A1 A2 A3 A4 A7: active with a meter
    assert seen == [2, 4, 5]  # batches of 2, totals so far
    assert january.bills_issued == 1
    assert january.total_billed == Decimal("840.00")
    assert _skips(january) == {
        "A2": SkipReason.NO_OPENING_READING,
        "A3": SkipReason.NO_OPENING_READING,
        "A4": SkipReason.NO_OPENING_READING,  # its only reading is from 10 January
        "A7": SkipReason.SEVERAL_METERS,
    }

    february = await _run(engine, FEB, MAR)
    assert february.bills_issued == 2
    assert february.already_billed == 0
    assert february.total_billed == Decimal("548.00")
    assert _skips(february) == {
        "A3": SkipReason.NO_OPENING_READING,
        "A4": SkipReason.NO_CLOSING_READING,
        "A7": SkipReason.SEVERAL_METERS,
    }

    async with engine.connect() as conn:
        bills = {
            (r.account_id, r.period_start): r
            for r in await conn.execute(select(bill).order_by(bill.c.account_id, bill.c.period_start))
        }
        assert set(bills) == {("A1", JAN), ("A1", FEB), ("A2", FEB)}
        jan1, feb1, feb2 = bills["A1", JAN], bills["A1", FEB], bills["A2", FEB]

        assert (jan1.volume_m3, jan1.total, jan1.cumulative_before, jan1.cumulative_after) == (
            Decimal("280.000"), Decimal("840.00"), Decimal("0.000"), Decimal("280.000"))
        # domain.md rule 2: year-to-date 280 m³, 50 m³ this period → 20 × 3.00 + 30 × 3.60 = 168.00
        assert (feb1.reading_start_m3, feb1.reading_end_m3, feb1.volume_m3) == (
            Decimal("1280.000"), Decimal("1330.000"), Decimal("50.000"))
        assert (feb1.cumulative_before, feb1.cumulative_after) == (Decimal("280.000"), Decimal("330.000"))
        assert (feb1.total, feb1.category, feb1.status, feb1.meter_id) == (
            Decimal("168.00"), "residential", "issued", "M1")
        assert feb1.created_at == NOW
        assert feb1.net_total + feb1.tax_total == feb1.total
        assert feb1.tax_total == Decimal("13.87")  # 168.00 - 168.00 / 1.09, half-up

        assert (feb2.volume_m3, feb2.total, feb2.category, feb2.cumulative_after) == (
            Decimal("100.000"), Decimal("380.00"), "commercial", None)
        assert feb2.net_total + feb2.tax_total == Decimal("380.00")

        lines = [
            (r.tier, r.tariff_version, r.start, r.end, r.volume_m3, r.unit_price, r.amount)
            for r in await conn.execute(
                select(bill_line).where(bill_line.c.bill_id == feb1.id).order_by(bill_line.c.line_no)
            )
        ]
        assert lines == [
            (1, "RES-2025", FEB, MAR, Decimal("20.000"), Decimal("3.00"), Decimal("60.00")),
            (2, "RES-2025", FEB, MAR, Decimal("30.000"), Decimal("3.60"), Decimal("108.00")),
        ]
        flat = [
            (r.tier, r.tariff_version, r.volume_m3, r.amount)
            for r in await conn.execute(select(bill_line).where(bill_line.c.bill_id == feb2.id))
        ]
        assert flat == [(1, "COM-2025", Decimal("100.000"), Decimal("380.00"))]

        events = {
            r.subject: (r.type, r.version, r.lane, orjson.loads(r.data))
            for r in await conn.execute(select(outbox).where(outbox.c.type == "bill.issued").order_by(outbox.c.seq))
        }
    assert len(events) == 2  # one per account; A1 has two
    kind, version, lane, data = events["A2"]
    assert (kind, version, lane) == ("bill.issued", 1, "normal")
    assert data["bill_id"] == feb2.id
    assert (data["total"], data["volume_m3"], data["period_start"], data["period_end"]) == (
        "380.00", "100.000", "2026-02-01", "2026-03-01")
    assert await _counts(engine) == (3, 4, 3)

    # Re-running either period changes nothing.
    again = await _run(engine, FEB, MAR)
    assert (again.bills_issued, again.already_billed, again.bill_ids) == (0, 2, [])
    assert _skips(again) == _skips(february)
    again_jan = await _run(engine, JAN, FEB)
    assert (again_jan.bills_issued, again_jan.already_billed) == (0, 1)
    assert await _counts(engine) == (3, 4, 3)


async def test_without_a_chaining_bill_the_cumulative_starts_at_zero(engine: AsyncEngine) -> None:
    """February billed first: no bill ends on 1 February, so its 50 m³ are all tier 1."""
    february = await _run(engine, FEB, MAR)
    assert february.bills_issued == 2
    async with engine.connect() as conn:
        row = (await conn.execute(select(bill).where(bill.c.account_id == "A1"))).one()
    assert (row.cumulative_before, row.cumulative_after, row.total) == (
        Decimal("0.000"), Decimal("50.000"), Decimal("150.00"))


async def test_a_register_going_backwards_holds_the_bill(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(reading), [{
            "id": "R-back", "meter_id": "M2", "read_at": datetime(2026, 2, 28, 15, 59, 30, tzinfo=UTC),
            "volume_m3": Decimal("400.000"), "source": "manual", "quality": "", "message_id": "msg-back",
        }])
    february = await _run(engine, FEB, MAR)
    assert _skips(february)["A2"] is SkipReason.NEGATIVE_CONSUMPTION
    assert february.bills_issued == 1


def test_a_billing_day_starts_at_local_midnight() -> None:
    assert period_boundary(MAR) == datetime(2026, 2, 28, 16, tzinfo=UTC)


async def test_arguments_are_checked(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        with pytest.raises(ValueError, match="empty period"):
            await run_billing(conn, book=BOOK, period_start=FEB, period_end=FEB, now=NOW)
        with pytest.raises(ValueError, match="timezone-aware"):
            await run_billing(conn, book=BOOK, period_start=JAN, period_end=FEB, now=datetime(2026, 3, 2))
