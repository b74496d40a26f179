"""Installing meters at accounts, on SQLite and on PostgreSQL (migrated with Alembic)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from core.accounts import CustomerIn, PremisesIn, Privacy, id_check_digit, open_account
from core.billing import TariffBook
from core.db.tables_billing import meter
from core.errors import DomainRejected
from core.lifecycle import close_account
from core.meters import install_meter
from core.privacy import KeyRing, generate_key

ID = "33060219900101123" + id_check_digit("33060219900101123")
HOLDER = CustomerIn(name="张三丰", phone="13812345678", id_number=ID)
HOME = PremisesIn(address="绍兴市越城区解放北路88号3幢201室", district="yuecheng", lat=30.00, lon=120.58)


@pytest.fixture
def privacy() -> Privacy:
    return Privacy.from_ring(KeyRing.from_settings({"k1": generate_key()}, current="k1"))


async def _account(eng: AsyncEngine, privacy: Privacy, rid: str) -> str:
    async with eng.begin() as conn:
        view = await open_account(conn, privacy, rid, HOLDER, HOME, "residential", "postpaid",
                                  opened_at=datetime(2020, 5, 1, tzinfo=UTC))
    return view.account_id


async def test_a_meter_is_installed_once_and_only_at_one_account(engine: AsyncEngine, privacy: Privacy) -> None:
    home = await _account(engine, privacy, "open-1")
    other = await _account(engine, privacy, "open-2")
    async with engine.begin() as conn:
        view = await install_meter(conn, "300000000001", home, model="G2.5", installed_at=date(2020, 5, 1),
                                   replace_by=date(2030, 5, 1))
        again = await install_meter(conn, "300000000001", home, model="G2.5", installed_at=date(2020, 5, 1))
    assert view == again
    assert (view.account_id, view.valve_state, view.replace_by) == (home, "open", date(2030, 5, 1))
    async with engine.connect() as conn:
        rows = (await conn.execute(select(meter))).all()
    assert [(r.id, r.account_id, r.model, r.installed_at, Decimal(r.prepaid_balance)) for r in rows] == [
        ("300000000001", home, "G2.5", date(2020, 5, 1), Decimal("0"))]

    with pytest.raises(DomainRejected, match="installed at another account"):
        async with engine.begin() as conn:
            await install_meter(conn, "300000000001", other, model="G2.5", installed_at=date(2021, 1, 1))
    with pytest.raises(DomainRejected, match=r"recorded as model G2\.5, not G4"):
        async with engine.begin() as conn:
            await install_meter(conn, "300000000001", home, model="G4", installed_at=date(2021, 1, 1))


async def test_a_meter_known_from_its_readings_is_linked(engine: AsyncEngine, privacy: Privacy) -> None:
    home = await _account(engine, privacy, "open-1")
    async with engine.begin() as conn:
        await conn.execute(insert(meter).values(id="M-LOOSE", account_id=None, model="G4",
                                                installed_at=date(2019, 1, 1), valve_state="closed",
                                                prepaid_balance=0))
        view = await install_meter(conn, "M-LOOSE", home, model="G4", installed_at=date(2020, 5, 1))
    assert (view.account_id, view.valve_state, view.installed_at) == (home, "closed", date(2020, 5, 1))


async def test_installing_is_refused_for_bad_input_and_closed_accounts(engine: AsyncEngine, privacy: Privacy) -> None:
    home = await _account(engine, privacy, "open-1")
    cases: list[tuple[dict[str, Any], str]] = [
        (dict(meter_id="30 00", account_id=home), "letters, digits"),
        (dict(meter_id="M1", account_id=home, model=" "), "model must be"),
        (dict(meter_id="M1", account_id=home, valve_state="ajar"), "unknown valve state"),
        (dict(meter_id="M1", account_id=home, replace_by=date(2019, 1, 1)), "replace-by"),
        (dict(meter_id="M1", account_id="01JNOSUCHACCOUNT"), "unknown account"),
    ]
    for kwargs, reason in cases:
        args = {"model": "G2.5", "installed_at": date(2020, 5, 1), **kwargs}
        with pytest.raises(DomainRejected, match=reason):
            async with engine.begin() as conn:
                await install_meter(conn, **args)
    async with engine.begin() as conn:
        await close_account(conn, privacy, "close-1", home, Decimal("12.5"), datetime(2026, 1, 1, tzinfo=UTC),
                            book=TariffBook(versions=()))
    with pytest.raises(DomainRejected, match="is closed"):
        async with engine.begin() as conn:
            await install_meter(conn, "M1", home, model="G2.5", installed_at=date(2026, 2, 1))
    async with engine.connect() as conn:
        assert (await conn.execute(select(meter))).all() == []


async def test_a_meter_keeps_how_it_is_reached_and_its_verification(engine: AsyncEngine, privacy: Privacy) -> None:
    home = await _account(engine, privacy, "open-id-1")
    async with engine.begin() as conn:
        view = await install_meter(conn, "NB-0001", home, model="G2.5", installed_at=date(2024, 1, 1),
                                   protocol_address="12345678901234", imei="490154203237518",
                                   verified_on=date(2023, 12, 1))
    assert (view.protocol_address, view.imei, view.verified_on) == ("12345678901234", "490154203237518",
                                                                    date(2023, 12, 1))
    for kwargs, reason in (({"imei": "490154203237519"}, "check digit"),  # Luhn fails
                           ({"imei": "4901542032375"}, "15 digits"),
                           ({"protocol_address": "1234"}, "14 digits")):
        with pytest.raises(DomainRejected, match=reason):
            async with engine.begin() as conn:
                await install_meter(conn, "NB-0002", home, model="G2.5", installed_at=date(2024, 1, 1),
                                    **kwargs)  # type: ignore[arg-type]
    with pytest.raises(DomainRejected, match="belongs to another meter"):
        async with engine.begin() as conn:
            await install_meter(conn, "NB-0003", home, model="G2.5", installed_at=date(2024, 1, 1),
                                imei="490154203237518")
    async with engine.connect() as conn:
        assert (await conn.execute(select(meter.c.id).order_by(meter.c.id))).scalars().all() == ["NB-0001"]
