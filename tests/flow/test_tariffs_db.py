"""The tariff book in the database, on SQLite and on PostgreSQL (migrated with Alembic): importing a
file is idempotent and audited, a changed file adds only its new versions and never edits one, the
table refuses UPDATE and DELETE, a version applies from its date only (the worked examples of
``test_billing`` and ``test_billing_run`` through the database), and long-running readers see a
version added after they started."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

import tests.flow.test_billing_run as billing_run
import tests.flow.test_prepaid_db as prepaid_db
from core.accounts import Privacy
from core.billing import TariffCategory, bill_period
from core.config import CoreConfig
from core.db.tables_api import api_audit
from core.db.tables_payments import prepaid_entry
from core.db.tables_tariffs import tariff_version
from core.handlers import build_handlers
from core.privacy import KeyRing, generate_key
from core.tariffs import (
    TariffShelf,
    VersionConflict,
    VersionRefused,
    VersionState,
    add_versions,
    list_versions,
    load_book,
)
from hub import cli
from hub.billing import load_tariffs
from hub.store.db import Database
from hub.tariffs import import_tariffs, seed_tariffs
from tests.unit.test_billing import residential

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "config" / "tariffs.toml"
NOW = datetime(2026, 11, 27, 1, tzinfo=UTC)
RES = TariffCategory.RESIDENTIAL
FUTURE_RES = """
[[versions]]
version = "RES-2027"
category = "residential"
effective_from = 2027-01-01
thresholds_m3 = ["480", "960"]
prices = ["2.52", "3.02", "3.78"]
uplift = { above_residents = 4, per_person_m3 = "120" }
"""


def url_of(engine: AsyncEngine) -> str:
    return engine.url.render_as_string(hide_password=False)


async def count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(tariff_version)) or 0)


async def audit(engine: AsyncEngine) -> list[tuple[str, int, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(api_audit.c.path, api_audit.c.status, api_audit.c.detail)
                                  .where(api_audit.c.resource == "tariffs").order_by(api_audit.c.seq))
        return [(r.path, r.status, r.detail) for r in rows]


def edited(path: Path, *, before: str, after: str) -> str:
    text_ = path.read_text()
    assert before in text_
    return text_.replace(before, after)


async def test_importing_a_file_twice_adds_it_once_and_both_are_audited(engine: AsyncEngine) -> None:
    db = Database(url_of(engine))
    try:
        first = await import_tariffs(db, SHIPPED, by="cli:ops", now=NOW)
        again = await import_tariffs(db, SHIPPED, by="cli:ops", now=NOW)
    finally:
        await db.aclose()
    assert sorted(v.tariff.version for v in first.added) == ["COM-2025", "HEAT-2025", "IND-2025", "RES-2025"]
    assert (first.unchanged, again.added, len(again.unchanged)) == ((), (), 4)
    assert await count(engine) == 4
    async with engine.connect() as conn:
        assert await load_book(conn) == load_tariffs(SHIPPED)
        (row,) = (await conn.execute(select(tariff_version).where(tariff_version.c.version == "RES-2025"))).all()
    assert (row.created_by, row.note, row.created_at) == ("cli:ops", "imported from tariffs.toml", NOW)
    (path1, status1, detail1), (path2, status2, detail2) = await audit(engine)
    assert path1 == path2 == f"gashub tariffs import {SHIPPED}"
    assert (status1, status2) == (201, 200)
    assert "RES-2025 (residential from 2025-01-01, #" in detail1
    assert detail2 == "nothing new: 4 versions stored already"


async def test_a_changed_file_adds_only_its_new_versions_and_refuses_edits_naming_them(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    db = Database(url_of(engine))
    changed = tmp_path / "tariffs.toml"
    try:
        await import_tariffs(db, SHIPPED, by="seed", now=datetime(2025, 1, 1, tzinfo=UTC))
        changed.write_text(SHIPPED.read_text() + FUTURE_RES)
        added = await import_tariffs(db, changed, by="cli:ops", now=NOW)
        assert [v.tariff.version for v in added.added] == ["RES-2027"]
        assert len(added.unchanged) == 4

        # An edit of a version in force since 2025, with a new future version beside it: nothing is added.
        changed.write_text(edited(changed, before='price = "3.85"', after='price = "3.95"')
                           + FUTURE_RES.replace("RES-2027", "RES-2028").replace("2027-01-01", "2028-01-01"))
        with pytest.raises(VersionConflict) as conflict:
            await import_tariffs(db, changed, by="cli:ops", now=NOW)
        assert "COM-2025 (commercial from 2025-01-01) has the date of COM-2025 (commercial from 2025-01-01, #" in str(
            conflict.value)
        assert "in force since 2025-01-01 and is immutable" in str(conflict.value)

        # An edit of a version still to come is refused too: versions are never edited.
        changed.write_text(SHIPPED.read_text() + FUTURE_RES.replace('"2.52"', '"2.50"'))
        with pytest.raises(VersionConflict, match=r"RES-2027 .*versions are never edited"):
            await import_tariffs(db, changed, by="cli:ops", now=NOW)

        # A new version may not reach back over days a stored version prices.
        changed.write_text(SHIPPED.read_text() + FUTURE_RES.replace("2027-01-01", "2026-06-01").replace(
            "RES-2027", "RES-2026-06"))
        with pytest.raises(VersionRefused, match=r"RES-2026-06 \(residential from 2026-06-01\) would change prices "
                                                 r"from 2026-06-01 to 2026-11-27, days RES-2025 .* already prices"):
            await import_tariffs(db, changed, by="cli:ops", now=NOW)
    finally:
        await db.aclose()
    assert await count(engine) == 5
    assert [status for _, status, _ in await audit(engine)] == [201, 201, 409, 409, 422]


async def test_the_table_refuses_updates_and_deletes_whoever_sends_them(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await add_versions(conn, load_tariffs(SHIPPED).versions, by="seed", now=NOW)
    for statement in (update(tariff_version).values(note="edited"), delete(tariff_version)):
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(statement)
    async with engine.connect() as conn:
        assert set((await conn.execute(select(tariff_version.c.note))).scalars()) == {""}
    assert await count(engine) == 4


async def test_a_new_version_applies_from_its_date_only(engine: AsyncEngine) -> None:
    """test_billing's worked example (a price change on 16 June inside a June bill), with the book read
    back from the database: the same lines. Before the change the old prices; the book as known before
    the version was added bills June with the old prices throughout."""
    async with engine.begin() as conn:
        await add_versions(conn, (residential(),), by="seed", now=datetime(2020, 1, 1, tzinfo=UTC))
    added_at = datetime(2024, 6, 1, 2, tzinfo=UTC)
    change = residential(version="RES-2024-06", effective_from=date(2024, 6, 16), prices=("3.20", "3.84", "4.80"))
    async with engine.begin() as conn:
        await add_versions(conn, (change,), by="api:admin", now=added_at, note="price approval 2024-17")
    async with engine.connect() as conn:
        book = await load_book(conn)
        before = await load_book(conn, known_at=datetime(2024, 5, 31, tzinfo=UTC))
        listed = await list_versions(conn, now=datetime(2024, 6, 10, tzinfo=UTC))
    assert [(i.stored.tariff.version, i.state) for i in listed] == [
        ("RES-2020", VersionState.CURRENT), ("RES-2024-06", VersionState.FUTURE)]
    june = bill_period(book, RES, date(2024, 6, 1), date(2024, 7, 1), D(30), cumulative_before=D(290))
    assert [(line.tariff_version, line.tier, line.volume_m3, line.unit_price, line.amount) for line in june.lines] == [
        ("RES-2020", 1, D("10.000"), D("3.00"), D("30.00")),
        ("RES-2020", 2, D("5.000"), D("3.60"), D("18.00")),
        ("RES-2024-06", 2, D("15.000"), D("3.84"), D("57.60")),
    ]
    assert june.total == D("105.60")
    may = bill_period(book, RES, date(2024, 5, 1), date(2024, 6, 1), D(31), cumulative_before=D(100))
    assert {line.tariff_version for line in may.lines} == {"RES-2020"}
    assert may.total == D("93.00")
    assert bill_period(before, RES, date(2024, 6, 1), date(2024, 7, 1), D(30), cumulative_before=D(290)).total == D(
        "102.00")


async def test_billing_runs_with_the_stored_book_equal_the_reference(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """test_billing_run's reference test (tier splits, a cycle crossing, a price change on 20 December
    inside a period) with its book stored first and then a price change added ahead of its date."""
    async with engine.begin() as conn:
        await billing_run._build_city(conn)
        await add_versions(conn, billing_run.BOOK.versions, by="seed", now=datetime(2025, 1, 1, tzinfo=UTC))
    (change,) = [v for v in billing_run.CHANGING.versions if v not in billing_run.BOOK.versions]
    async with engine.begin() as conn:
        await add_versions(conn, (change,), by="api:admin", now=datetime(2025, 12, 1, tzinfo=UTC))
    async with engine.connect() as conn:
        stored = await load_book(conn)
    assert stored == billing_run.CHANGING
    monkeypatch.setattr(billing_run, "CHANGING", stored)
    await billing_run.test_every_bill_equals_the_reference_calculation(engine)


async def test_a_shelf_reloads_the_book_only_when_a_version_was_added(engine: AsyncEngine) -> None:
    shelf = TariffShelf()
    async with engine.begin() as conn:
        await add_versions(conn, load_tariffs(SHIPPED).versions, by="seed", now=NOW)
    async with engine.connect() as conn:
        first = await shelf.book(conn)
        assert await shelf.book(conn) is first
    future = load_tariffs(SHIPPED).of(RES)[0].model_copy(update={"version": "RES-2027",
                                                                  "effective_from": date(2027, 1, 1)})
    async with engine.begin() as conn:
        await add_versions(conn, (future,), by="api:admin", now=NOW)
    async with engine.connect() as conn:
        second = await shelf.book(conn)
    assert second is not first
    assert second.in_force(RES, date(2027, 1, 1)).version == "RES-2027"
    assert second.in_force(RES, date(2026, 12, 31)).version == "RES-2025"


async def test_seeding_fills_an_empty_database_only(engine: AsyncEngine, tmp_path: Path) -> None:
    db = Database(url_of(engine))
    try:
        assert await seed_tariffs(db, tmp_path / "missing.toml") is None
        assert await count(engine) == 0
        seeded = await seed_tariffs(db, SHIPPED)
        assert seeded is not None
        assert len(seeded.added) == 4
        other = tmp_path / "other.toml"
        other.write_text(SHIPPED.read_text() + FUTURE_RES)
        assert await seed_tariffs(db, other) is None  # the database has a book: seeding leaves it alone
    finally:
        await db.aclose()
    assert await count(engine) == 4
    assert [(path, status) for path, status, _ in await audit(engine)] == [(f"seed {SHIPPED}", 201)]


async def test_processes_seeding_one_fresh_database_at_once_store_the_book_once(engine: AsyncEngine) -> None:
    """Three workers starting together each seed the fresh database (their own connections): every one
    starts, and the book is stored once. Before PostgreSQL serialised the adders, two read an empty book
    and the second insert failed on the unique date, so that worker died at start."""
    dbs = [Database(url_of(engine)) for _ in range(3)]
    try:
        results = await asyncio.gather(*(seed_tariffs(db, SHIPPED) for db in dbs), return_exceptions=True)
    finally:
        for db in dbs:
            await db.aclose()
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert sum(len(r.added) for r in results if r is not None and not isinstance(r, BaseException)) == 4
    assert await count(engine) == 4


async def test_the_command_line_imports_lists_and_bills_with_the_stored_book(
    engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async with engine.begin() as conn:
        await billing_run._build_city(conn)
    monkeypatch.setenv("GASHUB_DATABASE_URL", url_of(engine))
    assert await asyncio.to_thread(cli.main, ["billing", "run", "2026-02", "--workers", "1"]) == 1
    assert "no tariffs" in capsys.readouterr().err
    assert await asyncio.to_thread(cli.main, ["tariffs", "import", str(SHIPPED)]) == 0
    assert f"{SHIPPED}: 4 versions added, 0 stored already" in capsys.readouterr().out
    assert await asyncio.to_thread(cli.main, ["tariffs", "import"]) == 0  # billing.tariffs_file: the same file
    assert "0 versions added, 4 stored already" in capsys.readouterr().out
    broken = tmp_path / "tariffs.toml"
    broken.write_text(edited(SHIPPED, before='price = "3.55"', after='price = "3.65"'))
    assert await asyncio.to_thread(cli.main, ["tariffs", "import", str(broken)]) == 1
    err = capsys.readouterr().err
    assert "nothing imported" in err
    assert "IND-2025 (industrial from 2025-01-01)" in err
    assert await asyncio.to_thread(cli.main, ["tariffs", "list"]) == 0
    out = capsys.readouterr().out
    assert "current  residential  2025-01-01  RES-2025" in out
    assert "2.40 / 2.88 / 3.60 yuan/m³ (tiers up to 480, 960 m³ a year)" in out
    assert await asyncio.to_thread(cli.main, ["billing", "run", "2026-02", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    # A1: 50 m³ at 2.40 (120.00); A2: 100 m³ commercial at 3.85 (385.00).
    assert "period 2026-02-01..2026-03-01 (end exclusive): 5 accounts, 2 bills issued (505.00 yuan)" in out


async def test_db_upgrade_seeds_a_fresh_database(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GASHUB_DATABASE_URL", url_of(engine))
    assert await asyncio.to_thread(cli.main, ["db", "upgrade"]) == 0
    assert "tariffs: 4 versions imported" in capsys.readouterr().out
    assert await asyncio.to_thread(cli.main, ["db", "upgrade"]) == 0
    assert "tariffs" not in capsys.readouterr().out
    assert await count(engine) == 4
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM core_tariff_version WHERE created_by = 'seed'")) == 4


async def test_prepaid_charging_applies_a_version_added_while_running_from_its_date(engine: AsyncEngine) -> None:
    """The reading handler as the hub builds it (the book on a shelf): a version added after the handler
    was built prices the days from its date, and only those, without a restart."""
    privacy = Privacy.from_ring(KeyRing.from_settings({"k1": generate_key()}, current="k1"))
    async with engine.begin() as conn:
        await add_versions(conn, prepaid_db.BOOK.versions, by="seed", now=datetime(2025, 1, 1, tzinfo=UTC))
    await prepaid_db.prepaid_meter(engine, privacy, balance="100.00", cycle_m3="0")
    handler = build_handlers(CoreConfig(privacy=privacy, prepaid=prepaid_db.NO_REMINDER,
                                        tariffs=TariffShelf()))["record_reading"].fn
    async with engine.begin() as conn:
        await handler(conn, [prepaid_db.day(1)])  # 2 → 3 June: 1.2 m³ at 3.00
    change = prepaid_db.BOOK.versions[0].model_copy(update={
        "version": "RES-2026-06", "effective_from": date(2026, 6, 4), "prices": (D("3.50"), D("4.20"), D("5.25"))})
    async with engine.begin() as conn:
        await add_versions(conn, (change,), by="api:admin", now=prepaid_db.T0)
    for n in (2, 3):  # 3 → 4 June at 3.00 still; 4 → 5 June at 3.50
        async with engine.begin() as conn:
            await handler(conn, [prepaid_db.day(n)])
    async with engine.connect() as conn:
        entry = prepaid_entry.c
        rows = (await conn.execute(select(entry.amount, entry.balance_after, entry.detail)
                                   .where(entry.kind == "deduction").order_by(entry.balance_after.desc()))).all()
    assert [tuple(r) for r in rows] == [
        (D("-3.60"), D("96.40"), "RES-2025 t1 1.200 m³ × 3.00"),
        (D("-3.60"), D("92.80"), "RES-2025 t1 1.200 m³ × 3.00"),
        (D("-4.20"), D("88.60"), "RES-2026-06 t1 1.200 m³ × 3.50")]
