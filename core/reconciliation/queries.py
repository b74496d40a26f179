"""What the API and the ops page read: runs with their open discrepancies, newest statement first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.tables_reconciliation import recon_discrepancy, recon_run

_OPEN = (select(func.count()).where(recon_discrepancy.c.run_id == recon_run.c.id, recon_discrepancy.c.status == "open")
         .scalar_subquery())


def _plain(row: Any) -> dict[str, Any]:
    """A row as a dict with plain ``str`` keys (SQLAlchemy's ``quoted_name`` keys trip JSON encoders)."""
    return {str(k): v for k, v in row.items()}


def runs_query() -> Any:
    """Runs with their number of open discrepancies (``open``)."""
    return select(recon_run, _OPEN.label("open"))


async def run(conn: AsyncConnection, run_id: str) -> Any:
    return (await conn.execute(runs_query().where(recon_run.c.id == run_id))).mappings().first()


def discrepancies_query(run_id: str, kind: str | None, status: str | None, after: str | None) -> Any:
    t = recon_discrepancy.c
    stmt = select(recon_discrepancy).where(t.run_id == run_id).order_by(t.id)
    for condition in (t.kind == kind if kind else None, t.status == status if status else None,
                      t.id > after if after else None):
        if condition is not None:
            stmt = stmt.where(condition)
    return stmt


async def latest_per_channel(conn: AsyncConnection, items: int = 20) -> list[dict[str, Any]]:
    """Per channel, its latest statement's run (latest day, then latest import) with the open
    discrepancies counted by kind and the first ``items`` of them."""
    newest = (select(recon_run.c.channel, func.max(recon_run.c.statement_date).label("day"))
              .group_by(recon_run.c.channel).subquery())
    candidates = (await conn.execute(
        runs_query().join(newest, and_(newest.c.channel == recon_run.c.channel,
                                       newest.c.day == recon_run.c.statement_date))
        .order_by(recon_run.c.channel, recon_run.c.imported_at.desc(), recon_run.c.id.desc()))).mappings().all()
    latest: dict[str, dict[str, Any]] = {}
    for row in candidates:
        latest.setdefault(row["channel"], _plain(row))
    out = []
    for channel in sorted(latest):
        run_row = latest[channel]
        t = recon_discrepancy.c
        by_kind = {str(k): n for k, n in await conn.execute(
            select(t.kind, func.count()).where(t.run_id == run_row["id"], t.status == "open").group_by(t.kind))}
        open_items = [_plain(r) for r in (await conn.execute(
            select(recon_discrepancy).where(t.run_id == run_row["id"], t.status == "open").order_by(t.id)
            .limit(items))).mappings()]
        out.append({"run": run_row, "open_by_kind": by_kind, "open_items": open_items})
    return out


def runs_filter(stmt: Any, *, channel: str | None, since: Any, until: Any, cursor: Sequence[Any] | None) -> Any:
    """Newest statement day first, then newest import; ``cursor`` = (day, id) of the last row seen."""
    c = recon_run.c
    stmt = stmt.order_by(c.statement_date.desc(), c.id.desc())
    if channel:
        stmt = stmt.where(c.channel == channel)
    if since:
        stmt = stmt.where(c.statement_date >= since)
    if until:
        stmt = stmt.where(c.statement_date <= until)
    if cursor:
        day, last = cursor
        stmt = stmt.where(or_(c.statement_date < day, and_(c.statement_date == day, c.id < last)))
    return stmt
