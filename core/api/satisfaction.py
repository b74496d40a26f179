"""Satisfaction records and announcements in /api/v1 (U6; satisfaction evaluation).

* ``GET /satisfaction`` — the ratings users sent by SMS (1–5), newest first, paged; filtered by
  account, work order and rating. Read-only: records are made by the core from ``sms.replied`` only.
  No personal data: the account, work order and notification ids, the rating and when.
* ``POST /announcements`` — ``{"request_id", "district", "kind": "outage", "params": {…}}`` tells every
  active account of a district, one ``notification.requested`` per account through the outbox, in
  one transaction with the announcement's record. The same ``request_id`` again changes nothing and
  answers the first announcement (200 instead of 201). Needs the personal-data keys (the holders'
  phones are encrypted): 503 without them. Audited with the district and the count, never a phone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from ulid import ULID

from core.api.accounts import require_privacy
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
from core.api.problems import json_response
from core.catalogue.messages import NotificationKind, NotificationRequested
from core.db.tables_accounts import DISTRICTS, account, customer, premises
from core.db.tables_sms import announcement, satisfaction
from core.messages import Caused, Event
from core.outbox import emit
from core.privacy import field_context


class SatisfactionQuery(Query):
    account_id: str | None = Field(default=None, min_length=1, max_length=32)
    work_order_id: str | None = Field(default=None, min_length=1, max_length=32)
    rating: int | None = Field(default=None, ge=1, le=5)
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = Field(default=None, max_length=500)


class SatisfactionView(BaseModel):
    id: str = Field(description="The reply it came from (the SMS provider's message id).")
    rating: int = Field(description="1 (poor) to 5 (excellent).")
    channel: str
    account_id: str | None = Field(description="The account whose holder has the replying number, if any.")
    work_order_id: str | None = Field(description="The account's latest work order when the rating came.")
    notification_id: str | None = Field(description="The notification last sent to that number, when known.")
    received_at: datetime
    recorded_at: datetime


class SatisfactionPage(BaseModel):
    items: list[SatisfactionView]
    next_cursor: str | None


@require(Resource.SATISFACTION, Action.READ)
async def list_satisfaction(request: web.Request) -> web.StreamResponse:
    q = parse_query(request, SatisfactionQuery)
    c = satisfaction.c
    stmt = select(satisfaction).order_by(c.received_at.desc(), c.id.desc()).limit(q.limit + 1)
    for column, value in ((c.account_id, q.account_id), (c.work_order_id, q.work_order_id), (c.rating, q.rating)):
        if value is not None:
            stmt = stmt.where(column == value)
    if q.cursor:
        at, last_id = decode_cursor(q.cursor, 2)
        t = cursor_time(at)
        stmt = stmt.where(or_(c.received_at < t, and_(c.received_at == t, c.id < str(last_id))))
    async with request.app[API].engine.connect() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(stmt)]
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    nxt = encode_cursor(rows[-1]["received_at"].isoformat(), rows[-1]["id"]) if more else None
    return json_response(SatisfactionPage.model_validate({"items": rows, "next_cursor": nxt}))


class AnnouncementBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(min_length=8, max_length=64, pattern=r"^[0-9A-Za-z_.:-]+$",
                            description="The caller's id for this announcement: the same id again sends nothing.")
    district: str = Field(description=f"One of {', '.join(DISTRICTS)}.", pattern="^(" + "|".join(DISTRICTS) + ")$")
    kind: NotificationKind = Field(default=NotificationKind.OUTAGE, description="The SMS template to use.")
    params: dict[str, str] = Field(default_factory=dict, max_length=20,
                                   description="The template's parameters (e.g. area, start, end, reason).")


class AnnouncementView(BaseModel):
    id: str
    request_id: str
    district: str
    kind: str
    params: dict[str, str]
    recipients: int = Field(description="Active accounts of the district told (one notification each).")
    created_at: datetime
    created_by: str


def _announcement_view(row: Any) -> AnnouncementView:
    return AnnouncementView(id=row.id, request_id=row.client_request_id, district=row.district, kind=row.kind,
                            params=orjson.loads(row.params), recipients=row.recipients, created_at=row.created_at,
                            created_by=row.created_by)


async def _existing(conn: AsyncConnection, request_id: str) -> Any:
    return (await conn.execute(select(announcement).where(announcement.c.client_request_id == request_id))).first()


@require(Resource.ANNOUNCEMENTS, Action.WRITE)
async def post_announcement(request: web.Request) -> web.StreamResponse:
    body = await parse_body(request, AnnouncementBody)
    privacy = require_privacy(request)
    ctx = request.app[API]
    now = ctx.clock()
    async with ctx.engine.begin() as conn:
        seen = await _existing(conn, body.request_id)
        if seen is not None:
            request[AUDIT_DETAIL] = f"repeat of {seen.id}"
            return json_response(_announcement_view(seen), status=200)
        announcement_id = str(ULID())
        holders = (await conn.execute(
            select(account.c.id, customer.c.id.label("customer_id"), customer.c.phone_enc)
            .join(customer, customer.c.id == account.c.customer_id)
            .join(premises, premises.c.id == account.c.premises_id)
            .where(premises.c.district == body.district, account.c.status == "active")
            .order_by(account.c.id))).all()
        cause = Caused(message_id=announcement_id, correlation_id=announcement_id)
        events = []
        for h in holders:
            phone = privacy.cipher.decrypt(h.phone_enc, context=field_context(customer.name, "phone", h.customer_id))
            note = NotificationRequested(notification_id=f"ann-{announcement_id}-{h.id}", kind=body.kind,
                                         account_id=h.id, phone=phone, params=body.params)
            events.append((Event("notification.requested", note, subject=h.id), cause))
        await emit(conn, events)
        await conn.execute(announcement.insert().values(
            id=announcement_id, client_request_id=body.request_id, district=body.district, kind=body.kind.value,
            params=orjson.dumps(body.params).decode(), recipients=len(events), created_at=now,
            created_by=principal_of(request).username))
        row = await _existing(conn, body.request_id)
    request[AUDIT_DETAIL] = f"{body.kind.value} to {body.district}: {len(events)} notifications"
    return json_response(_announcement_view(row), status=201)


def satisfaction_endpoints() -> list[Endpoint]:
    return [
        Endpoint("GET", "/satisfaction", list_satisfaction,
                 "Satisfaction ratings users sent by SMS, newest first, paged; filter by account, work order, rating",
                 SatisfactionPage, Resource.SATISFACTION, Action.READ, query=SatisfactionQuery),
    ]


def announcement_endpoints() -> list[Endpoint]:
    """Served only with the personal-data keys (like the account routes): listed apart from ``endpoints()``."""
    return [
        Endpoint("POST", "/announcements", post_announcement,
                 "Tell every active account of a district (an outage notice by default), once per request id",
                 AnnouncementView, Resource.ANNOUNCEMENTS, Action.WRITE, body=AnnouncementBody,
                 errors=(400, 401, 403, 503)),
    ]
