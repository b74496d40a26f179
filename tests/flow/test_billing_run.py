"""Billing runs against a real database, on SQLite and on PostgreSQL (migrated with Alembic).

A small city: a residential account whose second period crosses a tier (domain.md's worked example,
280 m³ then 50 m³ → 168.00 yuan), a commercial account on a flat price, accounts with missing
readings or two meters each missing a register, a closed account and an account with no meter.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.billing import FlatTariff, ResidentialTariff, TariffBook, TariffCategory, bill_period
from core.billing_run import BillingRunResult, SkipReason, period_boundary, run_billing
from core.billing_run.batch import RunPlan, price_batch, write_batch
from core.db.tables import outbox, reading
from core.db.tables_accounts import account, customer, premises
from core.db.tables_billing import bill, bill_line, meter
from tests.flow.conftest import fresh_postgres_database, migrated_engine

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
    async with migrated_engine(url, drop) as eng:
        async with eng.begin() as conn:
            await _build_city(conn)
        yield eng


async def insert_city(conn: Any, accounts: Sequence[tuple[str, str, str | None, str]],
                      meters: Sequence[tuple[str, str, date]],
                      readings: Sequence[tuple[str, datetime, str, str, str | None]]) -> None:
    """One customer at one premises holding ``accounts`` (id, category, subcategory, status, all
    postpaid), their ``meters`` (id, account, installed on) and ``readings`` (meter, time, register,
    quality, flow)."""
    await conn.execute(insert(customer), [{
        "id": "C1", "name_enc": "x", "phone_enc": "x", "id_number_enc": "x", "phone_bidx": "p",
        "id_number_bidx": "i", "created_at": OPENED,
    }])
    await conn.execute(insert(premises), [{
        "id": "P1", "address_enc": "x", "district": "yuecheng", "lat": 30.0, "lon": 120.58, "created_at": OPENED,
    }])
    await conn.execute(insert(account), [
        {"id": account_id, "account_number": f"SX{n:08d}", "category": category, "subcategory": sub,
         "billing": "postpaid", "status": status, "premises_id": "P1", "customer_id": "C1", "opened_at": OPENED}
        for n, (account_id, category, sub, status) in enumerate(accounts)
    ])
    await conn.execute(insert(meter), [
        {"id": meter_id, "account_id": account_id, "model": "G2.5", "installed_at": installed,
         "replace_by": installed.replace(year=installed.year + 10), "valve_state": "open",
         "prepaid_balance": Decimal("0.00")}
        for meter_id, account_id, installed in meters
    ])
    await conn.execute(insert(reading), [
        {"id": f"R{n}", "meter_id": m, "read_at": at, "volume_m3": Decimal(v), "source": "manual",
         "quality": quality, "message_id": f"msg-{n}", "correlation_id": flow}
        for n, (m, at, v, quality, flow) in enumerate(readings)
    ])


async def _build_city(conn: Any) -> None:
    await insert_city(
        conn, [(account_id, category, sub, status) for account_id, (category, sub, status, _) in CITY.items()],
        [(meter_id, account_id, date(2025, 6, 1)) for account_id, (*_, meters) in CITY.items() for meter_id in meters],
        [(m, at, v, "", None) for m, at, v in READINGS])
    await conn.execute(insert(meter), [{  # a spare meter in stock, on no account
        "id": "M99", "account_id": None, "model": "G4", "installed_at": date(2025, 6, 1), "replace_by": None,
        "valve_state": "unknown", "prepaid_balance": Decimal("0.00"),
    }])


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
        # two meters, each with half its registers (an exchange recorded without them): the first named
        "A7": SkipReason.NO_CLOSING_READING,
    }
    assert [s.meter_id for s in january.skipped if s.account_id == "A7"] == ["M7a"]

    february = await _run(engine, FEB, MAR)
    assert february.bills_issued == 2
    assert february.already_billed == 0
    assert february.total_billed == Decimal("548.00")
    assert _skips(february) == {
        "A3": SkipReason.NO_OPENING_READING,
        "A4": SkipReason.NO_CLOSING_READING,
        "A7": SkipReason.NO_CLOSING_READING,
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


# --- the run's fast path against the reference calculation ---------------------------------------------

CHANGING = TariffBook(
    versions=(
        *BOOK.versions,
        ResidentialTariff(  # a price change inside the period that crosses the cycle start
            version="RES-2025-12", effective_from=date(2025, 12, 20),
            thresholds_m3=(Decimal(300), Decimal(600)), prices=(Decimal("3.10"), Decimal("3.75"), Decimal("4.65")),
        ),
    )
)
PERIODS = [(date(2025, 1, 1), date(2025, 11, 15)), (date(2025, 11, 15), date(2025, 12, 15)),
           (date(2025, 12, 15), date(2026, 1, 15))]
"""The cycle to date, a month, and a month across the cycle start (1 January) with a price change."""


RandomCity = dict[str, tuple[str, str | None, list[Decimal]]]
"""Account id → (category, subcategory, the register at each period boundary)."""


async def _random_city(conn: Any, rng: random.Random, accounts: int) -> RandomCity:
    """Accounts with one meter each (for the small city's customer and premises) and a reading shortly
    before every period boundary (local time)."""
    city: RandomCity = {}
    for n in range(accounts):
        category, sub = rng.choice([("residential", None)] * 4 + [("non_residential", "commercial"),
                                                                  ("non_residential", "industrial"),
                                                                  ("non_residential", "heating")])
        register = Decimal(rng.randrange(0, 5_000_000)).scaleb(-3)
        registers = [register]
        for _ in PERIODS:  # up to 900 m³ a period: tier splits, and whole periods in tier 3
            register += Decimal(rng.choice([0, rng.randrange(0, 900_000), rng.randrange(0, 60_000)])).scaleb(-3)
            registers.append(register)
        city[f"R{n:03d}"] = (category, sub, registers)
    await conn.execute(insert(account), [
        {"id": aid, "account_number": f"SXR{n:08d}", "category": category, "subcategory": sub, "billing": "postpaid",
         "status": "active", "premises_id": "P1", "customer_id": "C1", "opened_at": OPENED}
        for n, (aid, (category, sub, _)) in enumerate(city.items())
    ])
    await conn.execute(insert(meter), [
        {"id": f"M{aid}", "account_id": aid, "model": "G2.5", "installed_at": date(2024, 1, 1), "replace_by": None,
         "valve_state": "open", "prepaid_balance": Decimal("0.00")} for aid in city
    ])
    boundaries = [PERIODS[0][0], *(end for _, end in PERIODS)]
    await conn.execute(insert(reading), [
        {"id": f"X{aid}{k}", "meter_id": f"M{aid}", "message_id": f"x-{aid}-{k}", "source": "manual", "quality": "",
         "read_at": period_boundary(day) - timedelta(minutes=rng.randrange(1, 600)), "volume_m3": registers[k]}
        for aid, (_, _, registers) in city.items() for k, day in enumerate(boundaries)
    ])
    return city


async def test_every_bill_equals_the_reference_calculation(engine: AsyncEngine) -> None:
    """Random accounts over three chained periods (tier splits, a cycle crossing, a price change): every
    stored bill and line equals ``bill_period`` fed with the account's volume and the cumulative the
    reference itself carried from the previous period."""
    rng = random.Random(20251115)
    async with engine.begin() as conn:
        await conn.execute(delete(reading))  # only the random city's meters have readings now
        city = await _random_city(conn, rng, 60)
    carried: dict[str, Decimal] = {}
    splits = crossings = 0
    for start, end in PERIODS:
        async with engine.begin() as conn:
            result = await run_billing(conn, book=CHANGING, period_start=start, period_end=end, now=NOW, batch_size=7)
        async with engine.connect() as conn:
            bills = {r.account_id: r for r in await conn.execute(
                select(bill).where(bill.c.period_start == start, bill.c.period_end == end))}
            lines: dict[str, list[tuple[Any, ...]]] = {}
            for r in await conn.execute(select(bill_line).order_by(bill_line.c.bill_id, bill_line.c.line_no)):
                lines.setdefault(r.bill_id, []).append(
                    (r.tier, r.tariff_version, r.cycle_start, r.start, r.end, r.volume_m3, r.unit_price, r.amount,
                     r.vat_rate))
        heating = {aid for aid, (_, sub, _) in city.items() if sub == "heating"}
        assert {s.account_id: s.reason for s in result.skipped if s.account_id in city} == dict.fromkeys(
            heating, SkipReason.NO_TARIFF)
        for aid, (category, sub, registers) in city.items():
            if aid in heating:
                assert aid not in bills
                continue
            k = PERIODS.index((start, end))
            volume = registers[k + 1] - registers[k]
            expected = bill_period(CHANGING, TariffCategory(sub or category), start, end, volume,
                                   cumulative_before=carried.get(aid, Decimal("0.000")))
            stored = bills[aid]
            assert (stored.volume_m3, stored.total, stored.net_total, stored.tax_total, stored.cumulative_before,
                    stored.cumulative_after, stored.reading_start_m3, stored.reading_end_m3) == (
                expected.volume_m3, expected.total, expected.net_total, expected.tax_total,
                expected.cumulative_before, expected.cumulative_after, registers[k], registers[k + 1])
            assert lines.get(stored.id, []) == [
                (x.tier, x.tariff_version, x.cycle_start, x.start, x.end, x.volume_m3, x.unit_price, x.amount,
                 x.vat_rate) for x in expected.lines]
            splits += len({x.tier for x in expected.lines}) > 1
            crossings += len({x.cycle_start for x in expected.lines}) > 1
            if expected.cumulative_after is not None:
                carried[aid] = expected.cumulative_after
    assert splits >= 10
    assert crossings >= 10


async def test_a_run_that_loses_a_race_writes_only_what_it_inserted(engine: AsyncEngine) -> None:
    """Another run bills A1 between this run's read and its write: this run counts A1 as already
    billed and writes lines and an event only for the bill it really inserted (A2)."""
    plan = RunPlan(BOOK, FEB, MAR, period_boundary(FEB), period_boundary(MAR), NOW)
    async with engine.begin() as conn:
        rows = list((await conn.execute(plan.batch_query("", 10, dialect=conn.dialect.name))).all())
        priced = price_batch(plan, rows)
        assert sorted(row[1] for row in priced.bills) == ["A1", "A2"]
        await conn.execute(insert(bill).values(
            id="OTHER-RUN", account_id="A1", meter_id="M1", period_start=FEB, period_end=MAR,
            reading_start_m3=Decimal(0), reading_end_m3=Decimal(0), volume_m3=Decimal(0), total=Decimal(0),
            net_total=Decimal(0), tax_total=Decimal(0), cumulative_before=Decimal(0), category="residential",
            status="issued", created_at=NOW))
        result = BillingRunResult(FEB, MAR)
        await write_batch(conn, priced, result)
    a2 = next(row[0] for row in priced.bills if row[1] == "A2")
    assert (result.bills_issued, result.already_billed, result.bill_ids) == (1, 1, [a2])
    assert result.total_billed == Decimal("380.00")
    async with engine.connect() as conn:
        assert {r.bill_id for r in await conn.execute(select(bill_line))} == {a2}
        assert [r.subject for r in await conn.execute(select(outbox))] == ["A2"]
        assert {r.id for r in await conn.execute(select(bill))} == {"OTHER-RUN", a2}


async def test_jit_is_off_during_a_run_and_as_before_after_it(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.billing_run.run as run_module

    seen: list[str] = []

    async def observed(conn: Any, priced: Any, result: BillingRunResult) -> None:
        seen.append(str(await conn.scalar(text("SHOW jit"))))
        await write_batch(conn, priced, result)

    monkeypatch.setattr(run_module, "write_batch", observed)
    url, drop = await fresh_postgres_database(postgres_url)
    async with migrated_engine(url, drop) as eng, eng.begin() as conn:
        await _build_city(conn)
        await conn.execute(text("SET LOCAL jit = on"))
        result = await run_billing(conn, book=BOOK, period_start=JAN, period_end=FEB, now=NOW, batch_size=2)
        seen.append(str(await conn.scalar(text("SHOW jit"))))
    assert result.batches == 3
    assert seen == ["off", "off", "off", "on"]


async def test_prepaid_accounts_are_never_billed(engine: AsyncEngine) -> None:
    """A prepaid account pays as it uses (core.prepaid charges each reading): a run leaves it alone."""
    async with engine.begin() as conn:
        await conn.execute(insert(account), [{
            "id": "A8", "account_number": "SX00000099", "category": "residential", "subcategory": None,
            "billing": "prepaid", "status": "active", "premises_id": "P1", "customer_id": "C1", "opened_at": OPENED}])
        await conn.execute(insert(meter), [{
            "id": "M8", "account_id": "A8", "model": "G2.5", "installed_at": date(2025, 6, 1),
            "replace_by": date(2035, 6, 1), "valve_state": "open", "prepaid_balance": Decimal("50.00")}])
        await conn.execute(insert(reading), [
            {"id": f"R8-{n}", "meter_id": "M8", "read_at": at, "volume_m3": Decimal(v), "source": "manual",
             "quality": "", "message_id": f"msg8-{n}"}
            for n, (at, v) in enumerate([(datetime(2026, 1, 31, 16, tzinfo=UTC), "10.000"),
                                         (datetime(2026, 2, 28, 16, tzinfo=UTC), "40.000")])])
    result = await _run(engine, FEB, MAR)
    assert "A8" not in {s.account_id for s in result.skipped}
    async with engine.connect() as conn:
        billed = set((await conn.execute(select(bill.c.account_id))).scalars())
    assert "A8" not in billed
    assert billed  # the postpaid accounts were billed
