"""`gashub keys rotate`: every encrypted field moves to the current key, blind indexes follow, a run
can be repeated, and afterwards the old key can be dropped — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from core.accounts import (
    CustomerIn,
    Privacy,
    find_by_id_number,
    find_by_phone,
    get_account,
    id_check_digit,
    open_account,
)
from core.accounts.rotation import ENCRYPTED_TABLES, rotate_keys
from core.db.schema import metadata
from core.db.tables_accounts import customer, premises
from core.privacy import KeyRing, generate_key
from core.privacy.crypto import key_id_of
from hub import cli
from hub.migrations import upgrade
from tests.flow.conftest import fresh_postgres_database
from tests.flow.test_accounts_db import ALICE, HOME, T0

K1, K2 = generate_key(), generate_key()


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/rotation.db"
        return
    url, drop = await fresh_postgres_database(request.getfixturevalue("postgres_url"))
    try:
        yield url
    finally:
        await drop()


def _people(n: int) -> list[CustomerIn]:
    out = []
    for i in range(n):
        base = f"33060219900101{i:03d}"
        out.append(CustomerIn(name=f"王{i}", phone=f"1391234{i:04d}", id_number=base + id_check_digit(base),
                              address=f"绍兴市越城区胜利路{i}号"))
    return out


async def _seed(eng: AsyncEngine, privacy: Privacy, people: list[CustomerIn]) -> list[str]:
    ids = []
    for i, person in enumerate(people):
        async with eng.begin() as conn:
            view = await open_account(conn, privacy, f"req-{i}", person, HOME, "residential", "postpaid", opened_at=T0)
            ids.append(view.account_id)
    return ids


async def _key_ids(eng: AsyncEngine) -> set[str]:
    async with eng.connect() as conn:
        rows = (await conn.execute(select(customer.c.name_enc, customer.c.phone_enc, customer.c.id_number_enc,
                                          customer.c.address_enc))).all()
        places = (await conn.execute(select(premises.c.address_enc))).all()
    return {key_id_of(token) for row in [*rows, *places] for token in row if token is not None}


async def test_rotation_moves_every_field_and_index_to_the_new_key(db_url: str) -> None:
    await asyncio.to_thread(upgrade, db_url)
    eng = create_async_engine(db_url)
    try:
        old = Privacy.from_ring(KeyRing.from_settings({"k1": K1}, current="k1"))
        people = [ALICE, *_people(6)]
        ids = await _seed(eng, old, people)
        assert await _key_ids(eng) == {"k1"}

        both = Privacy.from_ring(KeyRing.from_settings({"k1": K1, "k2": K2}, current="k2"))
        dry = await rotate_keys(eng.begin, both, chunk=3, dry_run=True)
        assert [(r.table, r.reencrypted) for r in dry] == [("core_customer", 7), ("core_premises", 7),
                                                           ("core_invoice", 0), ("core_sms_reply", 0)]
        assert await _key_ids(eng) == {"k1"}  # a dry run writes nothing

        seen: list[int] = []
        reports = await rotate_keys(eng.begin, both, chunk=3, progress=seen.append)
        assert sum(seen) == 14
        assert {(r.table, r.rows, r.reencrypted, r.reindexed) for r in reports} == {
            ("core_customer", 7, 7, 7), ("core_premises", 7, 7, 0), ("core_invoice", 0, 0, 0),
            ("core_sms_reply", 0, 0, 0)}
        assert await _key_ids(eng) == {"k2"}
        again = await rotate_keys(eng.begin, both)
        assert sum(r.changed for r in again) == 0  # idempotent

        # The old key is gone from the ring: everything still decrypts and is found by phone and ID.
        new_only = Privacy.from_ring(KeyRing.from_settings({"k2": K2}, current="k2"))
        async with eng.connect() as conn:
            found = await find_by_phone(conn, new_only, ALICE.phone, reveal=True)
            assert [a.account_id for a in found] == [ids[0]]
            assert found[0].holder.name == ALICE.name
            assert [a.account_id for a in await find_by_id_number(conn, new_only, people[3].id_number)] == [ids[3]]
            view = await get_account(conn, new_only, ids[5], reveal=True)
            assert view.holder.address == people[5].address
    finally:
        await eng.dispose()


async def test_cli_rotates_and_refuses_without_keys(db_url: str, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    await asyncio.to_thread(upgrade, db_url)
    eng = create_async_engine(db_url)
    try:
        await _seed(eng, Privacy.from_ring(KeyRing.from_settings({"k1": K1}, current="k1")), _people(3))
    finally:
        await eng.dispose()
    monkeypatch.setenv("GASHUB_DATABASE_URL", db_url)
    assert await asyncio.to_thread(cli.main, ["keys", "rotate"]) == 1
    assert "GASHUB_CORE__KEYS__" in capsys.readouterr().err

    monkeypatch.setenv("GASHUB_CORE__KEYS__K1", K1)
    monkeypatch.setenv("GASHUB_CORE__KEYS__K2", K2)
    monkeypatch.setenv("GASHUB_CORE__CURRENT_KEY", "k2")
    assert await asyncio.to_thread(cli.main, ["keys", "rotate", "--dry-run"]) == 0
    assert "dry run: 6 rows would change; nothing was written" in capsys.readouterr().out
    assert await asyncio.to_thread(cli.main, ["keys", "rotate"]) == 0
    out = capsys.readouterr().out
    assert "core_customer: 3 rows, re-encrypted 3, blind indexes rebuilt 3" in out
    assert await asyncio.to_thread(cli.main, ["keys", "rotate"]) == 0
    assert "older keys may now be removed" in capsys.readouterr().out


def test_every_encrypted_column_is_rotated() -> None:
    covered = {(spec.table.name, column) for spec in ENCRYPTED_TABLES for column in spec.fields.values()}
    in_schema = {(table.name, column.name) for table in metadata.sorted_tables for column in table.columns
                 if column.name.endswith("_enc")}
    assert in_schema <= covered, f"add these to core.accounts.rotation.ENCRYPTED_TABLES: {in_schema - covered}"
