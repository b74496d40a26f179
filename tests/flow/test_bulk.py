"""Bulk inserts (``core.db.bulk``) on SQLite and PostgreSQL: ``insert_new`` leaves out rows that collide
and says which went in, and on PostgreSQL a ``COPY`` is part of the caller's transaction even when it is
its first statement."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db.bulk import among, insert_columns, insert_new
from core.db.tables import reading

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def readings(ids: list[str], meter: str = "M1") -> dict[str, list[Any]]:
    return {
        "id": ids, "meter_id": [meter] * len(ids),
        "read_at": [T0 + timedelta(hours=int(i.rsplit("-", 1)[1])) for i in ids],
        "volume_m3": [Decimal("1.000")] * len(ids), "source": ["manual"] * len(ids), "quality": [""] * len(ids),
        "message_id": ids,
    }


async def count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(reading)) or 0)


async def test_insert_new_leaves_out_colliding_rows_and_says_which_went_in(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        assert await insert_new(conn, reading, readings(["a-1", "a-2"])) == {"a-1", "a-2"}
    async with engine.begin() as conn:
        # b-2 collides with a-2 on (meter_id, read_at); b-3 is new
        assert await insert_new(conn, reading, readings(["b-2", "b-3"])) == {"b-3"}
        assert await insert_new(conn, reading, readings([])) == set()
    async with engine.connect() as conn:
        assert sorted((await conn.execute(select(reading.c.id))).scalars()) == ["a-1", "a-2", "b-3"]


async def test_bulk_writes_as_the_first_statements_roll_back_with_the_transaction(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        transaction = await conn.begin()
        await insert_columns(conn, reading, readings(["c-1", "c-2"]))  # COPY on PostgreSQL
        assert await insert_new(conn, reading, readings(["c-3"], meter="M2")) == {"c-3"}
        await transaction.rollback()
    assert await count(engine) == 0
    async with engine.connect() as conn:
        transaction = await conn.begin()
        assert await insert_new(conn, reading, readings(["d-1"])) == {"d-1"}  # the savepoint path first
        await transaction.rollback()
    assert await count(engine) == 0


async def test_among_selects_what_in_selects_with_one_statement_text_for_any_count(engine: AsyncEngine) -> None:
    """``among`` finds the same rows as ``IN``; on PostgreSQL it is ``= ANY`` of one array parameter,
    so that batches of any size share one statement (prepared and planned once)."""
    async with engine.begin() as conn:
        await insert_columns(conn, reading, readings(["d-1", "d-2", "d-3", "d-4"]))
    async with engine.connect() as conn:
        for wanted in (["d-2"], ["d-1", "d-3", "zz"], [], ["d-4", "d-4"]):
            got = sorted((await conn.execute(select(reading.c.id).where(among(conn, reading.c.id, wanted)))).scalars())
            assert got == sorted(set(wanted) - {"zz"})
        texts = {str(select(reading.c.id).where(among(conn, reading.c.id, ids)).compile(dialect=conn.dialect))
                 for ids in (["a"], ["a", "b", "c"], [f"x{i}" for i in range(2000)])}
        if conn.dialect.name == "postgresql":
            assert len(texts) == 1
            assert "ANY" in texts.pop()
