"""Close (销户) and transfer (过户) with final bills and settlement, on SQLite and PostgreSQL.

Every amount below is worked out by hand from the tariff (tiers 300/600 m³ at 3.00/3.60/4.50 yuan, VAT
9 % included), not by the code under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.accounts import (
    AccountView,
    Billing,
    CustomerIn,
    PremisesIn,
    Privacy,
    get_account,
    id_check_digit,
    open_account,
)
from core.billing import ResidentialTariff, TariffBook
from core.billing_run import run_billing
from core.catalogue.messages import PaymentChannel, PaymentReceived
from core.db.tables import outbox, reading
from core.db.tables_accounts import account, request
from core.db.tables_billing import bill, bill_line, bill_meter, meter
from core.db.tables_payments import allocation, credit, payment, prepaid_entry
from core.db.tables_workorders import work_order
from core.errors import DomainRejected
from core.lifecycle import AccountClosed, ArrearsOutstanding, close_account, transfer_account
from core.messages import Incoming
from core.meters import install_meter
from core.payments import Payments, PaymentSettings
from core.privacy import KeyRing, generate_key

CST = timezone(timedelta(hours=8))
ALICE = CustomerIn(name="张三丰", phone="13812345678",
                   id_number="33060219900101123" + id_check_digit("33060219900101123"))
BOB = CustomerIn(name="李四", phone="13900001111", id_number="33062119850615004" + id_check_digit("33062119850615004"))
HOME = PremisesIn(address="绍兴市越城区解放北路88号3幢201室", district="yuecheng", lat=30.00, lon=120.58)
RES_2025 = ResidentialTariff(version="RES-2025", effective_from=date(2025, 1, 1),
                             thresholds_m3=(Decimal(300), Decimal(600)),
                             prices=(Decimal("3.00"), Decimal("3.60"), Decimal("4.50")))
BOOK = TariffBook(versions=(RES_2025,))
CHANGING = TariffBook(versions=(RES_2025, ResidentialTariff(
    version="RES-2025-12", effective_from=date(2025, 12, 20), thresholds_m3=(Decimal(300), Decimal(600)),
    prices=(Decimal("3.10"), Decimal("3.75"), Decimal("4.65")))))
"""A price change on 20 December, inside the period that crosses the cycle start (1 January)."""
METER = "SX-G25-0001"
_seq = itertools.count()


@pytest.fixture
def privacy() -> Privacy:
    return Privacy.from_ring(KeyRing.from_settings({"k1": generate_key()}, current="k1"))


async def _read(conn: AsyncConnection, at: datetime, value: str, meter_id: str = METER) -> None:
    rid = f"R{next(_seq):05d}"
    await conn.execute(insert(reading).values(id=rid, meter_id=meter_id, read_at=at, volume_m3=Decimal(value),
                                              source="manual", quality="valid", message_id=rid))


async def _pay(conn: AsyncConnection, privacy: Privacy, account_id: str, amount: str, at: datetime) -> None:
    n = next(_seq)
    data = PaymentReceived(channel=PaymentChannel.WECHAT, transaction_id=f"wx{n}", out_trade_no=f"o{n}",
                           account_id=account_id, amount=Decimal(amount), paid_at=at)
    await Payments(PaymentSettings(), privacy).record(
        conn, [Incoming(f"pay-{n}", "payment.received", account_id, f"pay-{n}", data)], at)


async def _account(engine: AsyncEngine, privacy: Privacy, opened: datetime, billing: Billing = "postpaid",
                   readings: tuple[tuple[datetime, str], ...] = ()) -> AccountView:
    async with engine.begin() as conn:
        view = await open_account(conn, privacy, f"open-{next(_seq)}", ALICE, HOME, "residential", billing,
                                  opened_at=opened)
        await install_meter(conn, METER, view.account_id, model="G2.5", installed_at=date(2024, 1, 1))
        for at, value in readings:
            await _read(conn, at, value)
    return view


async def _worked_example(engine: AsyncEngine, privacy: Privacy, paid: str | None) -> AccountView:
    """Opened at the cycle start with the register at 1000 m³; a bill for January-May of 280 m³
    (280 × 3.00 = 840.00, cumulative 280), paid with ``paid`` (the rest is credit)."""
    view = await _account(engine, privacy, datetime(2026, 1, 1, 0, tzinfo=CST), readings=(
        (datetime(2025, 12, 31, 20, tzinfo=CST), "1000"), (datetime(2026, 5, 31, 12, tzinfo=CST), "1280")))
    async with engine.begin() as conn:
        result = await run_billing(conn, book=BOOK, period_start=date(2026, 1, 1), period_end=date(2026, 6, 1),
                                   now=datetime(2026, 6, 1, 2, tzinfo=UTC))
        assert result.total_billed == Decimal("840.00")
        if paid is not None:
            await _pay(conn, privacy, view.account_id, paid, datetime(2026, 6, 5, 9, tzinfo=CST))
    return view


async def _count(conn: AsyncConnection, table: Any) -> int:
    return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def _counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        return {t.name: await _count(conn, t) for t in (bill, bill_line, reading, outbox, allocation, credit, payment,
                                                        request, prepaid_entry)}


CLOSING = datetime(2026, 6, 20, 10, tzinfo=CST)


# --- close -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("paid", "applied", "owed", "left"), [
    (None, "0.00", "1008.00", "0.00"),    # nothing paid: 840.00 + 168.00 owed at the counter
    ("840.00", "0.00", "168.00", "0.00"),  # the first bill paid exactly: no credit
    ("940.00", "100.00", "68.00", "0.00"),  # credit 100.00 pays part of the final bill
    ("1008.00", "168.00", "0.00", "0.00"),  # credit 168.00 covers it exactly
    ("1040.00", "168.00", "0.00", "32.00"),  # credit 200.00: 32.00 left over, due back
])
async def test_close_bills_the_worked_example_and_settles(
    engine: AsyncEngine, privacy: Privacy, paid: str | None, applied: str, owed: str, left: str
) -> None:
    view = await _worked_example(engine, privacy, paid)
    async with engine.begin() as conn:
        closed = await close_account(conn, privacy, "close-1", view.account_id, Decimal("1330"), CLOSING, book=BOOK)

    # domain.md rule 2: year-to-date 280 m³, 50 m³ this period → 20 × 3.00 + 30 × 3.60 = 168.00
    s = closed.settlement
    assert s.bill is not None
    assert (s.bill.period_start, s.bill.period_end) == (date(2026, 6, 1), date(2026, 6, 21))
    assert (s.bill.reading_start_m3, s.bill.reading_end_m3, s.bill.volume_m3) == (
        Decimal("1280.000"), Decimal("1330.000"), Decimal("50.000"))
    assert s.bill.total == Decimal("168.00")
    assert (s.credit_applied, s.owed, s.credit_left, s.refund_due) == (
        Decimal(applied), Decimal(owed), Decimal(left), Decimal(left))
    assert (s.payment, s.prepaid_balance) == (Decimal(0), None)
    assert closed.status == "closed"
    assert closed.final_bill == s.bill.bill_id
    assert closed.final_reading_m3 == Decimal("1330.000")
    assert closed.holders[-1].valid_to == CLOSING
    reason = closed.status_history[-1].reason
    assert f"final bill {s.bill.bill_id}: 50.000 m³, 168.00 yuan" in reason
    assert (f"owed {owed} yuan" if Decimal(owed) else "nothing owed") in reason
    assert (f"refund due {left} yuan" in reason) == bool(Decimal(left))
    # What is due back is a refund work order for its payout; nothing due, no order.
    async with engine.connect() as conn:
        orders = (await conn.execute(select(work_order).where(work_order.c.category == "refund"))).all()
    if Decimal(left):
        assert [(o.id, o.account_id, o.status, o.source) for o in orders] == [
            (s.refund_order_id, view.account_id, "accepted", "refund:close:close-1")]
        assert f"{left} yuan is due back" in orders[0].summary
    else:
        assert (orders, s.refund_order_id) == ([], None)

    async with engine.connect() as conn:
        row = (await conn.execute(select(bill).where(bill.c.id == s.bill.bill_id))).one()
        assert (row.net_total, row.tax_total) == (Decimal("154.13"), Decimal("13.87"))  # 168.00 / 1.09
        assert (row.cumulative_before, row.cumulative_after) == (Decimal("280.000"), Decimal("330.000"))
        lines = (await conn.execute(select(bill_line.c.tier, bill_line.c.volume_m3, bill_line.c.unit_price,
                                           bill_line.c.amount).where(bill_line.c.bill_id == row.id)
                                    .order_by(bill_line.c.line_no))).all()
        assert [tuple(line) for line in lines] == [(1, Decimal("20.000"), Decimal("3.00"), Decimal("60.00")),
                                                   (2, Decimal("30.000"), Decimal("3.60"), Decimal("108.00"))]
        final = (await conn.execute(select(reading).where(reading.c.meter_id == METER, reading.c.read_at == CLOSING))
                 ).one()
        assert (final.source, final.volume_m3, final.quality) == ("final", Decimal("1330.000"), "valid")
        event = (await conn.execute(select(outbox).where(outbox.c.type == "bill.issued")
                                    .order_by(outbox.c.seq.desc()).limit(1))).one()
        assert orjson.loads(event.data)["bill_id"] == row.id
        assert event.causation_id == final.message_id  # the bill joins the final reading's flow
        on_final = await conn.scalar(select(func.coalesce(func.sum(allocation.c.amount), 0))
                                     .where(allocation.c.bill_id == row.id))
        assert Decimal(on_final) == Decimal(applied)
        assert (await conn.execute(select(account.c.status, account.c.final_bill_id)
                                   .where(account.c.id == view.account_id))).one() == ("closed", row.id)


@pytest.mark.parametrize(("book", "total"), [
    # 10 Dec–9 Jan, 62 m³ (domain.md rule 3): 44 m³ in the old cycle from cumulative 290 (10 × 3.00 +
    # 34 × 3.60 = 152.40), 18 m³ in the new one (18 × 3.00 = 54.00)
    (BOOK, "206.40"),
    # with prices up on 20 Dec: 20 m³ over 10 days (10 × 3.00 + 10 × 3.60 = 66.00), 24 m³ over 12 days
    # at the new tier 2 (24 × 3.75 = 90.00), 18 m³ in the new cycle (18 × 3.10 = 55.80)
    (CHANGING, "211.80"),
])
async def test_close_across_the_cycle_start_and_a_price_change(
    engine: AsyncEngine, privacy: Privacy, book: TariffBook, total: str
) -> None:
    view = await _account(engine, privacy, datetime(2025, 11, 10, 9, tzinfo=CST), readings=(
        (datetime(2025, 11, 14, 20, tzinfo=CST), "500"), (datetime(2025, 12, 9, 18, tzinfo=CST), "790")))
    async with engine.begin() as conn:  # 290 m³ at tier 1: cumulative 290 when the final period starts
        result = await run_billing(conn, book=book, period_start=date(2025, 11, 15), period_end=date(2025, 12, 10),
                                   now=datetime(2025, 12, 10, 2, tzinfo=UTC))
        assert result.total_billed == Decimal("870.00")
    async with engine.begin() as conn:
        closed = await close_account(conn, privacy, "close-x", view.account_id, Decimal("852"),
                                     datetime(2026, 1, 9, 15, tzinfo=CST), book=book)
    s = closed.settlement
    assert s.bill is not None
    assert (s.bill.period_start, s.bill.period_end, s.bill.volume_m3) == (
        date(2025, 12, 10), date(2026, 1, 10), Decimal("62.000"))
    assert s.bill.total == Decimal(total)
    assert s.owed == Decimal("870.00") + Decimal(total)
    async with engine.connect() as conn:
        after = await conn.scalar(select(bill.c.cumulative_after).where(bill.c.id == s.bill.bill_id))
    assert after == Decimal("18.000")


async def test_close_of_a_prepaid_account_refunds_the_balance(engine: AsyncEngine, privacy: Privacy) -> None:
    view = await _account(engine, privacy, datetime(2026, 3, 1, 9, tzinfo=CST), "prepaid",
                          readings=((datetime(2026, 3, 1, 10, tzinfo=CST), "100"),))
    async with engine.begin() as conn:
        await _pay(conn, privacy, view.account_id, "100.00", datetime(2026, 3, 2, 9, tzinfo=CST))
    async with engine.begin() as conn:
        closed = await close_account(conn, privacy, "close-p", view.account_id, Decimal("110"),
                                     datetime(2026, 3, 20, 9, tzinfo=CST), book=BOOK)
    s = closed.settlement
    # no bill of use: the 10 m³ are deducted from the balance (10 × 3.00), 100.00 − 30.00 is due back
    assert (s.bill, closed.final_bill) == (None, None)
    assert (s.prepaid_balance, s.refund_due, s.owed) == (Decimal("70.00"), Decimal("70.00"), Decimal("0.00"))
    async with engine.connect() as conn:
        assert await conn.scalar(select(meter.c.prepaid_balance).where(meter.c.id == METER)) == Decimal("70.00")
        deduction = (await conn.execute(select(prepaid_entry).where(prepaid_entry.c.kind == "deduction"))).one()
        assert (deduction.amount, deduction.volume_m3) == (Decimal("-30.00"), Decimal("10.000"))
        assert await _count(conn, bill) == 0
    assert "refund due 70.00 yuan" in closed.status_history[-1].reason
    async with engine.connect() as conn:
        order = (await conn.execute(select(work_order).where(work_order.c.id == s.refund_order_id))).one()
    assert (order.category, order.account_id) == ("refund", view.account_id)
    assert "70.00 yuan is due back to its holder" in order.summary


async def test_a_replayed_close_returns_the_same_answer_and_writes_nothing(
    engine: AsyncEngine, privacy: Privacy
) -> None:
    view = await _worked_example(engine, privacy, "1040.00")
    async with engine.begin() as conn:
        first = await close_account(conn, privacy, "close-r", view.account_id, Decimal("1330"), CLOSING, book=BOOK)
    before = await _counts(engine)
    async with engine.begin() as conn:
        again = await close_account(conn, privacy, " close-r ", view.account_id, Decimal("1330.000"), CLOSING,
                                    book=BOOK)
    assert again == first
    assert isinstance(again, AccountClosed)
    assert await _counts(engine) == before


async def test_concurrent_closes_settle_once(engine: AsyncEngine, privacy: Privacy) -> None:
    view = await _worked_example(engine, privacy, "1040.00")
    # SQLite has one writer at a time: there the closes queue up; on PostgreSQL they race for the account.
    gate = asyncio.Lock() if engine.dialect.name == "sqlite" else contextlib.nullcontext()

    async def close(rid: str) -> AccountClosed | Exception:
        try:
            async with gate, engine.begin() as conn:
                return await close_account(conn, privacy, rid, view.account_id, Decimal("1330"), CLOSING, book=BOOK)
        except DomainRejected as exc:
            return exc

    results = await asyncio.gather(*(close(f"close-{n}") for n in range(4)))
    done = [r for r in results if isinstance(r, AccountClosed)]
    assert len(done) == 1
    assert all("already closed" in str(r) for r in results if not isinstance(r, AccountClosed))
    async with engine.connect() as conn:
        assert await _count(conn, bill) == 2  # January-May and the one final bill
        applied = await conn.scalar(select(func.sum(credit.c.amount)).where(credit.c.kind == "applied"))
        assert applied == Decimal("-168.00")  # the credit paid the final bill once
        assert await _count(conn, request) == 2  # the open and the close that won


async def test_bad_closes_are_refused_and_write_nothing(engine: AsyncEngine, privacy: Privacy) -> None:
    view = await _worked_example(engine, privacy, None)
    async with engine.begin() as conn:
        await _read(conn, datetime(2026, 6, 10, 9, tzinfo=CST), "1300")
    before = await _counts(engine)
    cases = [
        (Decimal("1290"), CLOSING, "lower than meter SX-G25-0001's last reading 1300"),
        (Decimal("1330"), datetime(2026, 6, 8, 9, tzinfo=CST), "after the close time"),
        (Decimal("1330"), datetime(2026, 5, 20, 9, tzinfo=CST), "billed up to 2026-06-01"),
        (None, CLOSING, "closed with its final reading"),
    ]
    for value, at, reason in cases:
        with pytest.raises(DomainRejected, match=reason):
            async with engine.begin() as conn:
                await close_account(conn, privacy, f"bad-{next(_seq)}", view.account_id, value, at, book=BOOK)
    assert await _counts(engine) == before
    async with engine.connect() as conn:
        assert (await get_account(conn, privacy, view.account_id)).status == "active"


HEATER = "SX-G25-0002"


async def _two_meters(engine: AsyncEngine, privacy: Privacy) -> AccountView:
    """The worked example (billed to 1 June on one meter, 280 m³), then a water-heater meter installed on
    2 June with its installation reading, 0 m³."""
    view = await _worked_example(engine, privacy, None)
    async with engine.begin() as conn:
        await install_meter(conn, HEATER, view.account_id, model="G2.5", installed_at=date(2026, 6, 2))
        await _read(conn, datetime(2026, 6, 2, 9, tzinfo=CST), "0", HEATER)
    return view


async def test_an_account_with_two_meters_is_transferred_then_closed_with_each_meters_reading(
        engine: AsyncEngine, privacy: Privacy) -> None:
    view = await _two_meters(engine, privacy)
    async with engine.begin() as conn:
        moved = await transfer_account(conn, privacy, "tr-two", view.account_id, BOB, "carry", EFFECTIVE, book=BOOK,
                                       meter_readings={METER: Decimal("1330"), HEATER: Decimal("20")})
    # 50 + 20 m³ from the household's 280: 20 × 3.00 + 50 × 3.60 = 240.00 (the tiers are the account's)
    first = moved.settlement.bill
    assert first is not None
    assert (first.volume_m3, first.total, first.meter_id) == (Decimal("70.000"), Decimal("240.00"), METER)
    assert (first.reading_start_m3, first.reading_end_m3) == (Decimal("1280.000"), Decimal("1350.000"))
    assert [(m.meter_id, m.reading_start_m3, m.reading_end_m3, m.volume_m3) for m in first.meters] == [
        (METER, Decimal("1280.000"), Decimal("1330.000"), Decimal("50.000")),
        (HEATER, Decimal("0.000"), Decimal("20.000"), Decimal("20.000"))]
    assert moved.arrears_carried == Decimal("1080.00")  # 840.00 + 240.00

    # The close starts each meter where the transfer's bill ended for it (core_bill_meter).
    closing = datetime(2026, 7, 10, 10, tzinfo=CST)
    async with engine.begin() as conn:
        closed = await close_account(conn, privacy, "close-two", view.account_id, None, closing, book=BOOK,
                                     meter_readings={HEATER: Decimal("25.5"), METER: Decimal("1340")})
    last = closed.settlement.bill
    assert last is not None
    assert (last.period_start, last.period_end) == (date(2026, 6, 16), date(2026, 7, 11))
    assert [(m.meter_id, m.volume_m3) for m in last.meters] == [(METER, Decimal("10.000")), (HEATER, Decimal("5.500"))]
    assert (last.volume_m3, last.total) == (Decimal("15.500"), Decimal("55.80"))  # 15.5 × 3.60
    assert closed.final_reading_m3 is None  # one per meter: in the readings and on the bill
    assert f"closed with final readings {METER} 1340.000 m³, {HEATER} 25.500 m³" in closed.status_history[-1].reason
    async with engine.connect() as conn:
        finals = {(r.meter_id, r.volume_m3) for r in await conn.execute(
            select(reading).where(reading.c.source == "final"))}
        per_meter = {(r.bill_id, r.meter_id, r.volume_m3) for r in await conn.execute(select(bill_meter))}
    assert finals == {(METER, Decimal("1330.000")), (HEATER, Decimal("20.000")), (METER, Decimal("1340.000")),
                      (HEATER, Decimal("25.500"))}
    assert per_meter == {(first.bill_id, METER, Decimal("50.000")), (first.bill_id, HEATER, Decimal("20.000")),
                         (last.bill_id, METER, Decimal("10.000")), (last.bill_id, HEATER, Decimal("5.500"))}


async def _june_bill(engine: AsyncEngine) -> tuple[Any, dict[str, tuple[Decimal, Decimal]]]:
    """June's monthly run, which must issue exactly one bill: that bill and each meter's registers on it."""
    async with engine.begin() as conn:
        june = await run_billing(conn, book=BOOK, period_start=date(2026, 6, 1), period_end=date(2026, 7, 1),
                                 now=datetime(2026, 7, 1, 2, tzinfo=UTC))
    assert (june.bills_issued, june.skipped) == (1, [])
    async with engine.connect() as conn:
        issued = (await conn.execute(select(bill).where(bill.c.id == june.bill_ids[0]))).one()
        per_meter = {r.meter_id: (r.reading_start_m3, r.reading_end_m3) for r in await conn.execute(
            select(bill_meter).where(bill_meter.c.bill_id == issued.id))}
    return issued, per_meter


async def test_the_monthly_run_bills_the_rest_of_a_two_meter_account_after_a_transfer(
        engine: AsyncEngine, privacy: Privacy) -> None:
    view = await _two_meters(engine, privacy)
    async with engine.begin() as conn:
        await transfer_account(conn, privacy, "tr-rest", view.account_id, BOB, "carry", EFFECTIVE, book=BOOK,
                               meter_readings={METER: Decimal("1330"), HEATER: Decimal("20")})
        await _read(conn, datetime(2026, 6, 30, 20, tzinfo=CST), "1345")
        await _read(conn, datetime(2026, 6, 30, 21, tzinfo=CST), "22", HEATER)
    rest, per_meter = await _june_bill(engine)
    assert (rest.period_start, rest.period_end, rest.volume_m3) == (date(2026, 6, 16), date(2026, 7, 1),
                                                                   Decimal("17.000"))
    assert (rest.cumulative_before, rest.total) == (Decimal("350.000"), Decimal("61.20"))  # 17 × 3.60
    assert per_meter == {METER: (Decimal("1330.000"), Decimal("1345.000")),
                         HEATER: (Decimal("20.000"), Decimal("22.000"))}


async def test_a_meter_added_after_a_transfer_opens_the_rest_at_its_installation_reading(
        engine: AsyncEngine, privacy: Privacy) -> None:
    view = await _worked_example(engine, privacy, None)
    async with engine.begin() as conn:
        await transfer_account(conn, privacy, "tr-add", view.account_id, BOB, "carry", EFFECTIVE, book=BOOK,
                               transfer_reading_m3=Decimal("1330"))
        await install_meter(conn, HEATER, view.account_id, model="G2.5", installed_at=date(2026, 6, 20))
        await _read(conn, datetime(2026, 6, 20, 9, tzinfo=CST), "0", HEATER)
        await _read(conn, datetime(2026, 6, 30, 20, tzinfo=CST), "1345")
        await _read(conn, datetime(2026, 6, 30, 21, tzinfo=CST), "4", HEATER)
    _, per_meter = await _june_bill(engine)
    assert per_meter == {METER: (Decimal("1330.000"), Decimal("1345.000")),
                         HEATER: (Decimal("0.000"), Decimal("4.000"))}


@pytest.mark.parametrize(("value", "readings", "reason"), [
    (Decimal("1330"), None, r"has 2 meters \(SX-G25-0001, SX-G25-0002\): give each one's register in "
                            r"meter_readings"),
    (None, {METER: Decimal("1330")}, "missing SX-G25-0002"),
    (None, {METER: Decimal("1330"), HEATER: Decimal("5"), "SX-OTHER": Decimal("1")}, "not account .*SX-OTHER"),
    (Decimal("1330"), {METER: Decimal("1330"), HEATER: Decimal("5")}, "either final_reading_m3 or meter_readings"),
    (None, {METER: Decimal("1330"), HEATER: Decimal("-1")}, "of meter SX-G25-0002 must be a non-negative"),
    (None, {METER: Decimal("1270"), HEATER: Decimal("5")}, "meter SX-G25-0001's last reading 1280"),
])
async def test_a_close_of_two_meters_needs_each_ones_reading_and_writes_nothing_without(
        engine: AsyncEngine, privacy: Privacy, value: Decimal | None, readings: dict[str, Decimal] | None,
        reason: str) -> None:
    view = await _two_meters(engine, privacy)
    before = await _counts(engine)
    with pytest.raises(DomainRejected, match=reason):
        async with engine.begin() as conn:
            await close_account(conn, privacy, f"two-{next(_seq)}", view.account_id, value, CLOSING, book=BOOK,
                                meter_readings=readings)
    assert await _counts(engine) == before


# --- transfer ----------------------------------------------------------------------------------------

EFFECTIVE = datetime(2026, 6, 15, 10, tzinfo=CST)


async def test_settle_transfer_is_refused_while_owing_then_paid_at_the_counter(
    engine: AsyncEngine, privacy: Privacy
) -> None:
    view = await _worked_example(engine, privacy, None)
    before = await _counts(engine)
    for paying in (None, Decimal("1000.00")):
        with pytest.raises(ArrearsOutstanding, match=r"owes 1008\.00 yuan") as refused:
            async with engine.begin() as conn:
                await transfer_account(conn, privacy, "tr-1", view.account_id, BOB, "settle", EFFECTIVE, book=BOOK,
                                       transfer_reading_m3=Decimal("1330"), settlement_payment=paying)
        assert refused.value.owed == Decimal("1008.00")  # 840.00 + the old holder's last 50 m³, 168.00
    assert await _counts(engine) == before  # the bill, the reading and the payment rolled back
    with pytest.raises(DomainRejected, match="give the transfer reading"):
        async with engine.begin() as conn:
            await transfer_account(conn, privacy, "tr-2", view.account_id, BOB, "settle", EFFECTIVE, book=BOOK)

    async with engine.begin() as conn:
        moved = await transfer_account(conn, privacy, "tr-3", view.account_id, BOB, "settle", EFFECTIVE, book=BOOK,
                                       transfer_reading_m3=Decimal("1330"), settlement_payment=Decimal("1008.00"))
    s = moved.settlement
    assert (moved.outcome, moved.arrears_carried) == ("settled", Decimal("0.00"))
    assert s.bill is not None
    assert (s.bill.period_start, s.bill.period_end, s.bill.total) == (
        date(2026, 6, 1), date(2026, 6, 16), Decimal("168.00"))
    assert (s.payment, s.owed, s.refund_due) == (Decimal("1008.00"), Decimal("0.00"), Decimal("0.00"))
    assert [(h.name, h.arrears_policy, h.arrears_carried) for h in moved.holders] == [
        ("张**", None, None), ("李*", "settle", Decimal("0.00"))]
    async with engine.connect() as conn:
        paid = (await conn.execute(select(payment.c.channel, payment.c.transaction_id, payment.c.amount))).one()
        assert tuple(paid) == ("counter", "tr-3", Decimal("1008.00"))

    # The next monthly run bills the new holder from the transfer on: [16 Jun, 1 Jul), from the transfer
    # reading 1330 to 1400, 70 m³ at tier 2 after a cumulative of 330 → 70 × 3.60 = 252.00.
    async with engine.begin() as conn:
        await _read(conn, datetime(2026, 6, 30, 12, tzinfo=CST), "1400")
    for issued, already in ((1, 0), (0, 1)):  # and a second run changes nothing
        async with engine.begin() as conn:
            result = await run_billing(conn, book=BOOK, period_start=date(2026, 6, 1), period_end=date(2026, 7, 1),
                                       now=datetime(2026, 7, 1, 2, tzinfo=UTC))
        assert (result.bills_issued, result.already_billed, result.skipped) == (issued, already, [])
    async with engine.connect() as conn:
        rest = (await conn.execute(select(bill).where(bill.c.period_end == date(2026, 7, 1)))).one()
    assert (rest.period_start, rest.reading_start_m3, rest.volume_m3, rest.total, rest.cumulative_before) == (
        date(2026, 6, 16), Decimal("1330.000"), Decimal("70.000"), Decimal("252.00"), Decimal("330.000"))


async def test_carry_transfer_keeps_the_debt_on_the_account(engine: AsyncEngine, privacy: Privacy) -> None:
    view = await _worked_example(engine, privacy, "800.00")
    with pytest.raises(DomainRejected, match="takes no settlement payment"):
        async with engine.begin() as conn:
            await transfer_account(conn, privacy, "tr-c", view.account_id, BOB, "carry", EFFECTIVE, book=BOOK,
                                   settlement_payment=Decimal("40.00"))
    async with engine.begin() as conn:
        moved = await transfer_account(conn, privacy, "tr-c", view.account_id, BOB, "carry", EFFECTIVE, book=BOOK)
    assert (moved.outcome, moved.arrears_carried) == ("carried", Decimal("40.00"))  # 840.00 − 800.00
    assert moved.settlement.bill is None  # no transfer reading: the monthly run bills June as usual
    assert moved.holders[-1].arrears_carried == Decimal("40.00")
    assert moved.status == "active"
    async with engine.connect() as conn:
        assert (await get_account(conn, privacy, view.account_id)).holders[-1].arrears_carried == Decimal("40.00")
