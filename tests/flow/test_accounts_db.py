"""Account lifecycle against a real database, on SQLite and on PostgreSQL (migrated with Alembic)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from core.accounts import (
    AccountView,
    CustomerIn,
    PremisesIn,
    Privacy,
    find_by_id_number,
    find_by_phone,
    get_account,
    id_check_digit,
    open_account,
)
from core.billing import ResidentialTariff, TariffBook
from core.db.tables_accounts import account, customer, premises, request
from core.errors import Conflict, DomainRejected
from core.lifecycle import close_account as _close
from core.lifecycle import transfer_account as _transfer
from core.privacy import KeyRing, generate_key

ALICE_ID = "33060219900101123" + id_check_digit("33060219900101123")
BOB_ID = "33062119850615004" + id_check_digit("33062119850615004")
ALICE = CustomerIn(name="张三丰", phone="13812345678", id_number=ALICE_ID, address="浙江省绍兴市越城区人民中路123号")
BOB = CustomerIn(name="李四", phone="+86 139-0000-1111", id_number=BOB_ID)
HOME = PremisesIn(address="绍兴市越城区解放北路88号3幢201室", district="yuecheng", lat=30.00, lon=120.58)
T0 = datetime(2026, 1, 1, 8, tzinfo=UTC)
T1 = datetime(2026, 6, 1, 8, tzinfo=UTC)
T2 = datetime(2026, 9, 1, 8, tzinfo=UTC)
BOOK = TariffBook(versions=(ResidentialTariff(version="RES-2025", effective_from=date(2025, 1, 1),
                                              thresholds_m3=(Decimal(300), Decimal(600)),
                                              prices=(Decimal("3.00"), Decimal("3.60"), Decimal("4.50"))),))


def close_account(*args: Any) -> Any:
    """Accounts without a meter: no bill of use, so any tariff book does (core.lifecycle tests the bills)."""
    return _close(*args, book=BOOK)


def transfer_account(*args: Any) -> Any:
    return _transfer(*args, book=BOOK)


@pytest.fixture
def privacy() -> Privacy:
    return Privacy.from_ring(KeyRing.from_settings({"k1": generate_key()}, current="k1"))


async def _open(eng: AsyncEngine, privacy: Privacy, rid: str = "req-open-1") -> AccountView:
    async with eng.begin() as conn:
        return await open_account(conn, privacy, rid, ALICE, HOME, "residential", "postpaid", opened_at=T0)


async def test_lifecycle_open_find_transfer_close(engine: AsyncEngine, privacy: Privacy) -> None:
    opened = await _open(engine, privacy)
    assert opened.status == "active"
    assert opened.masked
    assert opened.account_number.startswith("SX1")

    async with engine.connect() as conn:
        view = await get_account(conn, privacy, opened.account_id)
        assert view.holder.name == "张**"
        assert view.holder.phone == "138****5678"
        assert view.holder.id_number == "330602********" + ALICE_ID[-4:]
        assert view.holder.address == "浙江省绍兴市越城区****"
        assert view.premises.address == "绍兴市越城区****"
        assert (view.premises.district, view.premises.lat, view.premises.lon) == ("yuecheng", 30.0, 120.58)
        revealed = await get_account(conn, privacy, opened.account_id, reveal=True)
        assert (revealed.holder.name, revealed.holder.phone, revealed.holder.id_number) == (
            "张三丰", "13812345678", ALICE_ID
        )
        for variant in ("13812345678", "+86 138 1234 5678", "0086-138-1234-5678", "138-1234-5678"):
            found = await find_by_phone(conn, privacy, variant)
            assert [a.account_id for a in found] == [opened.account_id]
        assert await find_by_phone(conn, privacy, "13900001111") == []
        by_id = await find_by_id_number(conn, privacy, ALICE_ID.lower())
        assert [a.account_id for a in by_id] == [opened.account_id]

    async with engine.begin() as conn:
        moved = await transfer_account(conn, privacy, "req-transfer-1", opened.account_id, BOB, "carry", T1)
    assert moved.holder.name == "李*"
    assert [(h.name, h.valid_from, h.valid_to, h.arrears_policy) for h in moved.holders] == [
        ("张**", T0, T1, None),
        ("李*", T1, None, "carry"),
    ]
    assert (moved.outcome, moved.arrears_carried, moved.holders[-1].arrears_carried) == ("carried", 0, 0)
    async with engine.connect() as conn:
        assert [a.account_id for a in await find_by_phone(conn, privacy, "13900001111")] == [opened.account_id]
        assert await find_by_phone(conn, privacy, "13812345678") == []  # no longer the holder

    async with engine.begin() as conn:
        closed = await close_account(conn, privacy, "req-close-1", opened.account_id, Decimal("1234.5"), T2)
    assert closed.status == "closed"
    assert closed.closed_at == T2
    assert closed.final_reading_m3 == Decimal("1234.500")
    assert closed.final_bill is None  # no meter: nothing metered to bill
    assert (closed.settlement.owed, closed.settlement.refund_due) == (Decimal(0), Decimal(0))
    assert closed.holders[-1].valid_to == T2
    assert [(s.status, s.effective_from) for s in closed.status_history] == [("active", T0), ("closed", T2)]
    assert closed.status_history[-1].reason == "closed with final reading 1234.500 m³; nothing owed"

    async with engine.connect() as conn:
        assert (await get_account(conn, privacy, opened.account_id)).status_history == closed.status_history


async def test_rejections(engine: AsyncEngine, privacy: Privacy) -> None:
    opened = await _open(engine, privacy)
    cases = [
        (lambda c: get_account(c, privacy, "01NOSUCHACCOUNT"), "unknown account"),
        (lambda c: close_account(c, privacy, "r1", "01NOSUCHACCOUNT", Decimal(1), T1), "unknown account"),
        (lambda c: open_account(c, privacy, "r2", ALICE.model_copy(update={"phone": "1381234567"}), HOME,
                                "residential", "postpaid"), "11 digits"),
        (lambda c: open_account(c, privacy, "r3", ALICE.model_copy(update={"id_number": ALICE_ID[:-1] + "0"
                                if ALICE_ID[-1] != "0" else ALICE_ID[:-1] + "1"}), HOME,
                                "residential", "postpaid"), "check digit"),
        (lambda c: open_account(c, privacy, "r4", ALICE, HOME.model_copy(update={"lat": 31.23, "lon": 121.47}),
                                "residential", "postpaid"), "outside Shaoxing"),
        (lambda c: open_account(c, privacy, "r5", ALICE, HOME, "non_residential", "prepaid"), "subcategory"),
        (lambda c: transfer_account(c, privacy, "r6", opened.account_id, ALICE, "carry", T1), "already holds"),
        (lambda c: transfer_account(c, privacy, "r7", opened.account_id, BOB, "carry", T0), "after the current"),
    ]
    for call, message in cases:
        async with engine.connect() as conn:
            with pytest.raises(DomainRejected, match=message):
                await call(conn)
            await conn.rollback()

    async with engine.begin() as conn:
        await close_account(conn, privacy, "close-a", opened.account_id, Decimal(10), T1)
    for call, message in [
        (lambda c: close_account(c, privacy, "close-b", opened.account_id, Decimal(11), T2), "already closed"),
        (lambda c: transfer_account(c, privacy, "tr-b", opened.account_id, BOB, "settle", T2), "closed"),
    ]:
        async with engine.connect() as conn:
            with pytest.raises(DomainRejected, match=message):
                await call(conn)
            await conn.rollback()


async def test_same_request_id_is_idempotent(engine: AsyncEngine, privacy: Privacy) -> None:
    first = await _open(engine, privacy, "same-id")
    again = await _open(engine, privacy, "same-id")
    assert again == first
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(account))).scalar_one() == 1
        assert (await conn.execute(select(func.count()).select_from(customer))).scalar_one() == 1

    async with engine.begin() as conn:  # the same content written differently is the same request
        variant = ALICE.model_copy(update={"phone": "+86 138 1234 5678"})
        assert await open_account(conn, privacy, "same-id", variant, HOME, "residential", "postpaid",
                                  opened_at=T0) == first

    async with engine.connect() as conn:
        with pytest.raises(Conflict, match="different open_account"):
            await open_account(conn, privacy, "same-id", BOB, HOME, "residential", "postpaid", opened_at=T0)
        await conn.rollback()
        with pytest.raises(Conflict, match="different open_account"):
            await close_account(conn, privacy, "same-id", first.account_id, Decimal(1), T1)
        await conn.rollback()

    async with engine.begin() as conn:
        closed = await close_account(conn, privacy, "close-once", first.account_id, Decimal(5), T1)
    async with engine.begin() as conn:  # a retried close replays instead of failing on "already closed"
        assert await close_account(conn, privacy, "close-once", first.account_id, Decimal(5), T1) == closed
    async with engine.connect() as conn:
        with pytest.raises(Conflict):
            await close_account(conn, privacy, "close-once", first.account_id, Decimal(6), T1)
        await conn.rollback()


async def test_personal_data_is_not_stored_in_clear(engine: AsyncEngine, privacy: Privacy) -> None:
    opened = await _open(engine, privacy)
    async with engine.connect() as conn:
        parts = []
        for table in (customer, premises, account, request):
            parts += [str(value) for row in (await conn.execute(select(table))).all() for value in row]
    raw = " ".join(parts)
    assert opened.account_id in raw
    # The stored idempotent result is the masked view ("138****5678"): no full value anywhere.
    for plain in ("张三丰", "三丰", "13812345678", ALICE_ID, ALICE_ID[6:14], "人民中路", "解放北路"):
        assert plain not in raw, plain
    async with engine.connect() as conn:
        row = (await conn.execute(select(customer))).one()
    assert row.name_enc.startswith("v1:k1:")
    assert row.phone_bidx.startswith("k1:")


async def test_concurrent_identical_opens_make_one_account(engine: AsyncEngine, privacy: Privacy) -> None:
    # SQLite has one writer at a time (the hub's Database gate does the same): there the five
    # requests queue up; on PostgreSQL they race for the request id.
    gate = asyncio.Lock() if engine.dialect.name == "sqlite" else contextlib.nullcontext()

    async def one() -> AccountView:
        async with gate, engine.begin() as conn:
            return await open_account(conn, privacy, "race", ALICE, HOME, "residential", "prepaid", opened_at=T0)

    views = await asyncio.gather(*(one() for _ in range(5)))
    assert len({v.account_id for v in views}) == 1
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(account))).scalar_one() == 1
        assert (await conn.execute(select(func.count()).select_from(request))).scalar_one() == 1
