"""The /api/v1 endpoints and their route table."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import and_, func, or_, select

from core.api.accounts import AccountSummary, account_summary
from core.api.alarms import alarm_endpoints
from core.api.assets import meter_endpoints
from core.api.exceptions import exception_endpoints
from core.api.framework import (
    API,
    AUDIT_DETAIL,
    AUDIT_RESOURCE,
    AUDIT_USERNAME,
    Endpoint,
    cursor_time,
    decode_cursor,
    encode_cursor,
    parse_body,
    parse_query,
    principal_of,
    require,
)
from core.api.maps import map_endpoints
from core.api.models import (
    AlarmSummary,
    AuditPage,
    AuditQuery,
    Me,
    ReadingPage,
    ReadingsQuery,
    Revoked,
    TokenRequest,
    TokenResponse,
)
from core.api.payments import payment_endpoints
from core.api.permissions import MATRIX, Action, Resource
from core.api.problems import ProblemError, json_response
from core.api.reconciliation import reconciliation_endpoints
from core.api.tariffs import tariff_endpoints
from core.api.users import AccountLocked, LoginFailed, login, revoke_token
from core.api.valves import valve_endpoints
from core.api.workorders import work_order_endpoints
from core.db.tables import alarm, reading
from core.db.tables_api import api_audit


async def issue_token(request: web.Request) -> web.StreamResponse:
    request[AUDIT_RESOURCE] = Resource.SESSION.value
    body = await parse_body(request, TokenRequest)
    request[AUDIT_USERNAME] = body.username
    ctx = request.app[API]
    try:
        issued = await login(ctx.engine, body.username, body.password, ctx.policy, ctx.clock)
    except AccountLocked as exc:
        request[AUDIT_DETAIL] = "locked"
        retry = max(1, int((exc.until - ctx.clock()).total_seconds()))
        raise ProblemError(423, "Account locked",
                           f"Too many failed logins: the account is locked until {exc.until.isoformat()}. "
                           "Wait, or ask an administrator to unlock it.", headers={"Retry-After": str(retry)}) from None
    except LoginFailed:
        request[AUDIT_DETAIL] = "bad credentials"
        raise ProblemError(401, "Login failed",
                           f"Username or password is wrong. After {ctx.policy.max_failures} failures within "
                           f"{int(ctx.policy.failure_window.total_seconds() // 60)} minutes the account is locked "
                           f"for {int(ctx.policy.lock_for.total_seconds() // 60)} minutes.") from None
    request[AUDIT_DETAIL] = "token issued"
    out = TokenResponse(access_token=issued.token, expires_at=issued.expires_at, role=issued.role.value)
    return json_response(out.model_dump(mode="json"), status=201)


@require(Resource.SESSION, Action.WRITE)
async def revoke(request: web.Request) -> web.StreamResponse:
    ctx = request.app[API]
    token_hash = principal_of(request).token_hash
    async with ctx.engine.begin() as conn:
        await revoke_token(conn, token_hash, ctx.clock())
    ctx.principals.forget(token_hash)
    return json_response(Revoked().model_dump(mode="json"))


@require(Resource.PROFILE, Action.READ)
async def me(request: web.Request) -> web.StreamResponse:
    p = principal_of(request)
    perms = {res.value: sorted(a.value for a in acts) for res, acts in MATRIX[p.role].items()}
    out = Me(user_id=p.user_id, username=p.username, role=p.role.value, token_expires_at=p.expires_at,
             permissions=perms)
    return json_response(out.model_dump(mode="json"))


@require(Resource.READINGS, Action.READ)
async def list_readings(request: web.Request) -> web.StreamResponse:
    q = parse_query(request, ReadingsQuery)
    if q.since and q.until and q.since >= q.until:
        raise ProblemError(400, "Bad parameter", "'since' must be before 'until'.", parameter="since")
    stmt = select(reading).order_by(reading.c.read_at, reading.c.id).limit(q.limit + 1)
    if q.meter_id:
        stmt = stmt.where(reading.c.meter_id == q.meter_id)
    if q.since:
        stmt = stmt.where(reading.c.read_at >= q.since)
    if q.until:
        stmt = stmt.where(reading.c.read_at < q.until)
    if q.cursor:
        at, last_id = decode_cursor(q.cursor, 2)
        t = cursor_time(at)
        stmt = stmt.where(or_(reading.c.read_at > t, and_(reading.c.read_at == t, reading.c.id > str(last_id))))
    async with request.app[API].engine.connect() as conn:
        rows = [dict(r) for r in (await conn.execute(stmt)).mappings()]
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    nxt = encode_cursor(rows[-1]["read_at"].isoformat(), rows[-1]["id"]) if more else None
    page = ReadingPage.model_validate({"items": rows, "next_cursor": nxt})
    return json_response(page.model_dump(mode="json"))


@require(Resource.SUMMARIES, Action.READ)
async def alarm_summary(request: web.Request) -> web.StreamResponse:
    stmt = (select(alarm.c.kind, alarm.c.status, func.count().label("count"))
            .group_by(alarm.c.kind, alarm.c.status).order_by(alarm.c.kind, alarm.c.status))
    async with request.app[API].engine.connect() as conn:
        rows = [dict(r) for r in (await conn.execute(stmt)).mappings()]
    return json_response(AlarmSummary.model_validate({"items": rows}).model_dump(mode="json"))


@require(Resource.AUDIT, Action.READ)
async def list_audit(request: web.Request) -> web.StreamResponse:
    q = parse_query(request, AuditQuery)
    stmt = select(api_audit).order_by(api_audit.c.seq.desc()).limit(q.limit + 1)
    if q.user_id:
        stmt = stmt.where(api_audit.c.user_id == q.user_id)
    if q.cursor:
        (last,) = decode_cursor(q.cursor, 1)
        if not isinstance(last, int):
            raise ProblemError(400, "Bad parameter", "The query parameter 'cursor' is damaged; start again without it.",
                               parameter="cursor")
        stmt = stmt.where(api_audit.c.seq < last)
    async with request.app[API].engine.connect() as conn:
        rows = [dict(r) for r in (await conn.execute(stmt)).mappings()]
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    nxt = encode_cursor(rows[-1]["seq"]) if more else None
    return json_response(AuditPage.model_validate({"items": rows, "next_cursor": nxt}).model_dump(mode="json"))


def endpoints() -> list[Endpoint]:
    """Every endpoint, relative to /api/v1. Order matters only for documentation."""
    rd, wr = Action.READ, Action.WRITE
    return [
        Endpoint("POST", "/auth/token", issue_token, "Log in: exchange username and password for a bearer token",
                 TokenResponse, body=TokenRequest, errors=(400, 401, 423)),
        Endpoint("POST", "/auth/revoke", revoke, "Revoke the presented token (log out)", Revoked,
                 Resource.SESSION, wr),
        Endpoint("GET", "/me", me, "The caller: user, role, token expiry and permissions", Me, Resource.PROFILE, rd),
        Endpoint("GET", "/readings", list_readings, "Meter readings, oldest first, paged", ReadingPage,
                 Resource.READINGS, rd, query=ReadingsQuery),
        *exception_endpoints(),
        *alarm_endpoints(),
        Endpoint("GET", "/summaries/alarms", alarm_summary, "Alarm counts by kind and status (no personal data)",
                 AlarmSummary, Resource.SUMMARIES, rd, errors=(401, 403)),
        Endpoint("GET", "/summaries/accounts", account_summary,
                 "Account counts by district, category and status (no personal data)", AccountSummary,
                 Resource.SUMMARIES, rd, errors=(401, 403)),
        Endpoint("GET", "/audit", list_audit, "The API audit log, newest first, paged", AuditPage,
                 Resource.AUDIT, rd, query=AuditQuery),
        *payment_endpoints(),
        *reconciliation_endpoints(),
        *valve_endpoints(),
        *meter_endpoints(),
        *tariff_endpoints(),
        *work_order_endpoints(),
        *map_endpoints(),
    ]
