"""Waiting for Ctrl-C, SIGTERM, a time limit or the parent's death, the same way in every long-running
command."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

log = logging.getLogger(__name__)


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (where the platform lets the loop handle signals)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait for ``event`` at most ``seconds``; True when it was set. A cancellation always gets
    through: ``asyncio.timeout``, never ``asyncio.wait_for``, which on Python 3.11 loses a cancellation
    that arrives as the event fires (cpython#86296) and so kept a stopping hub's loops running."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
            return True
    return False


async def wait_until_stopped(stop: asyncio.Event, duration: float | None) -> None:
    """Return when ``stop`` is set or, with a ``duration``, when that many seconds have passed."""
    if duration is None:
        await stop.wait()
        return
    await wait_event(stop, duration)


async def stop_when_orphaned(stop: asyncio.Event, parent: int, every: float = 1.0) -> None:
    """Set ``stop`` once this process's parent is no longer ``parent`` (it died, even by SIGKILL, and the
    process was handed to another). A child of ``gashub api --processes N`` must not serve the port on
    its own: a supervisor restarting the group would share the port with an orphan running the old code
    and settings, and the kernel would give the orphan a share of the connections."""
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning("hub.parent_gone", extra={"parent": parent, "pid": os.getpid()})
            stop.set()
            return
        await wait_event(stop, every)
