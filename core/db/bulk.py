"""Dialect-aware bulk inserts: one statement per batch, whatever the batch size.

PostgreSQL gets ``INSERT … SELECT * FROM unnest($1::t1[], $2::t2[], …)``: a single prepared
statement whose cost barely grows with the batch. SQLite gets an ``executemany``. Both can ignore
rows that collide with a unique key and return the keys that were really inserted, which is how
idempotent handlers learn which messages are new.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Table, insert, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

_PG = postgresql.dialect()  # type: ignore[no-untyped-call]


@lru_cache(maxsize=256)
def _pg_statement(table: Table, columns: tuple[str, ...], ignore: bool, returning: tuple[str, ...]) -> Any:
    casts = ", ".join(
        f"CAST(:{name} AS {table.c[name].type.compile(dialect=_PG)}[])" for name in columns
    )
    cols = ", ".join(f'"{name}"' for name in columns)
    # Identifiers come from our own Table objects, values travel as bound arrays.
    sql = f'INSERT INTO "{table.name}" ({cols}) SELECT * FROM unnest({casts})'  # noqa: S608
    if ignore:
        sql += " ON CONFLICT DO NOTHING"
    if returning:
        sql += " RETURNING " + ", ".join(f'"{name}"' for name in returning)
    return text(sql)


async def insert_many(
    conn: AsyncConnection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    ignore_conflicts: bool = False,
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """Insert ``rows`` (all with the same keys); return the ``returning`` columns of inserted rows."""
    if not rows:
        return []
    columns = tuple(rows[0].keys())
    dialect = conn.dialect.name
    if dialect == "postgresql":
        stmt = _pg_statement(table, columns, ignore_conflicts, tuple(returning))
        params = {name: [row[name] for row in rows] for name in columns}
        result = await conn.execute(stmt, params)
        return [tuple(r) for r in result] if returning else []
    if dialect == "sqlite":
        sstmt = sqlite.insert(table)
        if ignore_conflicts:
            sstmt = sstmt.on_conflict_do_nothing()
        if returning:
            result = await conn.execute(
                sstmt.returning(*(table.c[n] for n in returning), sort_by_parameter_order=True),
                list(rows),
            )
            return [tuple(r) for r in result]
        await conn.execute(sstmt, list(rows))
        return []
    # Any other database: portable, slower.
    out: list[tuple[Any, ...]] = []
    for row in rows:
        stmt = insert(table).values(**row)
        if returning:
            res = await conn.execute(stmt.returning(*(table.c[n] for n in returning)))
            out.extend(tuple(r) for r in res)
        else:
            await conn.execute(stmt)
    return out
