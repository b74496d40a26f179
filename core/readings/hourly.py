"""Hourly use from register readings, for the leak rule (``MeterContext.hourly_use_m3``).

Meters report at their own times, not on the hour. The use between two consecutive actual readings
is spread evenly over their interval, and each clock hour sums its share. An hour is known only
when intervals cover all of it and every one of them is trustworthy: no longer than ``max_gap``
(a longer interval says nothing about any one hour, unless nothing at all was used, which makes each
of its hours a known zero) and not negative (the register went back). Unknown hours are ``None``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

from core.readings.register import SECONDS_PER_HOUR, seconds

HOUR = timedelta(hours=1)


def hour_floor(moment: datetime) -> datetime:
    """The start of the clock hour holding ``moment`` (UTC; China's offset is a whole number of hours)."""
    utc = moment.astimezone(UTC)
    return utc.replace(minute=0, second=0, microsecond=0)


def hourly_use(
    readings: Sequence[tuple[datetime, Decimal]], *, end: datetime, hours: int, max_gap: timedelta
) -> tuple[Decimal | None, ...]:
    """Use in each of the ``hours`` clock hours before ``end`` (an hour boundary), oldest first.

    ``readings`` are ``(read_at, register m³)`` of actual readings in time order, one per time.
    """
    if hour_floor(end) != end.astimezone(UTC):
        raise ValueError(f"end {end.isoformat()} is not on the hour")
    start = end - hours * HOUR
    use = [Decimal(0)] * hours
    covered = [Decimal(0)] * hours
    unknown = [False] * hours
    for (a, va), (b, vb) in pairwise(readings):
        if b <= a:
            raise ValueError("readings must be in time order, one per time")
        lo, hi = max(a, start), min(b, end)
        if hi <= lo:
            continue
        used = vb - va
        known = used == 0 or (used > 0 and b - a <= max_gap)
        length = seconds(b - a)
        i = int(seconds(lo - start) // SECONDS_PER_HOUR)
        while i < hours and start + i * HOUR < hi:
            h_lo, h_hi = max(lo, start + i * HOUR), min(hi, start + (i + 1) * HOUR)
            if not known:
                unknown[i] = True
            else:
                overlap = seconds(h_hi - h_lo)
                covered[i] += overlap
                use[i] += used * overlap / length
            i += 1
    return tuple(
        None if unknown[i] or covered[i] < SECONDS_PER_HOUR else use[i]
        for i in range(hours)
    )
