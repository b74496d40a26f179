"""core.db.bulk against a real PostgreSQL and SQLite: the fast paths give the same rows and the same
answers as INSERT … ON CONFLICT DO NOTHING, whatever collides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db.bulk import insert_columns
from core.db.tables import reading
from hub.store.tables import processed

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def readings(ids: list[str], *, meter: str = "M1", offset: int = 0) -> dict[str, list[Any]]:
    n = len(ids)
    return {"id": ids, "meter_id": [meter] * n, "read_at": [T0 + timedelta(hours=offset + i) for i in range(n)],
            "volume_m3": [Decimal(i) for i in range(n)], "source": ["vendor"] * n, "quality": [""] * n,
            "message_id": ids}


async def insert(eng: AsyncEngine, cols: dict[str, list[Any]], **kw: Any) -> list[tuple[Any, ...]]:
    async with eng.begin() as conn:
        # The insert is the transaction's first statement: the fast path must still be inside it.
        return await insert_columns(conn, reading, cols, ignore_conflicts=True, returning=("id",), **kw)


async def stored(eng: AsyncEngine) -> list[str]:
    async with eng.connect() as conn:
        return list((await conn.execute(select(reading.c.id).order_by(reading.c.id))).scalars())


@pytest.mark.parametrize("skip_stored", [False, True])
async def test_mostly_new_matches_on_conflict_do_nothing(engine: AsyncEngine, skip_stored: bool) -> None:
    fast = {"mostly_new": True, "skip_stored": skip_stored}
    assert await insert(engine, readings(["a", "b", "c"]), **fast) == [("a",), ("b",), ("c",)]
    # b and c again, d new, d twice in the batch: only d, once.
    again = readings(["b", "c", "d", "d"], offset=10)
    assert await insert(engine, again, **fast) == [("d",)]
    assert await stored(engine) == ["a", "b", "c", "d"]
    # e collides with a on the other unique key (meter, time), not the primary key: e is dropped and
    # f goes in, as ON CONFLICT DO NOTHING would do.
    clash = readings(["e", "f"], offset=0)
    clash["read_at"][1] = T0 + timedelta(hours=99)
    assert await insert(engine, clash, **fast) == [("f",)]
    assert await stored(engine) == ["a", "b", "c", "d", "f"]


async def test_a_failed_transaction_takes_the_fast_path_rows_with_it(engine: AsyncEngine) -> None:
    async def fail_after_insert() -> None:
        async with engine.begin() as conn:
            await insert_columns(conn, reading, readings(["x", "y"]), ignore_conflicts=True, mostly_new=True)
            raise RuntimeError("the handler failed after the insert")

    with pytest.raises(RuntimeError):
        await fail_after_insert()
    assert await stored(engine) == []


async def test_ledger_claims_through_the_fast_path(engine: AsyncEngine) -> None:
    async def claim(ids: list[str]) -> set[str]:
        cols = {"route": ["r"] * len(ids), "message_id": ids, "processed_us": [1] * len(ids),
                "reply": [None] * len(ids)}
        async with engine.begin() as conn:
            rows = await insert_columns(conn, processed, cols, ignore_conflicts=True, returning=("message_id",),
                                        mostly_new=True)
        return {r[0] for r in rows}

    assert await claim(["m1", "m2"]) == {"m1", "m2"}
    assert await claim(["m2", "m3", "m3"]) == {"m3"}
