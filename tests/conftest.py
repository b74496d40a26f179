"""Fixtures shared by every test: real servers, and a guard against leaked tasks and threads.

``amqp_url`` and ``postgres_url`` point at real servers (``GASHUB_TEST_AMQP_URL``,
``GASHUB_TEST_DATABASE_URL``). When one is unreachable the test is skipped on a workstation and
fails in CI (``CI=true``): CI never skips silently.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def _unavailable(what: str, url_env: str, error: BaseException) -> None:
    message = f"{what} is not reachable ({error!r}). Start it or set {url_env} to one that runs."
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} In CI this is an error, not a skip.", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """A RabbitMQ that accepts our login (checked with one real AMQP handshake)."""
    import pika

    url = os.environ.get("GASHUB_TEST_AMQP_URL", DEFAULT_AMQP_URL)
    params = pika.URLParameters(url)
    params.socket_timeout = params.stack_timeout = 5
    params.connection_attempts = 1
    try:
        pika.BlockingConnection(params).close()
    except Exception as exc:
        _unavailable(f"RabbitMQ at {params.host}:{params.port}", "GASHUB_TEST_AMQP_URL", exc)
    return url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A PostgreSQL server that accepts a connection (checked with asyncpg)."""
    import asyncpg  # type: ignore[import-untyped]

    url = os.environ.get("GASHUB_TEST_DATABASE_URL", DEFAULT_DATABASE_URL)

    async def check() -> None:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=5)
        await conn.close()

    # In a thread of its own: the fixture may be first asked for from inside a running event loop.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        try:
            pool.submit(asyncio.run, check()).result()
        except Exception as exc:
            _unavailable("PostgreSQL", "GASHUB_TEST_DATABASE_URL", exc)
    return url


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a non-daemon thread running.

    Torn down after the test's event loop is closed, so the loop's executor threads (``getaddrinfo``)
    are already gone.
    """
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2
    while True:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    if leaked:
        pytest.fail(f"the test left threads running: {[t.name for t in leaked]}", pytrace=False)


@pytest.fixture(autouse=True)
async def _no_leaked_tasks(_no_leaked_threads: None) -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks behind (after every other fixture is torn down)."""
    yield
    me = asyncio.current_task()
    for _ in range(10):  # let tasks that were just cancelled finish
        leaked = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        if not leaked:
            return
        await asyncio.sleep(0.01)
    for task in leaked:
        task.cancel()
    pytest.fail(f"the test left tasks running: {sorted(t.get_name() for t in leaked)}", pytrace=False)
