"""The ops panel's invoice backlog (``core.payments.invoices.waiting_requests``) reads the partial index
of unanswered requests, not every invoice ever issued, on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.payments.invoices import WAITING, waiting_requests


async def test_the_backlog_is_read_from_the_partial_index(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        assert await waiting_requests(conn) == (0, None)
        sql = str(WAITING.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
        if engine.dialect.name == "postgresql":
            # The table is empty here, where a scan would be cheaper: ask whether the index can serve.
            await conn.execute(text("SET enable_seqscan = off"))
            plan = "\n".join((await conn.execute(text(f"EXPLAIN {sql}"))).scalars())
        else:
            plan = "\n".join(str(r[-1]) for r in await conn.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
    assert "ix_core_invoice_waiting" in plan, plan
