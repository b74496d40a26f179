"""Customers and meters in /api/v1 (U2): who a customer is and which accounts they hold or held;
the meters, by account, with their last reading.

* ``GET /customers/{id}`` — masked unless ``?reveal=true`` (admin and customer service; audited).
  Needs the personal-data keys: 503 without them, like the account routes.
* ``GET /meters`` — meters by id, paged (``cursor``), filtered by ``account_id``; ``GET /meters/{id}``
  — one meter with its last reading. The prepaid balance is not shown here (``GET /meters/{id}/valve``
  says what stands in the way of reopening a valve).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy import select

from core.accounts.customers import CustomerView, UnknownCustomer, get_customer
from core.api.accounts import require_privacy
from core.api.framework import API, Endpoint, parse_query, require
from core.api.models import Query, RevealQuery
from core.api.permissions import Action, Resource
from core.api.problems import ProblemError, json_response
from core.api.reveal import read_revealable
from core.db.tables import reading
from core.db.tables_billing import meter


class MetersQuery(Query):
    account_id: str | None = Field(default=None, min_length=1, max_length=32)
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = Field(default=None, max_length=32, description="The next_cursor of the previous page.")


class LastReading(BaseModel):
    read_at: datetime
    volume_m3: Decimal
    quality: str


class Meter(BaseModel):
    meter_id: str
    account_id: str | None = Field(description="Empty for a meter in stock.")
    model: str
    installed_at: date
    replace_by: date | None = Field(description="Replace (or re-verify) by this date.")
    valve_state: str
    protocol_address: str | None = Field(description="CJ/T 188 address (14 digits), for meters on a DTU bus.")
    imei: str | None = Field(description="The NB-IoT module's IMEI.")
    verified_on: date | None = Field(description="Last verification (检定).")


class MeterDetail(Meter):
    last_reading: LastReading | None


class MeterPage(BaseModel):
    items: list[Meter]
    next_cursor: str | None


@require(Resource.ACCOUNTS, Action.READ)
async def get_customer_route(request: web.Request) -> web.StreamResponse:
    """One customer and the accounts they hold or held."""
    privacy = require_privacy(request)
    q = parse_query(request, RevealQuery)
    customer_id = request.match_info["id"]

    async def build() -> dict[str, Any]:
        async with request.app[API].engine.connect() as conn:
            try:
                view = await get_customer(conn, privacy, customer_id, reveal=q.reveal)
            except UnknownCustomer:
                raise ProblemError(404, "Unknown customer", f"No customer has id {customer_id}.") from None
        return view.model_dump(mode="json")

    return await read_revealable(request, q.reveal, build)


_METER_COLUMNS = (meter.c.id.label("meter_id"), meter.c.account_id, meter.c.model, meter.c.installed_at,
                  meter.c.replace_by, meter.c.valve_state, meter.c.protocol_address, meter.c.imei,
                  meter.c.verified_on)


@require(Resource.METERS, Action.READ)
async def list_meters(request: web.Request) -> web.StreamResponse:
    q = parse_query(request, MetersQuery)
    stmt = select(*_METER_COLUMNS).order_by(meter.c.id).limit(q.limit + 1)
    if q.account_id is not None:
        stmt = stmt.where(meter.c.account_id == q.account_id)
    if q.cursor is not None:
        stmt = stmt.where(meter.c.id > q.cursor)
    async with request.app[API].engine.connect() as conn:
        rows = [Meter.model_validate(dict(r)) for r in (await conn.execute(stmt)).mappings()]
    more = len(rows) > q.limit
    rows = rows[:q.limit]
    page = MeterPage(items=rows, next_cursor=rows[-1].meter_id if more else None)
    return json_response(page.model_dump(mode="json"))


@require(Resource.METERS, Action.READ)
async def get_meter(request: web.Request) -> web.StreamResponse:
    meter_id = request.match_info["id"]
    async with request.app[API].engine.connect() as conn:
        row = (await conn.execute(select(*_METER_COLUMNS).where(meter.c.id == meter_id))).mappings().first()
        if row is None:
            raise ProblemError(404, "Unknown meter", f"No meter has id {meter_id}.")
        last = (await conn.execute(
            select(reading.c.read_at, reading.c.volume_m3, reading.c.quality).where(reading.c.meter_id == meter_id)
            .order_by(reading.c.read_at.desc()).limit(1))).mappings().first()
    detail = MeterDetail.model_validate(dict(row) | {"last_reading": dict(last) if last else None})
    return json_response(detail.model_dump(mode="json"))


def meter_endpoints() -> list[Endpoint]:
    """The meter routes (relative to /api/v1); they need no keys."""
    rd = Action.READ
    return [
        Endpoint("GET", "/meters", list_meters, "Meters by id, paged; filter by account", MeterPage,
                 Resource.METERS, rd, query=MetersQuery),
        Endpoint("GET", "/meters/{id}", get_meter, "One meter with its last reading", MeterDetail,
                 Resource.METERS, rd, path_params=("id",), errors=(401, 403, 404)),
    ]


def customer_endpoints() -> list[Endpoint]:
    """The customer routes (relative to /api/v1); like the account routes they need the keys."""
    return [
        Endpoint("GET", "/customers/{id}", get_customer_route,
                 "One customer (masked unless reveal) and the accounts they hold or held", CustomerView,
                 Resource.ACCOUNTS, Action.READ, query=RevealQuery, path_params=("id",),
                 errors=(400, 401, 403, 404, 503)),
    ]
