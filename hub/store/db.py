"""The database handle shared by the hub and the core handlers it calls.

One ``Database`` per process, built by the composition root from the settings and passed down.
SQLite (the embedded default) gets WAL mode and a single writer at a time; PostgreSQL a pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from core.catalogue import CATALOGUE
from hub.errors import ConfigError
from hub.store.fair_pool import FairPool
from hub.store.sealing import BodySealer

PING_AFTER_IDLE_S = 10.0
"""A pooled PostgreSQL connection idle this long is pinged before use (see ``ping_when_idle``)."""


class Database:
    """An async engine plus a write gate for SQLite's single writer."""

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False,
                 ping_after: float = PING_AFTER_IDLE_S) -> None:
        parsed = make_url(url)
        self.url = url
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo}
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
        elif self.dialect == "postgresql":
            if parsed.get_driver_name() != "asyncpg":
                raise ConfigError(
                    f"database driver {parsed.get_driver_name()!r} is not async: "
                    "use a postgresql+asyncpg:// URL",
                    where="database_url",
                )
            # A fixed pool: the same cap as 5 + 5 overflow had, without opening and closing the overflow
            # connections as load comes and goes (a PostgreSQL backend per connect: that churn cost
            # the API a fifth of its CPU under 50 clients).
            kwargs.update(pool_size=pool_size, max_overflow=0)
            # First come, first served when every connection is in use (hub/store/fair_pool.py): the
            # default pool lets a newcomer overtake tasks already waiting, which made the API's tail.
            kwargs["poolclass"] = FairPool
            # Plans made for the values at hand: the hub's statements are few per batch, and a generic
            # plan cached while a table was nearly empty (a key lookup planned as a sequential scan) was
            # kept while the table grew, until PostgreSQL analysed it again.
            kwargs["connect_args"] = {"server_settings": {"plan_cache_mode": "force_custom_plan"}}
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.dialect == "postgresql":
            ping_when_idle(self.engine, ping_after)
        self._engine_kwargs, self._ping_after = kwargs, ping_after
        self._reads_engine: AsyncEngine | None = None
        self._write_gate = asyncio.Lock() if self.dialect == "sqlite" else None
        self.sealer = BodySealer(CATALOGUE)
        """Seals stored bodies that carry personal data; the hub gives it the key ring at start-up."""
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that commits on exit and rolls back on error."""
        if self._write_gate is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_gate, self.engine.begin() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    @property
    def reads_engine(self) -> AsyncEngine:
        """For the API's page reads (``core.db.combined``): on PostgreSQL, connections that keep generic
        plans (``plan_cache_mode = force_generic_plan``). PostgreSQL otherwise plans the account
        overview's one statement of a dozen subqueries afresh at each execution: 0.9 ms of planning for
        0.2 ms of work. Only these reads use them: other queries (time ranges on large tables) keep the
        planner's choice per value. Elsewhere, the one engine."""
        if self.dialect != "postgresql":
            return self.engine
        if self._reads_engine is None:
            kwargs = dict(self._engine_kwargs)
            kwargs["connect_args"] = {"server_settings": {"plan_cache_mode": "force_generic_plan"}}
            self._reads_engine = create_async_engine(self.url, **kwargs)
            ping_when_idle(self._reads_engine, self._ping_after)
        return self._reads_engine

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self.engine.dispose()
        if self._reads_engine is not None:
            with contextlib.suppress(Exception):
                await self._reads_engine.dispose()


def ping_when_idle(engine: AsyncEngine, after: float) -> None:
    """Ping a pooled connection before handing it out only when it sat idle in the pool for more than
    ``after`` seconds; a failed ping makes the pool replace it (``DisconnectionError``: the pool retries
    with a new connection), as ``pool_pre_ping`` would.

    ``pool_pre_ping`` pings on every checkout: a round trip per API request or per worker batch, which
    was a tenth of the account overview's cost. A connection in steady use has just proven itself; one
    that sat idle may have been dropped by a database restart or a firewall, and that is when a ping
    pays. A connection that dies while in steady use fails the statement it runs; SQLAlchemy then
    invalidates the pool, and the caller's retry (the route's policy, the API client's) gets a new one.
    """
    dialect = engine.dialect
    pool = engine.sync_engine.pool

    def checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info["gashub_idle_since"] = time.monotonic()

    def checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("gashub_idle_since")
        if since is None or time.monotonic() - since <= after:
            return
        try:
            dialect.do_ping(dbapi_conn)
        except Exception as exc:  # any failure: let the pool replace this connection
            raise DisconnectionError(f"pooled connection failed its ping after {after:g} s idle: {exc}") from exc

    event.listen(pool, "checkin", checked_in)
    event.listen(pool, "checkout", checked_out)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
