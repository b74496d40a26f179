"""Alarms in /api/v1 (U3): the list an operator works from, acknowledging and closing.

* ``GET /alarms`` — oldest first, paged; filtered by status, kind, meter, the premises' district and
  detection time. ``GET /alarms/{id}`` — one, with who acknowledged and closed it.
* ``POST /alarms/{id}/acknowledge`` — open → acknowledged (someone has taken charge: a valve the alarm
  closed may be reopened after the on-site check). Optional body ``{"note": …}``.
* ``POST /alarms/{id}/close`` — open or acknowledged → closed. While a work order of the alarm is not yet
  handled, closing needs a ``reason`` (a false alarm, a duplicate…): 422 otherwise, naming the orders.

Both writes are idempotent (an acknowledged or closed alarm stays as it is, 200 with its state), record
who and when, and are audited with what they did (never the note itself).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import and_, or_, select, update

from core.api.framework import (
    API,
    AUDIT_DETAIL,
    Endpoint,
    cursor_time,
    decode_cursor,
    encode_cursor,
    parse_optional_body,
    parse_query,
    principal_of,
    require,
)
from core.api.models import Alarm, AlarmAcknowledgeBody, AlarmCloseBody, AlarmPage, AlarmsQuery
from core.api.permissions import Action, Resource
from core.api.problems import ProblemError, json_response
from core.db.tables import alarm
from core.db.tables_accounts import account, premises
from core.db.tables_billing import meter
from core.workorders import orders_for_alarms


@require(Resource.ALARMS, Action.READ)
async def list_alarms(request: web.Request) -> web.StreamResponse:
    q = parse_query(request, AlarmsQuery)
    if q.since and q.until and q.since >= q.until:
        raise ProblemError(400, "Bad parameter", "'since' must be before 'until'.", parameter="since")
    stmt = select(alarm).order_by(alarm.c.detected_at, alarm.c.id).limit(q.limit + 1)
    for column, value in ((alarm.c.status, q.status), (alarm.c.kind, q.kind), (alarm.c.meter_id, q.meter_id)):
        if value is not None:
            stmt = stmt.where(column == value)
    if q.since:
        stmt = stmt.where(alarm.c.detected_at >= q.since)
    if q.until:
        stmt = stmt.where(alarm.c.detected_at < q.until)
    if q.district:
        stmt = stmt.where(alarm.c.meter_id.in_(
            select(meter.c.id).join(account, account.c.id == meter.c.account_id)
            .join(premises, premises.c.id == account.c.premises_id).where(premises.c.district == q.district)))
    if q.cursor:
        at, last_id = decode_cursor(q.cursor, 2)
        t = cursor_time(at)
        stmt = stmt.where(or_(alarm.c.detected_at > t, and_(alarm.c.detected_at == t, alarm.c.id > str(last_id))))
    async with request.app[API].engine.connect() as conn:
        rows = [dict(r) for r in (await conn.execute(stmt)).mappings()]
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    nxt = encode_cursor(rows[-1]["detected_at"].isoformat(), rows[-1]["id"]) if more else None
    page = AlarmPage.model_validate({"items": rows, "next_cursor": nxt})
    return json_response(page.model_dump(mode="json"))


async def _alarm(request: web.Request) -> dict[str, Any]:
    alarm_id = request.match_info["id"]
    async with request.app[API].engine.connect() as conn:
        row = (await conn.execute(select(alarm).where(alarm.c.id == alarm_id))).mappings().first()
    if row is None:
        raise ProblemError(404, "Not found", f"There is no alarm '{alarm_id[:64]}'; GET /api/v1/alarms lists them.")
    return dict(row)


@require(Resource.ALARMS, Action.READ)
async def get_alarm(request: web.Request) -> web.StreamResponse:
    return json_response(Alarm.model_validate(await _alarm(request)).model_dump(mode="json"))


@require(Resource.ALARMS, Action.WRITE)
async def acknowledge_alarm(request: web.Request) -> web.StreamResponse:
    """open → acknowledged; acknowledging an acknowledged or closed alarm changes nothing (idempotent)."""
    body = await parse_optional_body(request, AlarmAcknowledgeBody)
    alarm_id = request.match_info["id"]
    await _alarm(request)  # 404 if missing
    ctx = request.app[API]
    async with ctx.engine.begin() as conn:
        result = await conn.execute(update(alarm).where(alarm.c.id == alarm_id, alarm.c.status == "open").values(
            status="acknowledged", acknowledged_by=principal_of(request).username, acknowledged_at=ctx.clock(),
            note=body.note or None))
    row = await _alarm(request)
    unchanged = "already closed" if row["status"] == "closed" else "no change"
    request[AUDIT_DETAIL] = "status -> acknowledged" if result.rowcount else unchanged
    return json_response(Alarm.model_validate(row).model_dump(mode="json"))


@require(Resource.ALARMS, Action.WRITE)
async def close_alarm(request: web.Request) -> web.StreamResponse:
    """open/acknowledged → closed (module notes: a reason while its work orders are not handled)."""
    body = await parse_optional_body(request, AlarmCloseBody)
    alarm_id = request.match_info["id"]
    await _alarm(request)
    ctx = request.app[API]
    reason = body.reason.strip()
    async with ctx.engine.begin() as conn:
        pending = [o for o in (await orders_for_alarms(conn, [alarm_id])).get(alarm_id, []) if not o.done]
        current = await conn.scalar(select(alarm.c.status).where(alarm.c.id == alarm_id))
        if pending and not reason and current != "closed":
            request[AUDIT_DETAIL] = "refused: work order not handled, no reason"
            names = ", ".join(f"{o.id} ({o.status.value})" for o in pending)
            raise ProblemError(422, "Close refused",
                               f"Work order {names} of this alarm is not handled yet: close the alarm once it is, "
                               "or give a 'reason' (a false alarm, a duplicate…).", parameter="reason")
        result = await conn.execute(
            update(alarm).where(alarm.c.id == alarm_id, alarm.c.status.in_(("open", "acknowledged"))).values(
                status="closed", closed_by=principal_of(request).username, closed_at=ctx.clock(),
                note=reason or body.note or None))
    row = await _alarm(request)
    done = "status -> closed" + (" with a reason" if reason else "")
    request[AUDIT_DETAIL] = done if result.rowcount else "no change"
    return json_response(Alarm.model_validate(row).model_dump(mode="json"))


def alarm_endpoints() -> list[Endpoint]:
    rd, wr = Action.READ, Action.WRITE
    return [
        Endpoint("GET", "/alarms", list_alarms,
                 "Alarms, oldest first, paged; filter by status, kind, meter, district and time", AlarmPage,
                 Resource.ALARMS, rd, query=AlarmsQuery),
        Endpoint("GET", "/alarms/{id}", get_alarm, "One alarm", Alarm, Resource.ALARMS, rd,
                 path_params=("id",), errors=(401, 403, 404)),
        Endpoint("POST", "/alarms/{id}/acknowledge", acknowledge_alarm, "Acknowledge an alarm (idempotent)",
                 Alarm, Resource.ALARMS, wr, body=AlarmAcknowledgeBody, body_required=False, path_params=("id",),
                 errors=(400, 401, 403, 404)),
        Endpoint("POST", "/alarms/{id}/close", close_alarm,
                 "Close an alarm (idempotent); a reason is needed while its work order is not handled", Alarm,
                 Resource.ALARMS, wr, body=AlarmCloseBody, body_required=False, path_params=("id",),
                 errors=(400, 401, 403, 404, 422)),
    ]
