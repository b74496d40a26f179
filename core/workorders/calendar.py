"""When an SLA clock runs out: minutes around the clock, or working days on the company's calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from core.workorders.settings import SlaCommitment, WorkOrderSettings


def is_working_day(day: date, settings: WorkOrderSettings) -> bool:
    if day in settings.extra_working_days:
        return True
    return day.weekday() < 5 and day not in settings.holidays


def due_at(opened_at: datetime, sla: SlaCommitment, settings: WorkOrderSettings) -> datetime:
    """The deadline, in UTC. ``working_days=n``: the end (local midnight) of the n-th working day after
    the local day the order was opened on, whatever the hour it was opened."""
    if sla.minutes is not None:
        return (opened_at + timedelta(minutes=sla.minutes)).astimezone(UTC)
    assert sla.working_days is not None
    zone = settings.zone
    day = opened_at.astimezone(zone).date()
    left = sla.working_days
    while left:
        day += timedelta(days=1)
        if is_working_day(day, settings):
            left -= 1
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
