"""A small in-process scheduler for periodic jobs (reminders, exports, reconciliation, backups).

Jobs run at a fixed interval or daily at a wall-clock time in the company's time zone. A job that
raises is logged and runs again at its next time; a job still running when its time comes again is
skipped, not stacked. Jobs that must run once across many processes take a database lock themselves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from hub.signals import wait_event

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]
COMPANY_TZ = ZoneInfo("Asia/Shanghai")


@dataclass
class _Entry:
    name: str
    job: Job
    every: timedelta | None
    at: time | None
    next_run: datetime
    running: bool = False
    runs: int = 0
    failures: int = 0
    last_error: str = ""


class Scheduler:
    def __init__(self, tz: ZoneInfo = COMPANY_TZ) -> None:
        self.tz = tz
        self._entries: dict[str, _Entry] = {}
        self._changed = asyncio.Event()

    def every(self, name: str, interval: timedelta, job: Job) -> None:
        self._entries[name] = _Entry(name, job, interval, None, datetime.now(self.tz) + interval)
        self._changed.set()

    def daily(self, name: str, at: time, job: Job) -> None:
        self._entries[name] = _Entry(name, job, None, at, self._next_daily(at))
        self._changed.set()

    def _next_daily(self, at: time) -> datetime:
        now = datetime.now(self.tz)
        candidate = now.replace(hour=at.hour, minute=at.minute, second=at.second, microsecond=0)
        return candidate if candidate > now else candidate + timedelta(days=1)

    def jobs(self) -> list[dict[str, object]]:
        return [{"name": e.name, "next_run": e.next_run.isoformat(), "runs": e.runs, "failures": e.failures,
                 "last_error": e.last_error, "running": e.running} for e in self._entries.values()]

    async def run(self) -> None:
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                now = datetime.now(self.tz)
                for entry in self._entries.values():
                    if entry.next_run <= now:
                        entry.next_run = (now + entry.every) if entry.every else self._next_daily(entry.at or time())
                        if not entry.running:
                            task = asyncio.get_running_loop().create_task(self._run(entry), name=f"job:{entry.name}")
                            running.add(task)
                            task.add_done_callback(running.discard)
                wait = min((e.next_run for e in self._entries.values()), default=now + timedelta(seconds=60)) - now
                self._changed.clear()
                await wait_event(self._changed, max(0.01, wait.total_seconds()))
        finally:
            for task in running:
                task.cancel()

    async def _run(self, entry: _Entry) -> None:
        entry.running = True
        try:
            await entry.job()
            entry.runs += 1
        except Exception as exc:
            entry.failures += 1
            entry.last_error = repr(exc)[:300]
            log.exception("scheduler.job_failed", extra={"job": entry.name})
        finally:
            entry.running = False
