"""Importing a statement and resolving what did not match: the use cases behind the CLI and the API.

:func:`import_statement` runs in the caller's transaction: it reads the core's side in set-based
queries (the payments and refunds of the statement's day by index range; then, in chunks by transaction
id, the few payments of other days that the statement names and the refunds of the payments it lists
refunds of), matches in memory (:mod:`core.reconciliation.matching`)
and writes the run and its discrepancies in bulk. The same file (by SHA-256, per channel) imported
again finds its run and writes nothing; two imports racing meet on the unique key and the later one
writes nothing either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.bulk import insert_many
from core.db.tables_payments import payment, refund
from core.db.tables_reconciliation import recon_discrepancy, recon_run
from core.errors import Conflict, DomainRejected
from core.payments.ledger import money, new_id
from core.reconciliation.matching import CorePayment, CoreRefund, Found, match
from core.reconciliation.model import STATEMENT_TZ, LineKind, Statement, StatementError

CHUNK = 5000
"""Transaction ids per look-up query (well under SQLite's and asyncpg's bound-parameter limits)."""


class NoSuchDiscrepancy(DomainRejected):
    pass


@dataclass(frozen=True, slots=True)
class Imported:
    run_id: str
    fresh: bool
    """False: this file was imported before (``run_id`` is that run) and nothing was written."""
    lines: int
    matched: int
    discrepancies: dict[str, int]
    notes: tuple[str, ...] = ()
    """What the parser left out and why (refunds still processing, transaction types not matched)."""


Progress = Callable[[str], None]


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The statement day as a UTC half-open range (channels cut at Beijing midnight)."""
    start = datetime.combine(day, time(0), tzinfo=STATEMENT_TZ)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)


def _chunks(values: Sequence[str]) -> Iterator[list[str]]:
    for i in range(0, len(values), CHUNK):
        yield list(values[i:i + CHUNK])


async def find_run(conn: AsyncConnection, channel: str, file_sha256: str) -> Any:
    return (await conn.execute(select(recon_run).where(recon_run.c.channel == channel,
                                                       recon_run.c.file_sha256 == file_sha256))).mappings().first()


async def _counts(conn: AsyncConnection, run_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for kind, in await conn.execute(select(recon_discrepancy.c.kind).where(recon_discrepancy.c.run_id == run_id)):
        counts[kind] = counts.get(kind, 0) + 1
    return counts


async def import_statement(
    conn: AsyncConnection, statement: Statement, *, statement_date: date, file_sha256: str, file_name: str,
    by: str, now: datetime, progress: Progress | None = None,
) -> Imported:
    """Match ``statement`` (the day ``statement_date``) against the core and record the run (module notes)."""
    channel = statement.channel.value
    stored = await find_run(conn, channel, file_sha256)
    if stored is not None:
        return Imported(stored["id"], False, stored["lines"], stored["matched"], await _counts(conn, stored["id"]))
    if statement.statement_date is not None and statement.statement_date != statement_date:
        raise StatementError(f"the file is the statement of {statement.statement_date}, not of {statement_date}")
    say = progress or (lambda _: None)
    start, end = day_bounds(statement_date)
    say("reading the day's payments")
    day_payments = [_payment(r) for r in (await conn.execute(
        _payments().where(payment.c.channel == channel, payment.c.paid_at >= start, payment.c.paid_at < end))).all()]
    day_refunds = [_refund(r) for r in (await conn.execute(
        _refunds().where(payment.c.channel == channel, refund.c.refunded_at >= start, refund.c.refunded_at < end))
    ).all()]
    # Most lines are the day's payments, read above by index range; only the others are looked up by id.
    payments = {p.transaction_id: p for p in day_payments}
    others = sorted({line.transaction_id for line in statement.lines} - payments.keys())
    say(f"looking up {len(others)} transactions of other days")
    for chunk in _chunks(others):
        for r in await conn.execute(_payments().where(payment.c.channel == channel,
                                                      payment.c.transaction_id.in_(chunk))):
            payments[r[1]] = _payment(r)
    refunds = {(r.transaction_id, r.refund_id): r for r in day_refunds}
    refunded = sorted({line.transaction_id for line in statement.lines if line.kind is LineKind.REFUND})
    for chunk in _chunks(refunded):
        for r in await conn.execute(_refunds().where(payment.c.channel == channel,
                                                     payment.c.transaction_id.in_(chunk))):
            refunds[(r[1], r[2])] = _refund(r)
    say(f"matching {len(statement.lines)} lines against {len(payments)} payments")
    outcome = match(statement.lines, payments, refunds, day_payments, day_refunds)
    run_id = new_id()
    pays = [line for line in statement.lines if line.kind is LineKind.PAYMENT]
    backs = [line for line in statement.lines if line.kind is LineKind.REFUND]
    inserted = await insert_many(conn, recon_run, [{
        "id": run_id, "channel": channel, "format": statement.format, "statement_date": statement_date,
        "file_sha256": file_sha256, "file_name": file_name[:200], "imported_at": now, "imported_by": by[:64],
        "lines": len(statement.lines), "payments": len(pays), "refunds": len(backs), "matched": outcome.matched,
        "discrepancies": len(outcome.found), "statement_total": sum((x.amount for x in pays), Decimal("0.00")),
        "refund_total": sum((x.amount for x in backs), Decimal("0.00"))}], ignore_conflicts=True, returning=("id",))
    if not inserted:  # the same file, imported at the same moment by someone else
        stored = await find_run(conn, channel, file_sha256)
        return Imported(stored["id"], False, stored["lines"], stored["matched"], await _counts(conn, stored["id"]))
    say(f"writing {len(outcome.found)} discrepancies")
    await insert_many(conn, recon_discrepancy, [_row(run_id, f) for f in outcome.found])
    counts: dict[str, int] = {}
    for f in outcome.found:
        counts[f.kind.value] = counts.get(f.kind.value, 0) + 1
    return Imported(run_id, True, len(statement.lines), outcome.matched, counts, tuple(statement.notes))


def _payments() -> Any:
    return select(payment.c.id, payment.c.transaction_id, payment.c.out_trade_no, payment.c.amount, payment.c.status)


def _payment(r: Any) -> CorePayment:
    """From a row of :func:`_payments` (by position: a tenth of the cost of access by name)."""
    return CorePayment(r[0], r[1], r[2], money(r[3]), r[4])


def _refund(r: Any) -> CoreRefund:
    """From a row of :func:`_refunds`."""
    return CoreRefund(r[0], r[1], r[2], money(r[3]), r[4])


def _refunds() -> Any:
    return (select(refund.c.payment_id, payment.c.transaction_id, refund.c.refund_id, refund.c.amount, refund.c.kind)
            .join(payment, payment.c.id == refund.c.payment_id))


def _row(run_id: str, f: Found) -> dict[str, Any]:
    return {"id": new_id(), "run_id": run_id, "kind": f.kind.value, "transaction_id": f.transaction_id[:64],
            "refund_id": f.refund_id[:64], "out_trade_no": f.out_trade_no[:64], "payment_id": f.payment_id,
            "line_no": f.line_no, "statement_amount": f.statement_amount, "core_amount": f.core_amount,
            "statement_status": f.statement_status, "core_status": f.core_status, "detail": f.detail[:200],
            "status": "open", "resolved_by": None, "resolved_at": None, "resolution_note": None}


async def resolve_discrepancy(conn: AsyncConnection, discrepancy_id: str, *, by: str, note: str,
                              now: datetime) -> tuple[Any, bool]:
    """Close one discrepancy with the operator's note; returns the row and whether this call changed it.
    Resolving again with the same note changes nothing; with another note it is a ``Conflict``."""
    t = recon_discrepancy
    row = (await conn.execute(select(t).where(t.c.id == discrepancy_id).with_for_update())).mappings().first()
    if row is None:
        raise NoSuchDiscrepancy(f"there is no discrepancy {discrepancy_id[:40]!r}")
    note = note.strip()
    if row["status"] == "resolved":
        if row["resolution_note"] != note:
            raise Conflict(f"the discrepancy was resolved by {row['resolved_by']} at {row['resolved_at'].isoformat()}")
        return row, False
    await conn.execute(update(t).where(t.c.id == discrepancy_id).values(
        status="resolved", resolved_by=by[:64], resolved_at=now, resolution_note=note))
    return (await conn.execute(select(t).where(t.c.id == discrepancy_id))).mappings().one(), True
