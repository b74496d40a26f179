"""PostgreSQL advisory locks held to the end of the caller's transaction: one process at a time through
work that reads then writes shared rows (a migration, adding tariff versions). Elsewhere (SQLite, the
single-process embedded default) nothing is taken."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

MIGRATION = 0x6761736875625F6D
"""``hub/migrations/env.py``: one migrating process at a time ("gashub_m" in ASCII)."""
ADD_TARIFF_VERSIONS = 0x6761736875625F74
"""``core.tariffs.add_versions``: one adder at a time ("gashub_t" in ASCII)."""


async def hold_until_commit(conn: AsyncConnection, key: int) -> None:
    """Wait for, then hold, the advisory lock ``key`` until ``conn``'s transaction ends (PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
