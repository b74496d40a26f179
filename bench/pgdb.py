"""A throwaway PostgreSQL database for a benchmark run: created empty through asyncpg and dropped
afterwards (with ``FORCE``, so connections a run left open do not keep it)."""

from __future__ import annotations

import uuid

import asyncpg


def _admin_dsn(pg: str) -> str:
    return pg.replace("postgresql+asyncpg://", "postgresql://")


async def fresh_database(pg: str, prefix: str = "gh_bench") -> str:
    """A new empty database on ``pg``'s server, named ``{prefix}_`` and eight hex digits; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(_admin_dsn(pg))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return pg.rsplit("/", 1)[0] + "/" + name


async def drop_database(pg: str, url: str) -> None:
    """Drop the database at ``url`` (made by :func:`fresh_database` on ``pg``'s server), if it is there."""
    conn = await asyncpg.connect(_admin_dsn(pg))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await conn.close()
