"""The daily reading checks from the hub's side: the scheduled job and the CLI's run. The checks are
the core's (``core.reading_checks.run_reading_checks``): idempotent per rule, subject and day, so the
job and ``gashub readings check`` may both run on a day without recording anything twice."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from core.reading_checks import CHECKS, CheckResult, run_reading_checks
from core.readings import ReadingsSettings, RuleId
from hub.scheduler import COMPANY_TZ
from hub.store.db import Database

log = logging.getLogger(__name__)

__all__ = ["CHECKS", "check_readings", "summary"]


async def check_readings(
    db: Database,
    settings: ReadingsSettings,
    *,
    now: datetime | None = None,
    progress: Callable[[RuleId, CheckResult], None] | None = None,
) -> CheckResult:
    """One run of the checks in one transaction; its ``work_order.requested`` events leave through the
    outbox."""
    async with db.begin() as conn:
        result = await run_reading_checks(conn, settings=settings, now=now or datetime.now(COMPANY_TZ),
                                          progress=progress)
    log.info("readings.checks", extra={"day": result.day.isoformat(), "found": result.found,
                                       "recorded": result.recorded})
    return result


def summary(result: CheckResult) -> list[str]:
    """What a person reads after a run."""
    lines = [f"reading checks for {result.day}: {result.total_recorded:,} new exceptions"]
    for rule in CHECKS:
        found, new = result.found.get(rule.value, 0), result.recorded.get(rule.value, 0)
        lines.append(f"  {rule.value}: {found:,} found, {new:,} new (the rest are open already)")
    return lines
