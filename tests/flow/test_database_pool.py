"""The hub's PostgreSQL pool pings a connection only after it sat idle (``hub.store.db.ping_when_idle``):
a connection dropped by the server while idle is replaced before use, and one in steady use costs no
ping round trip."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text

from hub.app import Hub
from hub.settings import load_settings
from hub.store.db import Database


async def _backend_pid(db: Database) -> int:
    async with db.read() as conn:
        return int(await conn.scalar(text("SELECT pg_backend_pid()")) or 0)


async def _terminate(postgres_url: str, pid: int) -> None:
    admin = await asyncpg.connect(postgres_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid) is True
    finally:
        await admin.close()


async def test_a_connection_dropped_while_idle_is_replaced_before_use(postgres_url: str) -> None:
    db = Database(postgres_url, pool_size=1, ping_after=0.0)
    try:
        first = await _backend_pid(db)
        await _terminate(postgres_url, first)  # the server drops the pooled connection while it is idle
        second = await _backend_pid(db)  # no error: the ping failed and the pool connected again
        assert second not in (0, first)
    finally:
        await db.aclose()


async def _pings_over_five_checkouts(postgres_url: str, ping_after: float) -> int:
    db = Database(postgres_url, pool_size=1, ping_after=ping_after)
    dialect = db.engine.dialect
    real_ping = dialect.do_ping
    pings = 0

    def counting_ping(dbapi_connection: object) -> bool:
        nonlocal pings
        pings += 1
        return real_ping(dbapi_connection)

    dialect.do_ping = counting_ping  # type: ignore[method-assign]
    try:
        for _ in range(6):  # the first checkout makes the connection; five more reuse it
            await _backend_pid(db)
    finally:
        await db.aclose()
    return pings


async def test_a_connection_in_steady_use_is_not_pinged(postgres_url: str) -> None:
    assert await _pings_over_five_checkouts(postgres_url, ping_after=60.0) == 0
    assert await _pings_over_five_checkouts(postgres_url, ping_after=0.0) == 5


async def test_the_pools_hold_database_pool_size_connections(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``GASHUB_DATABASE_POOL_SIZE`` sizes both pools of a hub process, with no overflow connections."""
    (tmp_path / "gashub.toml").write_text("# no connectors\n")
    monkeypatch.setenv("GASHUB_CONFIG", str(tmp_path / "gashub.toml"))
    (tmp_path / "routes").mkdir()
    hub = Hub.build(load_settings(database_url=postgres_url, database_pool_size=3, routes_dir=tmp_path / "routes"))
    try:
        for engine in (hub.db.engine, hub.db.reads_engine):
            pool = engine.pool
            assert (pool.size(), pool._max_overflow) == (3, 0)  # type: ignore[attr-defined]
            held = [await engine.connect() for _ in range(3)]
            with pytest.raises(TimeoutError):  # a fourth waits for one of the three
                await asyncio.wait_for(engine.connect(), 0.5)
            for conn in held:
                await conn.close()
    finally:
        await hub.db.aclose()
