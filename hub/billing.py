"""Billing runs from the hub's side: the tariff file (the seed of the database's book, ``hub.tariffs``),
the period to bill, the daily job and the CLI's run. The billing itself is the core's
(``core.billing_run.run_billing``): idempotent per account and period, so running it again — the
daily job does, for the month before — bills only what was not billed yet (accounts skipped for a
missing reading are billed once the reading arrives).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import queue
import tomllib
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy import text

from core.billing import TariffBook
from core.billing_run import BillingRunResult, run_billing
from core.payments import Payments
from hub.errors import ConfigError
from hub.store.db import Database

log = logging.getLogger(__name__)
COMPANY_TZ = ZoneInfo("Asia/Shanghai")


PROJECT = Path(__file__).resolve().parents[1]


def tariff_path(path: Path) -> Path:
    """A relative path is looked up from the working directory, then from the project's checkout."""
    if not path.is_absolute() and not path.exists() and (PROJECT / path).exists():
        return PROJECT / path
    return path


def load_tariffs(path: Path) -> TariffBook:
    """The tariff book in the TOML file ``path`` (the shipped seed of the database's book, see
    ``hub.tariffs``); a ``ConfigError`` naming the file and field otherwise. The one parser of the file:
    ``gashub check``, ``gashub tariffs import`` and the seeding all read it through here."""
    path = tariff_path(path)
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
    payments: Payments | None = None,
    accounts: tuple[str, str | None] = ("", None),
) -> BillingRunResult:
    """One billing run in one transaction; its ``bill.issued`` events leave through the outbox. Given
    ``payments``, unused credit pays the new bills at once."""
    async with db.begin() as conn:
        result = await run_billing(conn, book=book, period_start=start, period_end=end,
                                   now=now or datetime.now(COMPANY_TZ), progress=progress, payments=payments,
                                   accounts=accounts)
    log.info("billing.run", extra={"period_start": start.isoformat(), "period_end": end.isoformat(),
                                   "issued": result.bills_issued, "already_billed": result.already_billed,
                                   "skipped": len(result.skipped), "total": str(result.total_billed)})
    return result


async def shares(db: Database, parts: int) -> list[tuple[str, str | None]]:
    """``parts`` consecutive ranges of the billable accounts' ids, as ``(after, until)`` open intervals
    of about the same size (fewer when there are few accounts)."""
    if parts <= 1:
        return [("", None)]
    async with db.read() as conn:
        bounds = (await conn.execute(text(
            "SELECT min(id), max(id) FROM (SELECT id, ntile(:parts) OVER (ORDER BY id) AS part FROM core_account "
            "WHERE status = 'active' AND billing = 'postpaid') t GROUP BY part ORDER BY part"), {"parts": parts})).all()
    if len(bounds) <= 1:
        return [("", None)]
    out: list[tuple[str, str | None]] = []
    for k in range(len(bounds)):
        after = "" if k == 0 else str(bounds[k - 1][1])
        until = None if k == len(bounds) - 1 else str(bounds[k + 1][0])
        out.append((after, until))
    return out


def merge(results: list[BillingRunResult]) -> BillingRunResult:
    """The parts of a run made in parallel, as one result."""
    first = results[0]
    total = BillingRunResult(period_start=first.period_start, period_end=first.period_end)
    for r in results:
        total.accounts_seen += r.accounts_seen
        total.bills_issued += r.bills_issued
        total.already_billed += r.already_billed
        total.total_billed += r.total_billed
        total.bill_ids.extend(r.bill_ids)
        total.skipped.extend(r.skipped)
        total.batches += r.batches
    return total


def _share_process(url: str, book_json: str, start: date, end: date, now: datetime, share: tuple[str, str | None],
                   seen: Any, out: Any) -> None:
    """One part of a parallel run, in its own process, connection and transaction (see ``bill_in_parallel``)."""
    from hub.app import privacy_from
    from hub.process import run_fast, tune_gc
    from hub.settings import load_settings

    async def run() -> BillingRunResult:
        settings = load_settings()
        tune_gc()  # as in `gashub run`: a part allocates millions of short-lived objects
        payments = Payments(settings.core.payments, privacy_from(settings))
        db = Database(url, pool_size=1)
        try:
            def progress(r: BillingRunResult) -> None:
                seen.value = r.accounts_seen

            return await bill_period(db, TariffBook.model_validate_json(book_json), start, end, now=now,
                                     progress=progress, payments=payments, accounts=share)
        finally:
            await db.aclose()

    try:
        result = run_fast(run())
        result.bill_ids = []  # a million ids are not worth sending back
        out.put(("ok", result))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        out.put(("error", f"{type(exc).__name__}: {exc}"))


async def bill_in_parallel(
    db: Database, book: TariffBook, start: date, end: date, *, workers: int, now: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> BillingRunResult:
    """A billing run split over ``workers`` processes by account-id range, each its own transaction.

    Runs are idempotent per account and period, so a part that fails can simply be run again (the
    others stay committed); the error names what to do. SQLite has one writer: it runs in one part.
    ``progress`` gets the accounts seen so far across the parts.
    """
    now = now or datetime.now(COMPANY_TZ)
    if db.dialect != "postgresql" or workers <= 1:
        return await bill_period(db, book, start, end, now=now,
                                 progress=(lambda r: progress(r.accounts_seen)) if progress else None)
    parts = await shares(db, workers)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    seen = [ctx.Value("q", 0) for _ in parts]
    book_json = book.model_dump_json()
    procs = [ctx.Process(target=_share_process, args=(db.url, book_json, start, end, now, share, s, out),
                         name=f"billing-{k}", daemon=True)
             for k, (share, s) in enumerate(zip(parts, seen, strict=True))]
    for p in procs:
        p.start()
    answers: list[tuple[str, Any]] = []
    try:
        while len(answers) < len(procs):
            try:
                answers.append(await asyncio.to_thread(out.get, True, 0.2))
            except queue.Empty:
                if all(not p.is_alive() for p in procs) and out.empty():
                    break
            if progress is not None:
                progress(sum(s.value for s in seen))
    finally:
        for p in procs:
            p.join(timeout=5)
    errors = [a[1] for a in answers if a[0] == "error"]
    if errors or len(answers) < len(procs):
        raise RuntimeError("a part of the billing run failed (" + "; ".join(errors or ["a process died"]) + "); "
                           "the other parts are committed: run it again to bill what is left")
    return merge([a[1] for a in answers])


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
