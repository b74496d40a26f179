"""The migrations build exactly the tables the code declares, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from core.db.schema import metadata as core_metadata
from hub.migrations import upgrade
from hub.store.tables import metadata as hub_metadata
from tests.flow.conftest import fresh_postgres_database


async def _differences(url: str) -> list[object]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:

            def compare(sync: Connection) -> list[object]:
                context = MigrationContext.configure(sync, opts={"compare_type": True})
                return list(compare_metadata(context, [hub_metadata, core_metadata]))

            return await conn.run_sync(compare)
    finally:
        await engine.dispose()


async def test_migrations_match_the_models_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/m.db"
    await asyncio.to_thread(upgrade, url)
    await asyncio.to_thread(upgrade, url)  # a second run changes nothing
    assert await _differences(url) == []


async def test_migrations_match_the_models_on_postgresql(postgres_url: str) -> None:
    url, drop = await fresh_postgres_database(postgres_url)
    try:
        await asyncio.to_thread(upgrade, url)
        assert await _differences(url) == []
    finally:
        await drop()
