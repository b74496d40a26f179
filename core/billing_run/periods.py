"""Where billing days begin: local midnight in China Standard Time."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo

CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
"""China Standard Time: UTC+8 all year."""


def period_boundary(day: date, tz: tzinfo = CHINA_TZ) -> datetime:
    """The instant a billing day starts: local midnight, as an aware UTC datetime."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def days_through(moment: datetime, tz: tzinfo = CHINA_TZ) -> date:
    """The first billing day after the one ``moment`` falls on: a period ending at ``moment`` bills
    its whole (local) day, so it ends, exclusive, on the next one."""
    return moment.astimezone(tz).date() + timedelta(days=1)
