"""Work orders in /api/v1: the record the dispatch loop builds on.

* ``GET /work-orders`` — oldest first, paged; filtered by status, category, priority, meter, alarm and
  whether the SLA clock ran out (``overdue=true``: past its deadline with the clock still running).
* ``GET /work-orders/{id}`` — one order with its history (who moved it, when, their note).
* ``POST /work-orders/{id}/transition`` — ``{"to": "dispatched", "note": …}`` moves it through the loop
  (accepted → dispatched → signed → on_site → handled → closed → visited → archived; back to accepted
  when misrouted or reopened); ``{"flag": "supervised"}`` sets a side state (``supervised``,
  ``extension_requested``). A move the loop does not allow is a 422 naming the allowed ones; moving to
  the state it is in, or setting a flag it has, changes nothing (200). Audited with the move, never the note.

Orders carry no personal data: the account and meter ids, the alarm, and a summary the core wrote.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Self

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from core.api.framework import (
    API,
    AUDIT_DETAIL,
    Endpoint,
    cursor_time,
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
from core.db.tables_workorders import work_order
from core.errors import DomainRejected
from core.workorders import (
    DEFAULT_WORK_ORDERS,
    Priority,
    WorkOrder,
    WorkOrderFlag,
    WorkOrderNotFound,
    WorkOrderSettings,
    WorkOrderStatus,
    get_work_order,
    history,
    set_flag,
    transition,
)
from core.workorders.states import DONE, TRANSITIONS
from core.workorders.store import order_of

AUDIT_LIMIT = 200


class WorkOrdersQuery(Query):
    status: WorkOrderStatus | None = None
    category: str | None = Field(default=None, min_length=1, max_length=32)
    priority: Priority | None = None
    meter_id: str | None = Field(default=None, min_length=1, max_length=32)
    alarm_id: str | None = Field(default=None, min_length=1, max_length=64)
    overdue: bool | None = Field(default=None, description="Past the deadline with the SLA clock still running.")
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = Field(default=None, max_length=500)


class TransitionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: WorkOrderStatus | None = Field(default=None, description="The state to move to.")
    flag: Literal["supervised", "extension_requested"] | None = Field(default=None,
                                                                       description="A side state to set instead.")
    note: str = Field(default="", max_length=1000)

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.to is None) == (self.flag is None):
            raise ValueError("give exactly one of 'to' (a state) or 'flag' (a side state)")
        return self


class WorkOrderView(BaseModel):
    id: str
    source: str = Field(description="What opened it: alarm:<alarm id>.")
    category: str
    priority: str
    status: str
    flags: list[str] = Field(description="Side states: overdue, supervised, extension_requested, reopened.")
    overdue: bool = Field(description="The SLA clock ran out and still runs (now, whether or not flagged yet).")
    account_id: str | None
    meter_id: str | None
    alarm_id: str | None
    summary: str
    opened_at: datetime
    due_at: datetime
    clock_until: str = Field(description="The state that stops the SLA clock (on_site or handled).")
    clock_stopped_at: datetime | None
    updated_at: datetime
    correlation_id: str
    next: list[str] = Field(description="The states it may move to.")


class WorkOrderPage(BaseModel):
    items: list[WorkOrderView]
    next_cursor: str | None


class WorkOrderEvent(BaseModel):
    at: datetime
    by: str
    action: str = Field(description="open, status or flag.")
    from_status: str | None
    to_status: str | None
    flag: str | None
    note: str


class WorkOrderDetail(WorkOrderView):
    history: list[WorkOrderEvent]


def _view(o: WorkOrder, now: datetime) -> dict[str, Any]:
    late = o.clock_stopped_at is None and o.due_at < now and o.status not in DONE
    return {"id": o.id, "source": o.source, "category": o.category, "priority": o.priority.value,
            "status": o.status.value, "flags": sorted(f.value for f in o.flags), "overdue": late,
            "account_id": o.account_id, "meter_id": o.meter_id, "alarm_id": o.alarm_id, "summary": o.summary,
            "opened_at": o.opened_at, "due_at": o.due_at, "clock_until": o.clock_until.value,
            "clock_stopped_at": o.clock_stopped_at, "updated_at": o.updated_at, "correlation_id": o.correlation_id,
            "next": sorted(s.value for s in TRANSITIONS[o.status])}


@require(Resource.WORK_ORDERS, Action.READ)
async def list_work_orders(request: web.Request) -> web.StreamResponse:
    q = parse_query(request, WorkOrdersQuery)
    now = request.app[API].clock()
    c = work_order.c
    stmt = select(work_order).order_by(c.opened_at, c.id).limit(q.limit + 1)
    for column, value in ((c.status, q.status), (c.category, q.category), (c.priority, q.priority),
                          (c.meter_id, q.meter_id), (c.alarm_id, q.alarm_id)):
        if value is not None:
            stmt = stmt.where(column == value)
    late = and_(c.clock_stopped_at.is_(None), c.due_at < now, c.status.not_in([s.value for s in DONE]))
    if q.overdue is not None:
        stmt = stmt.where(late if q.overdue else ~late)
    if q.cursor:
        at, last_id = decode_cursor(q.cursor, 2)
        t = cursor_time(at)
        stmt = stmt.where(or_(c.opened_at > t, and_(c.opened_at == t, c.id > str(last_id))))
    async with request.app[API].engine.connect() as conn:
        orders = [order_of(r) for r in await conn.execute(stmt)]
    more = len(orders) > q.limit
    orders = orders[: q.limit]
    nxt = encode_cursor(orders[-1].opened_at.isoformat(), orders[-1].id) if more else None
    page = WorkOrderPage.model_validate({"items": [_view(o, now) for o in orders], "next_cursor": nxt})
    return json_response(page)


async def _detail(conn: AsyncConnection, order_id: str, now: datetime) -> WorkOrderDetail:
    order = await get_work_order(conn, order_id)
    return WorkOrderDetail.model_validate({**_view(order, now), "history": await history(conn, order_id)})


def _not_found(order_id: str) -> ProblemError:
    return ProblemError(404, "Not found", f"There is no work order '{order_id[:40]}'; GET /api/v1/work-orders "
                        "lists them.")


@require(Resource.WORK_ORDERS, Action.READ)
async def get_work_order_route(request: web.Request) -> web.StreamResponse:
    order_id = request.match_info["id"]
    ctx = request.app[API]
    async with ctx.engine.connect() as conn:
        try:
            return json_response(await _detail(conn, order_id, ctx.clock()))
        except WorkOrderNotFound:
            raise _not_found(order_id) from None


def order_settings(request: web.Request) -> WorkOrderSettings:
    """The work-order categories and calendar the API was built with (the defaults if none)."""
    return request.app.get(WORK_ORDERS) or DEFAULT_WORK_ORDERS


WORK_ORDERS: web.AppKey[WorkOrderSettings] = web.AppKey("gashub_work_orders", WorkOrderSettings)
"""The deployment's categories and calendar (a reopened order's new deadline); defaults when unset."""


@require(Resource.WORK_ORDERS, Action.WRITE)
async def transition_work_order(request: web.Request) -> web.StreamResponse:
    order_id = request.match_info["id"]
    body = await parse_body(request, TransitionBody)
    ctx = request.app[API]
    now = ctx.clock()
    by = principal_of(request).username
    try:
        async with ctx.engine.begin() as conn:
            before = await get_work_order(conn, order_id)
            if body.to is not None:
                order, changed = await transition(conn, order_id, body.to, order_settings(request), by=by,
                                                  note=body.note, now=now)
                what = f"{before.status.value} -> {order.status.value}"
            else:
                assert body.flag is not None
                order, changed = await set_flag(conn, order_id, WorkOrderFlag(body.flag), by=by, note=body.note,
                                                now=now)
                what = f"flag {body.flag}"
            detail = await _detail(conn, order_id, now)
    except WorkOrderNotFound:
        request[AUDIT_DETAIL] = "no such work order"
        raise _not_found(order_id) from None
    except DomainRejected as exc:
        request[AUDIT_DETAIL] = f"refused: {exc}"[:AUDIT_LIMIT]
        raise ProblemError(422, "Transition refused", f"{exc}.") from None
    request[AUDIT_DETAIL] = (what if changed else f"no change: {what}")[:AUDIT_LIMIT]
    return json_response(detail)


def work_order_endpoints() -> list[Endpoint]:
    rd, wr = Action.READ, Action.WRITE
    return [
        Endpoint("GET", "/work-orders", list_work_orders,
                 "Work orders, oldest first, paged; filter by status, category, priority, meter, alarm, overdue",
                 WorkOrderPage, Resource.WORK_ORDERS, rd, query=WorkOrdersQuery),
        Endpoint("GET", "/work-orders/{id}", get_work_order_route, "One work order with its history",
                 WorkOrderDetail, Resource.WORK_ORDERS, rd, path_params=("id",), errors=(401, 403, 404)),
        Endpoint("POST", "/work-orders/{id}/transition", transition_work_order,
                 "Move a work order through the loop, or set a side state (idempotent)", WorkOrderDetail,
                 Resource.WORK_ORDERS, wr, body=TransitionBody, path_params=("id",),
                 errors=(400, 401, 403, 404, 422)),
    ]
