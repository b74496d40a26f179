"""When an ordinary SMS may go out: per-number rate limits and quiet hours (local time).

Safety messages (``safety=True``: leaks, valve closures) bypass both. A message that may not go now
is *held*: :class:`Held` says until when, and the route retries it later through its delay queues, so
nothing is dropped. Counts live in this process (Aliyun enforces its own per-number limits too, which
the connector also treats as a hold).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from connectors.aliyun_sms.settings import QuietHours, RateLimit
from hub.errors import ConnectorError


class Held(ConnectorError):
    """Not now: over a number's rate limit or inside quiet hours. Retried later; it is not the partner
    failing, so the circuit breaker does not count it."""

    retriable = True

    def __init__(self, reason: str, until: datetime) -> None:
        super().__init__(f"held until {until.isoformat()}: {reason}")
        self.reason = reason
        self.until = until


class SendPolicy:
    def __init__(self, limits: list[RateLimit], quiet: QuietHours | None, zone: str, *,
                 max_numbers: int = 100_000) -> None:
        self.limits = sorted(limits, key=lambda r: r.per_s)
        self.quiet = quiet
        self.zone = ZoneInfo(zone)
        self.max_numbers = max_numbers
        self._sent: OrderedDict[str, deque[datetime]] = OrderedDict()

    def quiet_until(self, now: datetime) -> datetime | None:
        """The end of the quiet hours ``now`` falls in, or ``None``."""
        if self.quiet is None:
            return None
        local = now.astimezone(self.zone)
        start, end = self.quiet.start, self.quiet.end
        t = local.time()
        inside = (start <= t < end) if start <= end else (t >= start or t < end)
        if not inside:
            return None
        day = local.date() if t < end else local.date() + timedelta(days=1)
        return datetime.combine(day, end, tzinfo=self.zone)

    def check(self, phone: str, now: datetime) -> None:
        """Raise :class:`Held` when an ordinary message to ``phone`` may not go at ``now``."""
        until = self.quiet_until(now)
        if until is not None:
            raise Held("quiet hours", until)
        times = self._sent.get(phone)
        if not times:
            return
        for limit in self.limits:
            since = now - timedelta(seconds=limit.per_s)
            recent = [t for t in times if t > since]
            if len(recent) >= limit.count:
                oldest = recent[-limit.count]
                raise Held(f"rate limit {limit.count} per {limit.per_s}s", oldest + timedelta(seconds=limit.per_s))

    def record(self, phone: str, now: datetime) -> None:
        """Count a message sent to ``phone`` (safety ones too: they use up the number's budget)."""
        keep = self.limits[-1].per_s if self.limits else 0
        times = self._sent.pop(phone, deque())
        times.append(now)
        while times and times[0] <= now - timedelta(seconds=keep):
            times.popleft()
        self._sent[phone] = times
        while len(self._sent) > self.max_numbers:
            self._sent.popitem(last=False)

    def release(self, phone: str, at: datetime) -> None:
        """Take back a message counted at ``at`` that did not go out."""
        times = self._sent.get(phone)
        if times is not None and at in times:
            times.remove(at)
