"""The billing run over every generated account: seconds and accounts per second against the target
(< 60 s for 1,000,000 accounts on this machine).

    .venv/bin/python bench/billing_1m.py [--database-url …] [--fresh] [--check 2000]

On a database made by ``bench/gen_accounts.py``, it calls the real ``core.billing_run.run_billing``
twice, each run in one transaction (commit included in its time):

1. the **opening run** bills the cycle to date, 1 January – 1 November, as one period: it stands
   in for the monthly bills a running system would already hold, so that
2. the **monthly run** (November) chains on real cumulative volumes and splits tiers where a
   household passes 480 or 960 m³, as the November run of a real year would.

Both print accounts seen, bills issued, lines, bills with more than one tier, skipped accounts,
seconds and accounts/s, and the CPU seconds of this process and of the PostgreSQL server during
the run. Then ``--check`` bills (default 2,000, chosen at random) are recomputed with the reference
calculation ``core.billing.bill_period`` from the stored volumes and compared line by line.

Bills are written for real: ``--fresh`` first deletes the bills, bill lines and ``bill.issued``
outbox rows of earlier runs (a benchmark database only). ``--profile FILE`` writes a cProfile of
the monthly run.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sqlalchemy import text  # noqa: E402

from bench.city import MONTHLY_PERIOD, OPENING_PERIOD, TARIFFS  # noqa: E402
from core.billing import TariffBook, TariffCategory, bill_period  # noqa: E402
from core.billing_run import BillingRunResult, run_billing  # noqa: E402
from core.tariffs import add_versions  # noqa: E402
from hub.billing import bill_in_parallel  # noqa: E402
from hub.store.db import Database  # noqa: E402
from hub.tariffs import current_book  # noqa: E402

TARGET_S = 60.0


def postgres_cpu_s() -> float:
    """CPU seconds used so far by every ``postgres`` process on this machine (Linux /proc), with the CPU of
    the exited ones their parent reaped (``cutime``/``cstime``: the backends of a parallel run's parts,
    which end before the run is measured again, count on the postmaster)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() != "postgres":
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / tick


@dataclass
class Measured:
    name: str
    result: BillingRunResult
    seconds: float
    python_cpu_s: float
    postgres_cpu_s: float
    lines: int
    above_tier1: int
    split: int
    workers: int = 1
    several: int = 0
    """Bills of accounts with several meters (on their sum)."""


def _children_cpu_s() -> float:
    """CPU of this process's finished children (the parallel run's workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def bill(db: Database, book: TariffBook, name: str, period: tuple[date, date], batch_size: int,
               profile: cProfile.Profile | None = None, workers: int = 1) -> Measured:
    now = datetime.now(UTC)
    pg0, py0, started = postgres_cpu_s(), time.process_time(), time.perf_counter()
    if profile is not None:
        profile.enable()
    children0 = _children_cpu_s()
    try:
        if workers > 1:  # gashub billing run --workers N: parts of the city in parallel processes
            result = await bill_in_parallel(db, book, period[0], period[1], workers=workers, now=now)
        else:
            async with db.begin() as conn:
                result = await run_billing(conn, book=book, period_start=period[0], period_end=period[1],
                                           now=now, batch_size=batch_size)
    finally:
        if profile is not None:
            profile.disable()
    seconds = time.perf_counter() - started
    py_cpu = time.process_time() - py0 + _children_cpu_s() - children0
    pg_cpu = postgres_cpu_s() - pg0
    async with db.read() as conn:
        lines, above, split = (await conn.execute(text(
            "SELECT sum(n), count(*) FILTER (WHERE top > 1), count(*) FILTER (WHERE tiers > 1) FROM ("
            " SELECT count(*) AS n, max(l.tier) AS top, count(DISTINCT l.tier) AS tiers FROM core_bill b"
            " JOIN core_bill_line l ON l.bill_id = b.id WHERE b.period_start = :s AND b.period_end = :e"
            " GROUP BY l.bill_id) per_bill"), {"s": period[0], "e": period[1]})).one()
        several = await conn.scalar(text(
            "SELECT count(DISTINCT b.id) FROM core_bill b JOIN core_bill_meter m ON m.bill_id = b.id"
            " WHERE b.period_start = :s AND b.period_end = :e"), {"s": period[0], "e": period[1]})
    return Measured(name, result, seconds, py_cpu, pg_cpu, int(lines or 0), int(above or 0), int(split or 0),
                    workers, int(several or 0))


def report(m: Measured) -> None:
    r = m.result
    rate = r.accounts_seen / m.seconds if m.seconds else 0.0
    verdict = "met" if m.seconds < TARGET_S else "NOT met"
    print(f"{m.name} run {r.period_start} .. {r.period_end} (end exclusive):")
    print(f"  accounts seen {r.accounts_seen:,}, bills issued {r.bills_issued:,}, already billed {r.already_billed:,}, "
          f"skipped {len(r.skipped):,}")
    print(f"  bill lines {m.lines:,}; bills reaching tier 2 or 3 {m.above_tier1:,}, split between tiers {m.split:,}; "
          f"billed {r.total_billed:,} yuan in {r.batches:,} batches; {m.several:,} bills on two or more meters")
    print(f"  {m.seconds:.1f} s, {rate:,.0f} accounts/s (target < {TARGET_S:.0f} s: {verdict}); "
          + f"CPU: {'this process' if m.workers == 1 else f'{m.workers} processes'} {m.python_cpu_s:.1f} s, "
          f"PostgreSQL {m.postgres_cpu_s:.1f} s (every postgres process of this machine)")


async def check_sample(db: Database, book: TariffBook, period: tuple[date, date], size: int) -> int:
    """Recompute ``size`` random bills of ``period`` with ``bill_period``; return how many differ (printed)."""
    async with db.read() as conn:
        count = int(await conn.scalar(text("SELECT count(*) FROM core_bill")) or 1)
        bills = (await conn.execute(text(
            "SELECT id, category, volume_m3, cumulative_before, cumulative_after, total, net_total, tax_total "
            f"FROM core_bill TABLESAMPLE BERNOULLI ({min(100.0, 300.0 * size / count):.6f}) REPEATABLE (1) "
            "WHERE period_start = :s AND period_end = :e LIMIT :n"),
            {"s": period[0], "e": period[1], "n": size})).all()
        lines: dict[str, list[tuple[object, ...]]] = {}
        for row in await conn.execute(text(
                'SELECT bill_id, tier, tariff_version, cycle_start, start, "end", volume_m3, unit_price, amount, '
                "vat_rate FROM core_bill_line WHERE bill_id = ANY(:ids) ORDER BY bill_id, line_no"),
                {"ids": [b.id for b in bills]}):
            lines.setdefault(row[0], []).append(tuple(row[1:]))
    wrong = 0
    for b in bills:
        ref = bill_period(book, TariffCategory(b.category), period[0], period[1], b.volume_m3,
                          cumulative_before=b.cumulative_before)
        expected = [(x.tier, x.tariff_version, x.cycle_start, x.start, x.end, x.volume_m3, x.unit_price, x.amount,
                     x.vat_rate) for x in ref.lines]
        same = (ref.total, ref.net_total, ref.tax_total, ref.cumulative_after) == (
            b.total, b.net_total, b.tax_total, b.cumulative_after) and expected == lines.get(b.id, [])
        if not same:
            wrong += 1
            if wrong <= 3:
                print(f"  bill {b.id} differs from the reference: stored {b.total} / {lines.get(b.id)}, "
                      f"reference {ref.total} / {expected}")
    tiers = sum(1 for b in bills if len(lines.get(b.id, [])) > 1)
    print(f"  reference check: {len(bills):,} random bills recomputed with bill_period ({tiers} with tier splits): "
          f"{len(bills) - wrong:,} equal, {wrong} different")
    return wrong


async def main_async(args: argparse.Namespace) -> int:
    db = Database(args.database_url, pool_size=2)
    try:
        async with db.read() as conn:
            accounts = int(await conn.scalar(text("SELECT count(*) FROM core_account")) or 0)
            billed = int(await conn.scalar(text("SELECT count(*) FROM core_bill")) or 0)
        if accounts == 0:
            print("no accounts: run bench/gen_accounts.py first", file=sys.stderr)
            return 1
        if billed and not args.fresh:
            print(f"the database holds {billed:,} bills from an earlier run: add --fresh to delete them first",
                  file=sys.stderr)
            return 1
        if args.fresh:
            async with db.begin() as conn:
                # CASCADE: what refers to bills (allocations, credit) goes too; the benchmark city has none.
                await conn.execute(text("TRUNCATE core_bill_line, core_bill CASCADE"))
                await conn.execute(text("DELETE FROM core_outbox WHERE type = 'bill.issued'"))
            async with db.engine.connect() as conn:
                await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
                    text("VACUUM (ANALYZE) core_outbox, core_bill, core_bill_line"))
        if not args.keep_prepaid:
            # The target is a run that bills every account of the city. Prepaid accounts are charged per
            # reading and never billed, so the benchmark city's prepaid accounts become postpaid first.
            async with db.begin() as conn:
                switched = (await conn.execute(
                    text("UPDATE core_account SET billing = 'postpaid' WHERE billing = 'prepaid'"))).rowcount
            if switched:
                print(f"{switched:,} prepaid accounts switched to postpaid, so that the run bills every account "
                      "(--keep-prepaid to bill postpaid accounts only)")
        async with db.begin() as conn:  # the city's tariffs, stored once (idempotent); runs read the stored book
            await add_versions(conn, TARIFFS.versions, by="bench", now=datetime.now(UTC), note="bench/city.py")
        book = await current_book(db)
        print(f"billing {accounts:,} accounts in batches of {args.batch_size:,}")
        profile = cProfile.Profile() if args.profile else None
        opening = await bill(db, book, "opening", OPENING_PERIOD, args.batch_size, workers=args.workers)
        report(opening)
        monthly = await bill(db, book, "monthly", MONTHLY_PERIOD, args.batch_size, profile, workers=args.workers)
        report(monthly)
        if profile is not None:
            profile.dump_stats(args.profile)
            print(f"  profile of the monthly run written to {args.profile}")
        wrong = 0
        if args.check:
            for period in (OPENING_PERIOD, MONTHLY_PERIOD):
                wrong += await check_sample(db, book, period, args.check)
        total_billed = opening.result.bills_issued + monthly.result.bills_issued
        print(f"billing run, monthly: {monthly.seconds:.1f} s for {monthly.result.accounts_seen:,} accounts, "
              f"{monthly.result.accounts_seen / monthly.seconds:,.0f} accounts/s (target < {TARGET_S:.0f} s)")
        return 0 if wrong == 0 and total_billed == 2 * accounts else 2
    finally:
        await db.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("GASHUB_DATABASE_URL"),
                        help="postgresql+asyncpg://… (default: GASHUB_DATABASE_URL)")
    parser.add_argument("--batch-size", type=int, default=2000, help="accounts per batch (default 2,000)")
    parser.add_argument("--fresh", action="store_true", help="delete bills of earlier runs first")
    parser.add_argument("--workers", type=int, default=1,
                        help="bill in N processes, each a share of the accounts in its own transaction (default 1)")
    parser.add_argument("--keep-prepaid", action="store_true",
                        help="leave prepaid accounts prepaid (never billed); by default they become postpaid so "
                             "that the run bills every account")
    parser.add_argument("--check", type=int, default=2000, metavar="N",
                        help="recompute N random bills per run with the reference calculation (0: none)")
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the monthly run to FILE")
    parser.add_argument("--default-gc", action="store_true",
                        help="leave this process's garbage collector as Python starts it (by default it is tuned "
                             "as in `gashub run` and `gashub worker`, the processes a billing run would run in); "
                             "the parts of --workers N always tune theirs, as `gashub billing run` does")
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("give --database-url or set GASHUB_DATABASE_URL")
    if not args.default_gc:
        from hub.process import tune_gc

        tune_gc()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())

