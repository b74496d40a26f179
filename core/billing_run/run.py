"""One billing run: every active account with a meter, for one period ``[period_start, period_end)``.

How a bill is made (the decisions, in one place):

* **Accounts**: ``core_account.status = 'active'`` with at least one row in ``core_meter``. An account
  with several meters gets one bill on their volumes summed (the tiers are per household), each
  meter's registers in ``core_bill_meter`` (:mod:`core.billing_run.several`); a meter of it without
  its registers skips the account with that meter named.
* **Category**: ``residential`` accounts bill on the tiered residential tariff; ``non_residential``
  ones on the flat tariff of their subcategory (industrial, commercial, heating).
* **Volume**: the last reading at or before the end boundary minus the last reading at or before the
  start boundary. A boundary is local midnight (China Standard Time, UTC+8, no DST) at the start of
  the boundary day, since ``period_end`` is the first day *not* billed. Accounts are skipped and
  reported when there is no reading at or before the start (``no_opening_reading``), no reading
  after the start boundary up to the end boundary (``no_closing_reading``), or the register went
  backwards (``negative_consumption``: the domain rules hold billing).
* **Good readings only** (:mod:`core.billing_run.estimates`): a reading stored ``held`` by the
  validation rules is never a register. When the period's latest reading is held, the account is
  skipped as ``reading_held`` ("exception; hold billing": negative, clock, capacity) or, for a
  reading held with ``estimate_due`` (a spike: "exception, then estimate"), billed on an estimate
  (``quality = 'estimated'``, ``bill.issued`` with ``estimated``; an estimated reading at the end
  boundary opens the next period), or skipped as ``no_estimate`` without history to estimate from.
  Cost: the same register probes, filtered on the quality of the row they read anyway, plus one
  probe for the latest reading's quality; the estimates' inputs are read only for the accounts that
  need one, in two set-based queries per batch.
* **Cumulative**: the tier cumulative before the period is the ``cumulative_after`` of the account's
  issued bill that ends exactly on ``period_start`` (the bills chain; of several, the one that starts
  latest), and 0 otherwise: when the
  period starts a cycle, when there is no such bill (first bill, or a gap), or when that bill was on
  a flat tariff. A gap therefore restarts the tiers; bill periods are meant to chain.
* **Household uplift** (rule 4, :mod:`core.accounts.household`): a residential account whose recorded
  household has an uplift approval covering a day of the period bills with the raised thresholds on
  the days it covers, through the reference ``core.billing.bill_period(..., household=)``; every other
  account through the whole-number :class:`~core.billing_run.pricing.PeriodPricer` (equal results
  without a household). Cost: one query per run (does any approval cover a day of the period? if not,
  nothing more), else one more index probe per account (its household row for the period, usually
  none) and, only for a batch where some account has one, one query by row id.
* **Off-cycle bills**: an account transferred (or closed) mid-period was billed up to that moment
  (:mod:`core.lifecycle`, through :mod:`core.billing_run.single`). An issued bill that overlaps the
  period and reaches its end makes the account ``already_billed``; one that ends inside it leaves the
  rest, ``[its end, period_end)``, which is billed on its own from the register that bill ended on
  (the account's opening and closing are not the period's then) and chains its cumulative.
* **Idempotency**: a bill is unique per ``(account_id, period_start, period_end)``. Accounts already
  billed for the period are counted in ``already_billed`` and left alone; the insert also ignores
  conflicts, so two runs racing each other cannot issue a bill twice, and lines and events are
  written only for the bills this run really inserted.
* **Events**: one ``bill.issued`` per new bill, through :func:`core.outbox.emit` in the caller's
  transaction.
* **Credit**: given ``payments`` (:class:`core.payments.Payments`), the accounts' unused credit
  (earlier overpayments) is spent on the new bills in the same transaction, oldest bill first, with
  the invoice requests the invoice policy asks for.
* **Cost**: per batch of ``batch_size`` accounts, one read (the accounts with, per account, index
  probes for the meter, both registers, an existing bill and the chaining bill) and three bulk writes
  (bills, lines, outbox) — no query per account. Pricing is :mod:`core.billing_run.pricing`: equal to
  :func:`core.billing.bill_period`, prepared once per category and period, in whole numbers.
  Everything runs on the caller's connection and in its transaction; a failed run can simply be run
  again.
* **Pipeline**: while the connection writes batch *n*, a worker thread prices batch *n + 1* (read
  before the writes of *n*: its accounts are others, so those writes cannot change what it read).
  The database works while Python prices; the results are those of one batch after the other.
* **PostgreSQL's JIT** is switched off for the run (``SET LOCAL jit = off``, and back to what it was
  when the run returns): the batch read is thousands of index probes, which JIT cannot speed up,
  but whose summed cost estimate passes ``jit_above_cost`` on a large database, so that every batch
  paid 10–40 ms of compilation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, tzinfo
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.accounts.household import any_approval_between
from core.billing import TariffBook
from core.billing_run.batch import PricedBatch, RunPlan, price_batch, write_batch
from core.billing_run.periods import CHINA_TZ, period_boundary
from core.billing_run.result import BillingRunResult, SkippedAccount, SkipReason
from core.billing_run.single import bill_rest
from core.outbox import emit
from core.payments import Payments
from core.readings import DEFAULT_SETTINGS, ValidationSettings

__all__ = ["CHINA_TZ", "BillingRunResult", "SkipReason", "SkippedAccount", "period_boundary", "run_billing"]


async def run_billing(
    conn: AsyncConnection,
    *,
    book: TariffBook,
    period_start: date,
    period_end: date,
    now: datetime,
    batch_size: int = 2000,
    progress: Callable[[BillingRunResult], None] | None = None,
    tz: tzinfo = CHINA_TZ,
    payments: Payments | None = None,
    accounts: tuple[str, str | None] = ("", None),
    rules: ValidationSettings = DEFAULT_SETTINGS,
) -> BillingRunResult:
    """Bill every active metered account for ``[period_start, period_end)`` (see the module notes).

    ``now`` stamps the bills (``created_at``) and their ``bill.issued`` events; it must be aware.
    Runs in the caller's transaction; commit after it returns. ``accounts`` = ``(after, until)``
    limits the run to account ids in that open interval (``None``: no upper bound), so that several
    runs in parallel each bill a share of the city.
    """
    if period_end <= period_start:
        raise ValueError(f"empty period {period_start}..{period_end}: period_end is exclusive")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    result = BillingRunResult(period_start=period_start, period_end=period_end)
    plan = RunPlan(book, period_start, period_end, period_boundary(period_start, tz), period_boundary(period_end, tz),
                   now, until=accounts[1], rules=rules, tz=tz, boundary=lambda day: period_boundary(day, tz))
    plan.probe_households = await any_approval_between(conn, period_start, period_end)
    previous_jit = None
    if conn.dialect.name == "postgresql":
        previous_jit = str(await conn.scalar(text("SHOW jit")))
        await conn.execute(text("SET LOCAL jit = off"))
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="billing-run") as pricing:

        async def read(after: str) -> tuple[list[Any], asyncio.Future[PricedBatch] | None]:
            rows = list((await conn.execute(plan.batch_query(after, batch_size, dialect=conn.dialect.name))).all())
            estimates = await plan.estimates_for(conn, rows)
            households = await plan.households_for(conn, rows)
            several = await plan.meters_for(conn, rows)
            return rows, (loop.run_in_executor(pricing, price_batch, plan, rows, estimates, households, several)
                          if rows else None)

        rows, pending = await read(accounts[0])
        try:
            while pending is not None:
                priced = await pending
                pending = None
                batch_accounts = [row[0] for row in rows]
                if len(rows) == batch_size:
                    rows, pending = await read(rows[-1][0])
                issued_before = len(result.bill_ids)
                await write_batch(conn, priced, result)  # meanwhile the worker prices the next batch
                for rest in priced.rest:  # covered in part by an off-cycle bill (a transfer's): bill the rest
                    await bill_rest(conn, plan, rest.account_id, rest.category, rest.start, result, tz)
                if payments is not None and len(result.bill_ids) > issued_before:
                    # Unused credit (earlier overpayments) pays the new bills, oldest first.
                    await emit(conn, await payments.apply_credit(conn, batch_accounts, now))
                result.batches += 1
                if progress is not None:
                    progress(result)
        finally:
            if pending is not None:  # a write failed: let the pricing finish, and drop it
                await asyncio.gather(pending, return_exceptions=True)
    if previous_jit is not None:  # a failed run's transaction is rolled back, and the SET LOCAL with it
        await conn.execute(text("SELECT set_config('jit', :value, true)"), {"value": previous_jit})
    return result
