"""Channel statement reconciliation in /api/v1 (the runs ``gashub reconcile import`` records).

* ``GET /reconciliation/runs`` — by ``channel`` and statement day (``since``/``until`` inclusive), newest
  day first, paged; each run with its counts and how many discrepancies are still open.
* ``GET /reconciliation/runs/{id}`` — one run with its discrepancies, filtered by ``kind`` and
  ``status``, paged (``limit``, ``cursor``), and the open ones counted by kind.
* ``POST /reconciliation/discrepancies/{id}/resolve`` — an operator closes one with a note; who and when
  come from the token and the clock. The same note again answers as before; another note is a 409.

Errors: 400 a malformed query or body, 404 no such run or discrepancy, 409 resolved before with another
note. The resolve call is audited (the outcome, never the note).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from core.api.framework import (
    API,
    AUDIT_DETAIL,
    Endpoint,
    decode_cursor,
    encode_cursor,
    parse_body,
    parse_query,
    principal_of,
    require,
)
from core.api.models import Query
from core.api.permissions import Action, Resource
from core.api.problems import ProblemError, json_response
from core.db.tables_reconciliation import recon_discrepancy
from core.errors import Conflict
from core.reconciliation import DiscrepancyKind, NoSuchDiscrepancy, resolve_discrepancy
from core.reconciliation import queries as q

Channel = Literal["wechat", "alipay", "unionpay", "ecny", "bank"]
_CURSOR = Field(default=None, max_length=500, description="Opaque: the next_cursor of a previous page.")


class RunsQuery(Query):
    channel: Channel | None = None
    since: date | None = Field(default=None, description="Statements of this day or later.")
    until: date | None = Field(default=None, description="Statements of this day or earlier.")
    limit: int = Field(default=50, ge=1, le=500)
    cursor: str | None = _CURSOR


class Run(BaseModel):
    id: str
    channel: str
    format: str
    statement_date: date
    file_name: str
    file_sha256: str
    imported_at: datetime
    imported_by: str
    lines: int
    payments: int
    refunds: int
    matched: int
    discrepancies: int
    open: int = Field(description="Discrepancies not resolved yet.")
    statement_total: Decimal = Field(description="The payments the statement lists, yuan.")
    refund_total: Decimal


class RunPage(BaseModel):
    items: list[Run]
    next_cursor: str | None


class DiscrepanciesQuery(Query):
    kind: DiscrepancyKind | None = None
    status: Literal["open", "resolved"] | None = None
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = _CURSOR


class Discrepancy(BaseModel):
    id: str
    run_id: str
    kind: str
    transaction_id: str
    refund_id: str = Field(description="For refunds: the channel's refund id; empty otherwise.")
    out_trade_no: str
    payment_id: str | None = Field(description="The core's payment, when it has one.")
    line_no: int | None = Field(description="The statement line, when the statement lists it.")
    statement_amount: Decimal | None
    core_amount: Decimal | None
    statement_status: str | None
    core_status: str | None
    detail: str
    status: str
    resolved_by: str | None
    resolved_at: datetime | None
    resolution_note: str | None


class RunDetail(Run):
    open_by_kind: dict[str, int]
    items: list[Discrepancy] = Field(description="The discrepancies the filters select, this page.")
    next_cursor: str | None


class ResolveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(min_length=1, max_length=500, description="What was checked and done (a refund made, "
                                                                "the payment recorded, the channel asked …).")


def _run_out(row: Any) -> Run:
    return Run.model_validate(dict(row))


@require(Resource.RECONCILIATION, Action.READ)
async def list_runs(request: web.Request) -> web.StreamResponse:
    query = parse_query(request, RunsQuery)
    if query.since and query.until and query.since > query.until:
        raise ProblemError(400, "Bad parameter", "'since' must not be after 'until'.", parameter="since")
    cursor = None
    if query.cursor:
        day, last = decode_cursor(query.cursor, 2)
        try:
            cursor = (date.fromisoformat(str(day)), str(last))
        except ValueError:
            raise ProblemError(400, "Bad parameter", "The query parameter 'cursor' is damaged; start again "
                               "without it.", parameter="cursor") from None
    stmt = q.runs_filter(q.runs_query(), channel=query.channel, since=query.since, until=query.until,
                         cursor=cursor).limit(query.limit + 1)
    async with request.app[API].engine.connect() as conn:
        rows = [_run_out(r) for r in (await conn.execute(stmt)).mappings()]
    items = rows[:query.limit]
    nxt = encode_cursor(items[-1].statement_date.isoformat(), items[-1].id) if len(rows) > query.limit else None
    return json_response(RunPage(items=items, next_cursor=nxt).model_dump(mode="json"))


@require(Resource.RECONCILIATION, Action.READ)
async def get_run(request: web.Request) -> web.StreamResponse:
    query = parse_query(request, DiscrepanciesQuery)
    run_id = request.match_info["id"]
    after = str(decode_cursor(query.cursor, 1)[0]) if query.cursor else None
    kind = query.kind.value if query.kind else None
    async with request.app[API].engine.connect() as conn:
        row = await q.run(conn, run_id)
        if row is None:
            raise ProblemError(404, "Not found", f"There is no reconciliation run '{run_id[:40]}'; "
                               "GET /api/v1/reconciliation/runs lists them.")
        rows = [Discrepancy.model_validate(dict(r)) for r in (await conn.execute(
            q.discrepancies_query(run_id, kind, query.status, after).limit(query.limit + 1))).mappings()]
        t = recon_discrepancy.c
        by_kind = {k: n for k, n in await conn.execute(
            select(t.kind, func.count()).where(t.run_id == run_id, t.status == "open").group_by(t.kind))}
    items = rows[:query.limit]
    nxt = encode_cursor(items[-1].id) if len(rows) > query.limit else None
    detail = RunDetail(**_run_out(row).model_dump(), open_by_kind=by_kind, items=items, next_cursor=nxt)
    return json_response(detail.model_dump(mode="json"))


@require(Resource.RECONCILIATION, Action.WRITE)
async def resolve(request: web.Request) -> web.StreamResponse:
    """Resolve one discrepancy (module notes); 200 with it as it now stands."""
    discrepancy_id = request.match_info["id"]
    body = await parse_body(request, ResolveBody)
    ctx = request.app[API]
    try:
        async with ctx.engine.begin() as conn:
            row, changed = await resolve_discrepancy(conn, discrepancy_id, by=principal_of(request).username,
                                                     note=body.note, now=ctx.clock())
    except NoSuchDiscrepancy:
        request[AUDIT_DETAIL] = "no such discrepancy"
        raise ProblemError(404, "Not found", f"There is no discrepancy '{discrepancy_id[:40]}'; GET "
                           "/api/v1/reconciliation/runs/{id} lists a run's.") from None
    except Conflict as exc:
        request[AUDIT_DETAIL] = "conflict: resolved before with another note"
        raise ProblemError(409, "Conflict", f"The discrepancy stays as it was: {exc}.") from None
    out = Discrepancy.model_validate(dict(row))
    request[AUDIT_DETAIL] = f"{'resolved' if changed else 'already resolved'}: {out.kind} {out.transaction_id}"[:200]
    return json_response(out.model_dump(mode="json"))


def reconciliation_endpoints() -> list[Endpoint]:
    """The reconciliation routes (relative to /api/v1)."""
    rd, wr = Action.READ, Action.WRITE
    res = Resource.RECONCILIATION
    return [
        Endpoint("GET", "/reconciliation/runs", list_runs, "Imported channel statements with their counts and open "
                 "discrepancies, newest statement day first, paged", RunPage, res, rd, query=RunsQuery),
        Endpoint("GET", "/reconciliation/runs/{id}", get_run, "One statement run with its discrepancies (filter by "
                 "kind and status), paged", RunDetail, res, rd, query=DiscrepanciesQuery, path_params=("id",),
                 errors=(400, 401, 403, 404)),
        Endpoint("POST", "/reconciliation/discrepancies/{id}/resolve", resolve,
                 "Resolve a discrepancy with a note (who and when from the token)", Discrepancy, res, wr,
                 body=ResolveBody, path_params=("id",), errors=(400, 401, 403, 404, 409)),
    ]
