"""The PostgreSQL pool hands connections out first come, first served (hub/store/fair_pool.py), on
real asyncpg connections: a task that asks right after giving a connection back does not overtake
one already waiting; a waiter that times out or is cancelled leaves no connection behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from hub.store.db import Database
from hub.store.fair_pool import FairPool, FairQueue
from tests.flow.conftest import eventually


@pytest.fixture
async def one_connection(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(postgres_url, poolclass=FairPool, pool_size=1, max_overflow=0, pool_timeout=0.3)
    try:
        yield engine
    finally:
        await engine.dispose()


def _queue(engine: AsyncEngine) -> FairQueue[object]:
    pool = engine.sync_engine.pool
    assert isinstance(pool, FairPool)
    queue = pool._pool
    assert isinstance(queue, FairQueue)
    return queue


async def _newcomer_at_release(engine: AsyncEngine) -> list[str]:
    """A holds the only connection and B waits for it; as A gives it back, C arrives (a task started
    by the pool's checkin event, as a new request would arrive between the release and B's turn)."""
    order: list[str] = []
    loop = asyncio.get_running_loop()
    newcomer: list[asyncio.Task[None]] = []

    async def use(name: str) -> None:
        async with engine.connect() as conn:
            order.append(name)
            await conn.execute(text("SELECT 1"))

    def on_checkin(*_: object) -> None:
        if not newcomer:
            newcomer.append(loop.create_task(use("C")))

    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
        waiter = asyncio.create_task(use("B"))
        await eventually(lambda: _waiting(engine) == 1, what="B waiting")
        event.listen(engine.sync_engine.pool, "checkin", on_checkin)
    await asyncio.wait_for(waiter, 10)
    await asyncio.wait_for(newcomer[0], 10)
    event.remove(engine.sync_engine.pool, "checkin", on_checkin)
    return order


def _waiting(engine: AsyncEngine) -> int:
    queue = engine.sync_engine.pool._pool  # type: ignore[attr-defined]
    if isinstance(queue, FairQueue):
        return queue.waiting()
    return len(queue._queue._getters)


async def test_a_waiting_task_is_served_before_a_newcomer(one_connection: AsyncEngine) -> None:
    assert await _newcomer_at_release(one_connection) == ["B", "C"]


async def test_the_default_pool_lets_the_newcomer_overtake(postgres_url: str) -> None:
    """Why FairPool exists: SQLAlchemy's own pool serves the newcomer first."""
    engine = create_async_engine(postgres_url, poolclass=AsyncAdaptedQueuePool, pool_size=1, max_overflow=0)
    try:
        assert await _newcomer_at_release(engine) == ["C", "B"]
    finally:
        await engine.dispose()


async def test_a_waiter_that_times_out_or_is_cancelled_leaves_nothing_behind(one_connection: AsyncEngine) -> None:
    engine = one_connection
    queue = _queue(engine)
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
        with pytest.raises(PoolTimeout):
            async with engine.connect():
                pass
        assert queue.waiting() == 0
        cancelled = asyncio.create_task(engine.connect().__aenter__())
        await eventually(lambda: queue.waiting() == 1, what="a waiter")
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert queue.waiting() == 0
    # The connection came back to the pool, idle, and serves the next task at once.
    assert (engine.sync_engine.pool.checkedout(), queue.qsize()) == (0, 1)
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT 2")) == 2


async def test_many_tasks_on_a_small_pool_are_served_in_arrival_order(one_connection: AsyncEngine) -> None:
    engine = one_connection
    served: list[int] = []

    async def task(n: int) -> None:
        async with engine.connect() as conn:
            served.append(n)
            await conn.execute(text("SELECT pg_sleep(0.005)"))

    tasks = []
    for n in range(20):
        tasks.append(asyncio.create_task(task(n)))
        await asyncio.sleep(0)  # each asks before the next is created
    await asyncio.wait_for(asyncio.gather(*tasks), 20)
    assert served == list(range(20))


async def test_the_hub_database_uses_the_fair_pool(postgres_url: str) -> None:
    db = Database(postgres_url)
    try:
        assert isinstance(db.engine.sync_engine.pool, FairPool)
        assert isinstance(db.reads_engine.sync_engine.pool, FairPool)
    finally:
        await db.aclose()
