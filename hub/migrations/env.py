"""Alembic environment: runs migrations over the async engine for both metadatas.

On PostgreSQL one process migrates at a time: ``gashub run`` and every ``gashub worker`` migrate at
start, and a supervisor starting several on a fresh database made them create the same tables at
once (all but one failed on PostgreSQL's catalogue). Each takes a transaction advisory lock first;
the later ones then find the database at head and do nothing."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from core.db import locks
from core.db.schema import metadata as core_metadata
from hub.store.tables import metadata as hub_metadata

target_metadata = [hub_metadata, core_metadata]


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            await locks.hold_until_commit(conn, locks.MIGRATION)
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported: run `gashub db upgrade` against a database")
asyncio.run(_main())
