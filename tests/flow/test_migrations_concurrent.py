"""Several processes migrating one fresh PostgreSQL database at once, as ``gashub run`` and the
``gashub worker`` processes do when a supervisor starts them together: every one succeeds and the
database ends at head with its tariff book stored once. (Before the migration lock, all but one
failed creating the same tables: ``pg_type_typname_nsp_index``.)"""

from __future__ import annotations

import asyncio
import sys

import asyncpg
from alembic.script import ScriptDirectory

from hub.migrations import alembic_config
from tests.cli_env import REPO as ROOT
from tests.cli_env import clean_env
from tests.flow.conftest import fresh_postgres_database


async def test_three_processes_migrating_a_fresh_database_at_once_all_succeed(postgres_url: str) -> None:
    url, drop = await fresh_postgres_database(postgres_url)
    try:
        env = clean_env(GASHUB_DATABASE_URL=url, GASHUB_LOG_LEVEL="WARNING")
        procs = [await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hub.cli", "db", "upgrade", cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT) for _ in range(3)]
        async with asyncio.timeout(180):
            outputs = await asyncio.gather(*(p.communicate() for p in procs))
        failed = [out[0].decode()[-2000:] for p, out in zip(procs, outputs, strict=True) if p.returncode != 0]
        assert not failed, failed
        head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            assert await conn.fetchval("SELECT version_num FROM alembic_version") == head
            assert await conn.fetchval("SELECT count(*) FROM core_tariff_version") == 4
        finally:
            await conn.close()
    finally:
        await drop()
