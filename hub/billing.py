"""Billing runs from the hub's side: the tariff file, the period to bill, the daily job and the CLI's
run. The billing itself is the core's (``core.billing_run.run_billing``): idempotent per account and
period, so running it again — the daily job does, for the month before — bills only what was not
billed yet (accounts skipped for a missing reading are billed once the reading arrives).
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from core.billing import TariffBook
from core.billing_run import BillingRunResult, run_billing
from hub.errors import ConfigError
from hub.store.db import Database

log = logging.getLogger(__name__)
COMPANY_TZ = ZoneInfo("Asia/Shanghai")


PROJECT = Path(__file__).resolve().parents[1]


def load_tariffs(path: Path) -> TariffBook:
    """The tariff book in ``path`` (TOML); a ``ConfigError`` naming the file and field otherwise.
    A relative path is looked up from the working directory, then from the project's checkout."""
    if not path.is_absolute() and not path.exists() and (PROJECT / path).exists():
        path = PROJECT / path
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no tariff file (set billing.tariffs_file or GASHUB_BILLING__TARIFFS_FILE)",
                          where="billing.tariffs_file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", where="billing.tariffs_file") from None
    try:
        return TariffBook.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {problems}", where="billing.tariffs_file") from None


def month_period(month: str | None, *, today: date | None = None) -> tuple[date, date]:
    """``[first day, first day of the next month)`` of ``YYYY-MM``; the month before ``today`` if None."""
    if month is None:
        today = today or datetime.now(COMPANY_TZ).date()
        first = today.replace(day=1)
        start = date(first.year - 1, 12, 1) if first.month == 1 else date(first.year, first.month - 1, 1)
    else:
        try:
            year, mon = (int(part) for part in month.split("-"))
            start = date(year, mon, 1)
        except ValueError:
            raise ValueError(f"{month!r} is not a month: write YYYY-MM, e.g. 2026-10") from None
    end = date(start.year + 1, 1, 1) if start.month == 12 else date(start.year, start.month + 1, 1)
    return start, end


async def bill_period(
    db: Database,
    book: TariffBook,
    start: date,
    end: date,
    *,
    now: datetime | None = None,
    progress: Callable[[BillingRunResult], None] | None = None,
) -> BillingRunResult:
    """One billing run in one transaction; its ``bill.issued`` events leave through the outbox."""
    async with db.begin() as conn:
        result = await run_billing(conn, book=book, period_start=start, period_end=end,
                                   now=now or datetime.now(COMPANY_TZ), progress=progress)
    log.info("billing.run", extra={"period_start": start.isoformat(), "period_end": end.isoformat(),
                                   "issued": result.bills_issued, "already_billed": result.already_billed,
                                   "skipped": len(result.skipped), "total": str(result.total_billed)})
    return result


def summary(result: BillingRunResult) -> list[str]:
    """What a person reads after a run."""
    lines = [
        f"period {result.period_start}..{result.period_end} (end exclusive): {result.accounts_seen:,} accounts, "
        f"{result.bills_issued:,} bills issued ({result.total_billed} yuan), {result.already_billed:,} already billed",
    ]
    reasons: dict[str, int] = {}
    for skip in result.skipped:
        reasons[str(skip.reason)] = reasons.get(str(skip.reason), 0) + 1
    for reason, n in sorted(reasons.items()):
        lines.append(f"  skipped {n:,}: {reason}")
    return lines
