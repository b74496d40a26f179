"""The hub's waiting loops end when cancelled, even when the cancellation arrives as they are woken.

On Python 3.11, ``asyncio.wait_for`` loses a cancellation that arrives in the same loop tick as the
awaited event (cpython#86296): the outbox relay, woken by a core commit while ``Hub.stop`` cancelled
it, ran on, and the stop waited for it forever (an intermittent teardown hang seen under load).
The loops wait with ``asyncio.timeout`` instead."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from hub.outbox_relay import OutboxRelay
from hub.scheduler import Scheduler
from hub.signals import wait_until_stopped


async def _cancel_as_woken(task: asyncio.Task[Any], wake: Any) -> None:
    for _ in range(5):  # let the task reach its wait
        await asyncio.sleep(0)
    wake()  # the wake-up and the cancellation in one tick, as Hub.stop can meet them
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(2):
            await task


async def test_the_outbox_relay_ends_when_cancelled_as_it_is_woken() -> None:
    relay = OutboxRelay(None, {}, None, poll_interval_s=30.0)  # type: ignore[arg-type]

    async def nothing_pending() -> int:
        return 0

    relay.run_once = nothing_pending  # type: ignore[method-assign]
    await _cancel_as_woken(asyncio.create_task(relay.run()), relay.wake)


async def test_the_scheduler_ends_when_cancelled_as_its_entries_change() -> None:
    scheduler = Scheduler()

    async def job() -> None:
        return None

    task = asyncio.create_task(scheduler.run())
    await _cancel_as_woken(task, lambda: scheduler.every("again", timedelta(hours=1), job))


async def test_waiting_for_the_stop_signal_ends_when_cancelled_as_it_is_set() -> None:
    stop = asyncio.Event()
    await _cancel_as_woken(asyncio.create_task(wait_until_stopped(stop, 30.0)), stop.set)
