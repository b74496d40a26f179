"""The readings exceptions list in /api/v1: the work queue of readings that broke validation rules
and of the daily checks' findings, and resolving them.

* ``GET /readings/exceptions`` — filter by ``rule``, ``severity``, ``status``, ``kind``,
  ``meter_id``, ``account_id`` and a time range on ``read_at`` (``since`` inclusive, ``until``
  exclusive); oldest first, paged by cursor like the other lists.
* ``POST /readings/exceptions/{id}/resolve`` — an operator closes one with an outcome and a note;
  who and when come from the token and the clock. For a reading (``kind = reading``) the outcome
  also decides what billing does with it (VEE "edit"):

  - ``accepted``: the reading is right after all: its quality becomes ``valid`` and bills use it;
  - ``corrected``: the register was misread: ``corrected_m3`` replaces its value, quality ``valid,edited``;
  - ``estimated``: the reading stays out of bills and the billing run bills an estimate in its place
    (quality gains ``estimate_due``).

  A daily-check finding (``kind = check``) is only ``accepted`` (the work it called for is in hand).
  Resolving again with the same outcome answers as before and changes nothing; with another
  outcome it is a 409.

Errors: 400 a malformed body or query, 404 no such exception, 409 resolved otherwise before, 422 an
outcome that does not fit (``corrected`` without a value, a value without ``corrected``, a check
finding corrected or estimated). Every resolve call is audited (outcome, never the note).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import orjson
from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import and_, literal, or_, select, update
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
from core.db.tables import reading, reading_exception
from core.readings import QualityFlag, RuleId, Severity

Outcome = Literal["accepted", "corrected", "estimated"]
DOUBT = frozenset({QualityFlag.SUSPECT.value, QualityFlag.VALID.value, QualityFlag.HELD.value,
                   QualityFlag.ESTIMATE_DUE.value})


class ExceptionsQuery(Query):
    rule: RuleId | None = Field(default=None, description="Only exceptions with a finding of this rule.")
    severity: Severity | None = Field(default=None, description="The highest severity of the findings.")
    status: Literal["open", "resolved"] | None = None
    kind: Literal["reading", "check"] | None = Field(
        default=None, description="reading: a reading that broke rules; check: a finding of the daily checks.")
    meter_id: str | None = Field(default=None, min_length=1, max_length=32)
    account_id: str | None = Field(default=None, min_length=1, max_length=32)
    since: AwareDatetime | None = Field(default=None, description="read_at at or after this.")
    until: AwareDatetime | None = Field(default=None, description="read_at before this.")
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = Field(default=None, max_length=500, description="Opaque: the next_cursor of a previous page.")


class ExceptionFinding(BaseModel):
    rule: str
    severity: str
    action: str
    message: str
    work_order: str | None = None
    alarm: str | None = None


class ReadingException(BaseModel):
    id: str = Field(description="The reading's id (kind reading), or <rule>-<subject>-<day> (kind check).")
    kind: str
    meter_id: str
    account_id: str | None
    read_at: datetime = Field(description="The reading's time, or when the check found it.")
    volume_m3: Decimal | None = Field(description="The register as read (absent for a check finding).")
    consumption_m3: Decimal | None
    rules: list[str]
    severity: str
    billable: bool = Field(description="Whether bills may use the reading as it now stands.")
    findings: list[ExceptionFinding]
    status: str
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None
    resolution_note: str | None
    corrected_m3: Decimal | None


class ExceptionPage(BaseModel):
    items: list[ReadingException]
    next_cursor: str | None


class ResolveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Outcome = Field(description="accepted, corrected (give corrected_m3) or estimated.")
    note: str = Field(min_length=1, max_length=500, description="What was checked and found.")
    corrected_m3: Decimal | None = Field(default=None, ge=0, max_digits=14, decimal_places=3,
                                         description="The right register value, for outcome corrected.")


def _view(row: Any) -> ReadingException:
    data = dict(row)
    data["rules"] = [r for r in data["rules"].split(",") if r]
    data["findings"] = orjson.loads(data["findings"])
    return ReadingException.model_validate(data)


@require(Resource.READING_EXCEPTIONS, Action.READ)
async def list_exceptions(request: web.Request) -> web.StreamResponse:
    q = parse_query(request, ExceptionsQuery)
    if q.since and q.until and q.since >= q.until:
        raise ProblemError(400, "Bad parameter", "'since' must be before 'until'.", parameter="since")
    t = reading_exception.c
    stmt = select(reading_exception).order_by(t.read_at, t.id).limit(q.limit + 1)
    if q.rule:
        stmt = stmt.where((literal(",") + t.rules + literal(",")).like(f"%,{q.rule.value},%"))
    severity = q.severity.value if q.severity else None
    for column, value in ((t.severity, severity), (t.status, q.status), (t.kind, q.kind), (t.meter_id, q.meter_id),
                          (t.account_id, q.account_id)):
        if value is not None:
            stmt = stmt.where(column == value)
    if q.since:
        stmt = stmt.where(t.read_at >= q.since)
    if q.until:
        stmt = stmt.where(t.read_at < q.until)
    if q.cursor:
        at, last_id = decode_cursor(q.cursor, 2)
        when = cursor_time(at)
        stmt = stmt.where(or_(t.read_at > when, and_(t.read_at == when, t.id > str(last_id))))
    async with request.app[API].engine.connect() as conn:
        rows = list((await conn.execute(stmt)).mappings())
    more = len(rows) > q.limit
    items = [_view(r) for r in rows[: q.limit]]
    nxt = encode_cursor(items[-1].read_at.isoformat(), items[-1].id) if more else None
    return json_response(ExceptionPage(items=items, next_cursor=nxt).model_dump(mode="json"))


def _refusal(kind: str, body: ResolveBody) -> str | None:
    if body.outcome == "corrected" and body.corrected_m3 is None:
        return "outcome 'corrected' needs corrected_m3, the right register value"
    if body.outcome != "corrected" and body.corrected_m3 is not None:
        return "corrected_m3 goes with outcome 'corrected' only"
    if kind == "check" and body.outcome != "accepted":
        return "a daily-check finding has no reading to correct or estimate: resolve it as 'accepted'"
    return None


def _same(row: Any, body: ResolveBody) -> bool:
    corrected = row["corrected_m3"]
    return bool(row["resolution"] == body.outcome and (corrected is None) == (body.corrected_m3 is None)
                and (corrected is None or Decimal(corrected) == body.corrected_m3))


async def _apply_to_reading(conn: AsyncConnection, reading_id: str, body: ResolveBody) -> bool:
    """Change the reading as the outcome says; returns whether bills may now use it as it stands."""
    row = (await conn.execute(select(reading.c.quality).where(reading.c.id == reading_id))).first()
    if row is None:
        return body.outcome != "estimated"
    kept = [f for f in str(row[0]).split(",") if f and f not in DOUBT]
    values: dict[str, Any]
    if body.outcome == "estimated":
        flags = [f for f in str(row[0]).split(",") if f and f != QualityFlag.ESTIMATE_DUE.value]
        if QualityFlag.HELD.value not in flags:
            flags.append(QualityFlag.HELD.value)
        values = {"quality": ",".join([*flags, QualityFlag.ESTIMATE_DUE.value])}
    elif body.outcome == "corrected":
        values = {"quality": ",".join([QualityFlag.VALID.value, *kept, QualityFlag.EDITED.value]),
                  "volume_m3": body.corrected_m3}
    else:
        values = {"quality": ",".join([QualityFlag.VALID.value, *kept])}
    await conn.execute(update(reading).where(reading.c.id == reading_id).values(**values))
    return body.outcome != "estimated"


@require(Resource.READING_EXCEPTIONS, Action.WRITE)
async def resolve_exception(request: web.Request) -> web.StreamResponse:
    """Resolve one exception (module notes); 200 with the exception as it now stands."""
    exception_id = request.match_info["id"]
    body = await parse_body(request, ResolveBody)
    ctx = request.app[API]
    who = principal_of(request).username
    async with ctx.engine.begin() as conn:
        row = (await conn.execute(select(reading_exception).where(reading_exception.c.id == exception_id)
                                  .with_for_update())).mappings().first()
        if row is None:
            request[AUDIT_DETAIL] = "no such exception"
            raise ProblemError(404, "Not found", f"There is no reading exception '{exception_id[:64]}'; "
                               "GET /api/v1/readings/exceptions lists them.")
        if row["status"] == "resolved":
            if not _same(row, body):
                request[AUDIT_DETAIL] = f"conflict: resolved before as {row['resolution']}"
                raise ProblemError(409, "Conflict", f"The exception was resolved as '{row['resolution']}' by "
                                   f"{row['resolved_by']} at {row['resolved_at'].isoformat()}.")
            request[AUDIT_DETAIL] = f"already resolved: {body.outcome}"
            return json_response(_view(row).model_dump(mode="json"))
        refusal = _refusal(row["kind"], body)
        if refusal is not None:
            request[AUDIT_DETAIL] = f"refused: {refusal}"[:200]
            raise ProblemError(422, "Resolution refused", f"The exception stays open: {refusal}.")
        billable = row["billable"]
        if row["kind"] == "reading":
            billable = await _apply_to_reading(conn, exception_id, body)
        await conn.execute(update(reading_exception).where(reading_exception.c.id == exception_id).values(
            status="resolved", resolution=body.outcome, resolution_note=body.note.strip(),
            corrected_m3=body.corrected_m3, resolved_by=who, resolved_at=ctx.clock(), billable=billable))
        row = (await conn.execute(select(reading_exception).where(reading_exception.c.id == exception_id))
               ).mappings().one()
    value = f" {body.corrected_m3} m³" if body.corrected_m3 is not None else ""
    request[AUDIT_DETAIL] = f"resolved: {body.outcome}{value}"
    return json_response(_view(row).model_dump(mode="json"))


def exception_endpoints() -> list[Endpoint]:
    """The exceptions-list routes (relative to /api/v1)."""
    return [
        Endpoint("GET", "/readings/exceptions", list_exceptions,
                 "The readings exceptions list: readings that broke validation rules and the daily checks' "
                 "findings, oldest first, paged", ExceptionPage, Resource.READING_EXCEPTIONS, Action.READ,
                 query=ExceptionsQuery),
        Endpoint("POST", "/readings/exceptions/{id}/resolve", resolve_exception,
                 "Resolve a reading exception: accepted, corrected (with the right value) or estimated",
                 ReadingException, Resource.READING_EXCEPTIONS, Action.WRITE, body=ResolveBody,
                 path_params=("id",), errors=(400, 401, 403, 404, 409, 422)),
    ]
