"""Households and their uplift approvals (domain.md rule 4) stored and billed, on SQLite and PostgreSQL.

The tariff is the shipped ``config/tariffs.toml``: RES-2025, annual thresholds 480 / 960 m³ at 2.40 /
2.88 / 3.60 yuan, uplift 120 m³ per resident above 4. A household of 6 with an approval therefore has
thresholds 720 / 1200 on the days the approval covers. Every expected amount below is worked out by
hand from those figures (the comments show the sums), not by the billing code.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from ulid import ULID

from core.accounts import (
    Billing,
    Category,
    CustomerIn,
    PremisesIn,
    Privacy,
    Subcategory,
    household_for_period,
    id_check_digit,
    open_account,
    set_household,
)
from core.billing import Household, TariffCategory, UpliftApproval
from core.billing_run import run_billing
from core.billing_run.single import OffCycleBill, bill_account
from core.catalogue.messages import MeterReading, ReadingSource
from core.db.tables import reading
from core.db.tables_accounts import account_household
from core.db.tables_billing import bill, bill_line, meter
from core.db.tables_payments import prepaid_entry
from core.errors import Conflict, DomainRejected
from core.handlers.readings import record_reading
from core.messages import Incoming
from core.prepaid import PrepaidMeters, PrepaidSettings
from core.privacy import KeyRing, generate_key
from core.readings import ReadingsSettings
from hub.billing import load_tariffs

D = Decimal
BOOK = load_tariffs(Path(__file__).resolve().parents[2] / "config/tariffs.toml")
FEB, MAR = date(2026, 2, 1), date(2026, 3, 1)
FEB_OPEN = datetime(2026, 1, 31, 16, tzinfo=UTC)  # local midnight, 1 February
FEB_CLOSE = datetime(2026, 2, 28, 16, tzinfo=UTC)  # local midnight, 1 March
NOW = datetime(2026, 3, 2, 1, tzinfo=UTC)
ID_NUMBER = "33060219900101123" + id_check_digit("33060219900101123")
HOLDER = CustomerIn(name="王五", phone="13812345678", id_number=ID_NUMBER)
HOME = PremisesIn(address="绍兴市越城区解放北路88号3幢201室", district="yuecheng", lat=30.00, lon=120.58)
SIX = 6  # 2 above 4 → thresholds + 240 m³
ALWAYS = UpliftApproval(reference="UP-2026-001", valid_from=date(2026, 1, 1))
FROM_15TH = UpliftApproval(reference="UP-2026-002", valid_from=date(2026, 2, 15))
EXPIRED = UpliftApproval(reference="UP-2025-009", valid_from=date(2025, 1, 1), valid_until=date(2026, 1, 1))


@pytest.fixture
def privacy() -> Privacy:
    return Privacy.from_ring(KeyRing.from_settings({"k1": generate_key()}, current="k1"))


async def _account(eng: AsyncEngine, privacy: Privacy, meter_id: str, *, billing: Billing = "postpaid",
                   category: Category = "residential", subcategory: Subcategory | None = None) -> str:
    """An account opened a year ago with one meter that read 0 at the start of February and 1000 at its
    end (1000 m³ in February)."""
    async with eng.begin() as conn:
        view = await open_account(conn, privacy, f"req-{ULID()}", HOLDER, HOME, category, billing,
                                  subcategory=subcategory, opened_at=datetime(2025, 3, 1, tzinfo=UTC))
        await conn.execute(insert(meter).values(id=meter_id, account_id=view.account_id, model="G4",
                                                installed_at=date(2025, 3, 1), valve_state="open",
                                                prepaid_balance=D("0.00")))
        await conn.execute(insert(reading), [
            {"id": f"{meter_id}-{n}", "meter_id": meter_id, "read_at": at, "volume_m3": D(v), "source": "manual",
             "quality": "", "message_id": f"msg-{meter_id}-{n}"}
            for n, (at, v) in enumerate(((FEB_OPEN, "0.000"), (FEB_CLOSE, "1000.000")))])
    return view.account_id


async def _set(eng: AsyncEngine, privacy: Privacy, account_id: str, household: Household, *,
               request_id: str | None = None, effective_from: date | None = None,
               now: datetime = datetime(2026, 1, 5, tzinfo=UTC)) -> Any:
    async with eng.begin() as conn:
        return await set_household(conn, privacy, request_id or f"hh-{ULID()}", account_id, household,
                                   recorded_by="cs-0451", effective_from=effective_from, now=now)


async def _bills(eng: AsyncEngine) -> dict[str, tuple[Decimal, list[tuple[int, Decimal, Decimal]]]]:
    """Per account: the bill's total and its lines (tier, volume, amount) in order."""
    async with eng.connect() as conn:
        bills = {r.id: r for r in await conn.execute(select(bill))}
        lines = list(await conn.execute(select(bill_line).order_by(bill_line.c.bill_id, bill_line.c.line_no)))
    return {b.account_id: (D(b.total), [(ln.tier, D(ln.volume_m3), D(ln.amount)) for ln in lines
                                         if ln.bill_id == bill_id])
            for bill_id, b in bills.items()}


# ---- the monthly run ---------------------------------------------------------------------------------


async def test_the_run_bills_approved_households_with_the_uplift_and_the_others_without(
        engine: AsyncEngine, privacy: Privacy) -> None:
    plain = await _account(engine, privacy, "M-PLAIN")
    big_unapproved = await _account(engine, privacy, "M-BIG")
    approved = await _account(engine, privacy, "M-UP")
    starts_15th = await _account(engine, privacy, "M-15")
    expired = await _account(engine, privacy, "M-OLD")
    await _set(engine, privacy, big_unapproved, Household(residents=SIX))
    await _set(engine, privacy, approved, Household(residents=SIX, approval=ALWAYS))
    await _set(engine, privacy, starts_15th, Household(residents=SIX, approval=FROM_15TH))
    await _set(engine, privacy, expired, Household(residents=SIX, approval=EXPIRED))

    async with engine.begin() as conn:
        result = await run_billing(conn, book=BOOK, period_start=FEB, period_end=MAR, now=NOW, batch_size=2)
    assert result.bills_issued == 5
    bills = await _bills(engine)

    # No uplift: 480 × 2.40 = 1152.00, 480 × 2.88 = 1382.40, 40 × 3.60 = 144.00 → 2678.40.
    no_uplift = (D("2678.40"), [(1, D("480.000"), D("1152.00")), (2, D("480.000"), D("1382.40")),
                                (3, D("40.000"), D("144.00"))])
    assert bills[plain] == no_uplift
    assert bills[big_unapproved] == no_uplift  # six residents but no approval: the plain thresholds
    assert bills[expired] == no_uplift  # the approval ended before February
    # Approved all month, thresholds 720 / 1200: 720 × 2.40 = 1728.00, 280 × 2.88 = 806.40 → 2534.40.
    assert bills[approved] == (D("2534.40"), [(1, D("720.000"), D("1728.00")), (2, D("280.000"), D("806.40"))])
    # Approved from 15 February: 14 + 14 days, 500 m³ each. Before: 480 × 2.40 = 1152.00, 20 × 2.88 = 57.60;
    # from the 15th (cumulative 500, thresholds 720): 220 × 2.40 = 528.00, 280 × 2.88 = 806.40 → 2544.00.
    assert bills[starts_15th] == (D("2544.00"), [
        (1, D("480.000"), D("1152.00")), (2, D("20.000"), D("57.60")),
        (1, D("220.000"), D("528.00")), (2, D("280.000"), D("806.40"))])
    async with engine.connect() as conn:
        cumulative = await conn.scalar(select(bill.c.cumulative_after).where(bill.c.account_id == starts_15th))
    assert D(cumulative) == D("1000.000")


async def test_a_household_recorded_later_does_not_change_earlier_periods(engine: AsyncEngine,
                                                                          privacy: Privacy) -> None:
    """The history: the household of a period is the latest recorded one in force before it ends."""
    acc = await _account(engine, privacy, "M-H")
    await _set(engine, privacy, acc, Household(residents=SIX, approval=ALWAYS))
    # Recorded later, from 1 March: the approval withdrawn (no approval) and five residents.
    await _set(engine, privacy, acc, Household(residents=5), effective_from=MAR,
               now=datetime(2026, 2, 20, tzinfo=UTC))
    async with engine.connect() as conn:
        february = await household_for_period(conn, acc, FEB, MAR)
        march = await household_for_period(conn, acc, MAR, date(2026, 4, 1))
        january = await household_for_period(conn, acc, date(2026, 1, 1), FEB)
        december = await household_for_period(conn, acc, date(2025, 12, 1), date(2026, 1, 1))
    assert february == Household(residents=SIX, approval=ALWAYS)
    assert march == Household(residents=5)
    assert january == february  # in force from the approval's first day (recorded on 5 January)
    assert december is None
    async with engine.begin() as conn:
        result = await run_billing(conn, book=BOOK, period_start=FEB, period_end=MAR, now=NOW)
    assert result.total_billed == D("2534.40")  # February keeps the uplift (see the run test's sums)


async def test_an_off_cycle_bill_uses_the_stored_household(engine: AsyncEngine, privacy: Privacy) -> None:
    """What close and transfer bill through (``bill_account``): the approval from the 15th splits too."""
    acc = await _account(engine, privacy, "M-OFF")
    await _set(engine, privacy, acc, Household(residents=SIX, approval=FROM_15TH))
    async with engine.begin() as conn:
        issued = await bill_account(conn, BOOK, account_id=acc, category=TariffCategory.RESIDENTIAL,
                                    meter_id="M-OFF", period_start=FEB, period_end=MAR, opening_m3=D("0.000"),
                                    closing_m3=D("1000.000"), chained=None, now=NOW)
    assert isinstance(issued, OffCycleBill)
    assert issued.total == D("2544.00")  # as the run's split (sums in the run test)


# ---- recording --------------------------------------------------------------------------------------


async def test_setting_is_idempotent_validated_and_shown_in_the_view(engine: AsyncEngine,
                                                                     privacy: Privacy) -> None:
    acc = await _account(engine, privacy, "M-SET")
    view = await _set(engine, privacy, acc, Household(residents=SIX, approval=ALWAYS), request_id="hh-1")
    assert view.household is not None
    assert (view.household.residents, view.household.approval, view.household.effective_from,
            view.household.recorded_by) == (SIX, ALWAYS, date(2026, 1, 1), "cs-0451")
    again = await _set(engine, privacy, acc, Household(residents=SIX, approval=ALWAYS), request_id="hh-1")
    assert again == view
    with pytest.raises(Conflict):
        await _set(engine, privacy, acc, Household(residents=7, approval=ALWAYS), request_id="hh-1")
    # no approval: from today (local), 5 January
    plain = await _set(engine, privacy, acc, Household(residents=3))
    assert plain.household is not None
    assert (plain.household.residents, plain.household.approval, plain.household.effective_from) == (
        3, None, date(2026, 1, 5))
    async with engine.connect() as conn:
        rows = await conn.scalar(select(func.count()).select_from(account_household)
                                 .where(account_household.c.account_id == acc))
    assert rows == 2  # the replay recorded nothing; history kept

    shop = await _account(engine, privacy, "M-SHOP", category="non_residential", subcategory="commercial")
    refusals: list[tuple[str, Household, date | None]] = [
        (shop, Household(residents=SIX), None),  # the uplift is residential
        ("NO-SUCH-ACCOUNT", Household(residents=SIX), None),
        (acc, Household(residents=SIX, approval=EXPIRED), date(2026, 2, 1)),  # ends before it takes effect
    ]
    for account_id, household, effective in refusals:
        with pytest.raises(DomainRejected):
            await _set(engine, privacy, account_id, household, effective_from=effective)
    with pytest.raises(DomainRejected):
        async with engine.begin() as conn:
            await set_household(conn, privacy, " ", acc, Household(residents=2), recorded_by="cs")
    with pytest.raises(ValueError, match="valid_until must be after valid_from"):  # the model refuses it
        UpliftApproval(reference="X", valid_from=date(2026, 2, 1), valid_until=date(2026, 2, 1))


# ---- prepaid ----------------------------------------------------------------------------------------


T0 = datetime(2026, 6, 1, 16, tzinfo=UTC)  # local midnight, 2 June
DAY = timedelta(days=1)
DAILY = D("1.200")
LAST = D(100) + 39 * DAILY


async def _prepaid(eng: AsyncEngine, privacy: Privacy, meter_id: str) -> str:
    """A prepaid residential account charged up to T0 with 479 m³ used in the 2026 cycle, read daily before."""
    async with eng.begin() as conn:
        view = await open_account(conn, privacy, f"req-{ULID()}", HOLDER, HOME, "residential", "prepaid",
                                  opened_at=T0 - 400 * DAY)
        await conn.execute(insert(meter).values(id=meter_id, account_id=view.account_id, model="G2.5",
                                                installed_at=date(2025, 1, 1), valve_state="open",
                                                prepaid_balance=D("100.00")))
        await conn.execute(update(meter).where(meter.c.id == meter_id).values(
            prepaid_read_at=T0, prepaid_read_m3=LAST, prepaid_cycle_start=date(2026, 1, 1),
            prepaid_cycle_m3=D("479.000")))
        await conn.execute(insert(reading), [
            {"id": str(ULID()), "meter_id": meter_id, "read_at": T0 - (39 - n) * DAY, "volume_m3": D(100) + n * DAILY,
             "source": "ctwing", "quality": "valid", "message_id": f"seed-{ULID()}"}
            for n in range(40)])
    return view.account_id


async def test_prepaid_deduction_uses_the_approved_household(engine: AsyncEngine, privacy: Privacy) -> None:
    await _prepaid(engine, privacy, "P-PLAIN")
    approved = await _prepaid(engine, privacy, "P-UP")
    await _set(engine, privacy, approved, Household(residents=SIX, approval=ALWAYS))
    items = []
    for meter_id in ("P-PLAIN", "P-UP"):
        mid = str(ULID())
        data = MeterReading(meter_id=meter_id, read_at=T0 + DAY, volume_m3=LAST + DAILY, source=ReadingSource.CTWING)
        items.append(Incoming(mid, "meter.reading", meter_id, f"corr-{mid}", data))
    async with engine.begin() as conn:
        await record_reading(conn, items, settings=ReadingsSettings(),
                             prepaid=PrepaidMeters(PrepaidSettings(enabled=True, low_balance_yuan=None,
                                                                   low_balance_days=None),
                                                   BOOK, ReadingsSettings().rules),
                             now=T0 + DAY + timedelta(minutes=5))
    async with engine.connect() as conn:
        entries = {r.meter_id: r for r in await conn.execute(
            select(prepaid_entry).where(prepaid_entry.c.kind == "deduction"))}
    # Plain: 479 used, 1.200 more: 1.000 × 2.40 + 0.200 × 2.88 = 2.976 → 2.98.
    assert D(entries["P-PLAIN"].amount).quantize(D("0.01")) == D("-2.98")
    assert entries["P-PLAIN"].detail == "RES-2025 t1 1.000 m³ × 2.40; RES-2025 t2 0.200 m³ × 2.88"
    # Approved (threshold 720): 1.200 × 2.40 = 2.88.
    assert D(entries["P-UP"].amount).quantize(D("0.01")) == D("-2.88")
    assert entries["P-UP"].detail == "RES-2025 t1 1.200 m³ × 2.40"
