"""Billing accounts with several meters: one bill per period on the meters' volumes summed (the tiers
are per household), each meter's registers in ``core_bill_meter`` and in ``bill.issued``; a meter
without its registers skips the account with that meter named, one installed inside the period opens
at its installation reading; held readings per meter.

On SQLite and PostgreSQL (the run reads registers differently on each).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from core.billing_run import SkipReason, run_billing
from core.db.tables import outbox, reading
from core.db.tables_billing import bill, bill_meter
from tests.flow.test_billing_run import BOOK, FEB, JAN, MAR, NOW, insert_city

# Local midnights (UTC+8) at the period boundaries: 1 Jan, 1 Feb and 1 Mar 2026.
AT_JAN, AT_FEB, AT_MAR = (datetime(2025, 12, 31, 16, tzinfo=UTC), datetime(2026, 1, 31, 16, tzinfo=UTC),
                          datetime(2026, 2, 28, 16, tzinfo=UTC))

# account: (category, subcategory, meters: (id, installed))
CITY: dict[str, tuple[str, str | None, tuple[tuple[str, date], ...]]] = {
    # a kitchen meter and a water-heater meter, both read every month
    "H1": ("residential", None, (("K1", date(2025, 6, 1)), ("W1", date(2025, 6, 1)))),
    # a second meter installed after February: February is billed on the first alone
    "H2": ("residential", None, (("K2", date(2025, 6, 1)), ("W2", date(2026, 3, 5)))),
    # the second meter's February reading is a spike (held, estimate due): estimated from its average
    "H3": ("residential", None, (("K3", date(2025, 6, 1)), ("W3", date(2025, 6, 1)))),
    # the second meter's February reading is held without an estimate (a clock exception)
    "H4": ("residential", None, (("K4", date(2025, 6, 1)), ("W4", date(2025, 6, 1)))),
    # a water-heater meter installed on 10 February, its installation reading 0: it opens there
    "H5": ("residential", None, (("K5", date(2025, 6, 1)), ("W5", date(2026, 2, 10)))),
    # a restaurant's two lines on the flat commercial price
    "R1": ("non_residential", "commercial", (("RA", date(2025, 6, 1)), ("RB", date(2025, 6, 1)))),
}

# meter, read at, register, quality, flow
READINGS: list[tuple[str, datetime, str, str, str | None]] = [
    # H1: January 200 + 80 = 280 m³; February 30 + 20 = 50 m³ from a cumulative of 280 (domain.md rule 2).
    ("K1", AT_JAN, "1000.000", "", None), ("W1", AT_JAN, "50.000", "", None),
    ("K1", AT_FEB, "1200.000", "", None), ("W1", AT_FEB, "130.000", "", None),
    ("K1", datetime(2026, 2, 27, 2, tzinfo=UTC), "1230.000", "", "flow-k1"),
    ("W1", datetime(2026, 2, 28, 3, tzinfo=UTC), "150.000", "", "flow-w1"),  # the later of the two
    # H2
    ("K2", AT_FEB, "10.000", "", None), ("K2", AT_MAR, "40.000", "", None),
    # H3: W3 used 61 m³ over 61 days before February: 1 m³ a day; its February reading is a spike.
    ("K3", AT_FEB, "500.000", "", None), ("K3", AT_MAR, "540.000", "", None),
    ("W3", datetime(2025, 12, 1, 16, tzinfo=UTC), "100.000", "", None), ("W3", AT_FEB, "161.000", "", None),
    ("W3", datetime(2026, 2, 28, 3, tzinfo=UTC), "9999.000", "held,estimate_due", None),
    # H4
    ("K4", AT_FEB, "1.000", "", None), ("K4", AT_MAR, "2.000", "", None),
    ("W4", AT_FEB, "1.000", "", None), ("W4", AT_MAR, "3.000", "held", None),
    # H5: 30 + 12 m³
    ("K5", AT_FEB, "100.000", "", None), ("K5", AT_MAR, "130.000", "", None),
    ("W5", datetime(2026, 2, 10, 2, tzinfo=UTC), "0.000", "", None), ("W5", AT_MAR, "12.000", "", None),
    # R1: 100 + 25 m³ at 3.80
    ("RA", AT_FEB, "0.000", "", None), ("RA", AT_MAR, "100.000", "", None),
    ("RB", AT_FEB, "0.000", "", None), ("RB", AT_MAR, "25.000", "", None),
]


@pytest.fixture
async def city(engine: AsyncEngine) -> AsyncEngine:
    """conftest's migrated ``engine`` (SQLite, then PostgreSQL) with CITY and READINGS in it."""
    async with engine.begin() as conn:
        await insert_city(
            conn, [(account_id, category, sub, "active") for account_id, (category, sub, _) in CITY.items()],
            [(meter_id, account_id, installed) for account_id, (*_, meters) in CITY.items()
             for meter_id, installed in meters],
            READINGS)
    return engine


async def _run(eng: AsyncEngine, start: date, end: date) -> Any:
    async with eng.begin() as conn:
        return await run_billing(conn, book=BOOK, period_start=start, period_end=end, now=NOW, batch_size=2)


async def test_a_household_with_two_meters_is_billed_once_on_their_sum(city: AsyncEngine) -> None:
    engine = city
    january = await _run(engine, JAN, FEB)
    assert january.bills_issued == 1  # H1; the others have no January registers
    february = await _run(engine, FEB, MAR)
    skipped = {s.account_id: (s.reason, s.meter_id) for s in february.skipped}
    assert skipped == {"H4": (SkipReason.READING_HELD, "W4")}
    assert february.bills_issued == 5

    async with engine.connect() as conn:
        bills = {(r.account_id, r.period_start): r for r in await conn.execute(select(bill))}
        per_meter = {(r.bill_id, r.meter_id): r for r in await conn.execute(select(bill_meter))}
        events = {orjson.loads(r.data)["bill_id"]: (r.correlation_id, orjson.loads(r.data))
                  for r in await conn.execute(select(outbox).where(outbox.c.type == "bill.issued"))}

    jan, feb = bills["H1", JAN], bills["H1", FEB]
    assert (jan.volume_m3, jan.total, jan.cumulative_after) == (Decimal("280.000"), Decimal("840.00"),
                                                                  Decimal("280.000"))
    # 50 m³ from a household cumulative of 280: 20 × 3.00 + 30 × 3.60. Billed apart, neither meter
    # (200 + 30, 80 + 20) would have reached the 300 m³ threshold: 150.00.
    assert (feb.volume_m3, feb.total, feb.cumulative_before, feb.cumulative_after) == (
        Decimal("50.000"), Decimal("168.00"), Decimal("280.000"), Decimal("330.000"))
    assert (feb.meter_id, feb.reading_start_m3, feb.reading_end_m3, feb.quality) == (
        "K1", Decimal("1330.000"), Decimal("1380.000"), "actual")
    assert {m: (r.reading_start_m3, r.reading_end_m3, r.volume_m3, r.estimated)
            for (b, m), r in per_meter.items() if b == feb.id} == {
        "K1": (Decimal("1200.000"), Decimal("1230.000"), Decimal("30.000"), False),
        "W1": (Decimal("130.000"), Decimal("150.000"), Decimal("20.000"), False)}
    flow, data = events[feb.id]
    assert flow == "flow-w1"  # the latest closing reading's flow
    assert data["meter_id"] == "K1"
    assert data["volume_m3"] == "50.000"
    assert data["estimated"] is False
    assert [(m["meter_id"], m["volume_m3"]) for m in data["meters"]] == [("K1", "30.000"), ("W1", "20.000")]

    h2 = bills["H2", FEB]  # W2 was installed after the period: a one-meter bill
    assert (h2.volume_m3, h2.meter_id) == (Decimal("30.000"), "K2")
    assert [m for (b, m) in per_meter if b == h2.id] == []
    assert events[h2.id][1]["meters"] is None

    h5 = bills["H5", FEB]  # W5 installed inside the period opens at its installation reading
    assert h5.volume_m3 == Decimal("42.000")
    assert (per_meter[h5.id, "W5"].reading_start_m3, per_meter[h5.id, "W5"].volume_m3) == (
        Decimal("0.000"), Decimal("12.000"))

    h3 = bills["H3", FEB]  # K3 40 m³ read; W3 estimated at 1 m³ a day for 28 days
    assert (h3.volume_m3, h3.quality) == (Decimal("68.000"), "estimated")
    assert per_meter[h3.id, "W3"].estimated
    assert per_meter[h3.id, "W3"].volume_m3 == Decimal("28.000")
    assert not per_meter[h3.id, "K3"].estimated
    assert events[h3.id][1]["estimated"] is True
    assert february.estimated_bill_ids == [h3.id]

    r1 = bills["R1", FEB]
    assert (r1.volume_m3, r1.total, r1.category, r1.cumulative_after) == (
        Decimal("125.000"), Decimal("475.00"), "commercial", None)

    async with engine.connect() as conn:  # the estimate is stored: March opens from it
        estimated = (await conn.execute(select(reading.c.meter_id, reading.c.volume_m3, reading.c.source)
                                        .where(reading.c.id == f"E{h3.id}-1"))).one()
    assert tuple(estimated) == ("W3", Decimal("189.000"), "estimate")

    again = await _run(engine, FEB, MAR)
    assert (again.bills_issued, again.already_billed) == (0, 5)
    async with engine.connect() as conn:
        assert len((await conn.execute(select(bill_meter))).all()) == len(per_meter)
