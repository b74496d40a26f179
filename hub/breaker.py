"""A circuit breaker per connector: while a partner is down, its routes wait instead of burning
retries. After ``failure_threshold`` transient failures in a row the breaker opens; after
``reset_after_s`` one trial call goes through (half-open); its success closes the breaker."""

from __future__ import annotations

import asyncio
import time
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    def __init__(self, name: str, *, failure_threshold: int = 5, reset_after_s: float = 10.0) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = asyncio.Lock()
        self.opened_count = 0

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if time.monotonic() - self._opened_at >= self.reset_after_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def seconds_until_trial(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.reset_after_s - (time.monotonic() - self._opened_at))

    async def wait_ready(self) -> bool:
        """Wait while the breaker is open. Returns True when the caller makes the half-open trial;
        the caller must then report ``success`` or ``failure`` before others may follow."""
        while True:
            state = self.state
            if state is BreakerState.CLOSED:
                return False
            if state is BreakerState.OPEN:
                await asyncio.sleep(self.seconds_until_trial() + 0.001)
                continue
            await self._trial.acquire()
            if self.state is not BreakerState.HALF_OPEN:
                self._trial.release()
                continue
            return True

    def success(self, trial: bool = False) -> None:
        self._failures = 0
        self._opened_at = None
        if trial and self._trial.locked():
            self._trial.release()

    def failure(self, trial: bool = False) -> None:
        self._failures += 1
        if trial or self._failures >= self.failure_threshold:
            if self._opened_at is None or trial:
                self.opened_count += 1
            self._opened_at = time.monotonic()
        if trial and self._trial.locked():
            self._trial.release()

    def neutral(self, trial: bool = False) -> None:
        """The call ended without telling whether the partner works (a permanent error, a
        cancellation): the state stays as it was, and a trial gives its turn to the next caller."""
        if trial and self._trial.locked():
            self._trial.release()
