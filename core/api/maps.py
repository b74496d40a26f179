"""Alarms and meters on the map (U3), as GeoJSON (RFC 7946) from the premises' coordinates.

* ``GET /map/alarms`` — alarms not yet closed (``status`` to choose), filtered by ``kind`` and ``bbox``.
* ``GET /map/meters`` — meters on an account, with their valve state and how many alarms are open,
  filtered by ``district``, ``valve_state`` and ``bbox``.

Both answer a ``FeatureCollection`` of ``Point`` features, ``[longitude, latitude]`` (WGS 84, the order
GeoJSON prescribes), content type ``application/geo+json``. Properties never carry personal data (no
name, phone or address). Roles that may not read meters (the government) get points rounded to two
decimals (about 1 km) and no meter or alarm ids: where things happen, not whose they are. A meter on no
account has no premises, so no point: it is left out. ``bbox`` is ``minLon,minLat,maxLon,maxLat``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import Select, func, select

from core.api.framework import API, Endpoint, parse_query, principal_of, require
from core.api.models import AlarmStatus, Query
from core.api.permissions import Action, Resource, allowed
from core.catalogue.messages import AlarmKind, ValveState
from core.db.tables import alarm
from core.db.tables_accounts import account, premises
from core.db.tables_billing import meter

GEOJSON = "application/geo+json"
COARSE_DIGITS = 2


def _bbox(value: str | None) -> tuple[float, float, float, float] | None:
    if value is None:
        return None
    try:
        parts = tuple(float(p) for p in value.split(","))
    except ValueError:
        raise ValueError("give four numbers: minLon,minLat,maxLon,maxLat") from None
    if len(parts) != 4:
        raise ValueError("give four numbers: minLon,minLat,maxLon,maxLat")
    w, s, e, n = parts
    if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
        raise ValueError("minLon < maxLon within ±180 and minLat < maxLat within ±90")
    return w, s, e, n


class _MapQuery(Query):
    bbox: str | None = Field(default=None, max_length=100, description="minLon,minLat,maxLon,maxLat (WGS 84).")
    limit: int = Field(default=1000, ge=1, le=10000)

    @field_validator("bbox")
    @classmethod
    def _valid_bbox(cls, value: str | None) -> str | None:
        _bbox(value)
        return value

    @property
    def box(self) -> tuple[float, float, float, float] | None:
        return _bbox(self.bbox)


class AlarmMapQuery(_MapQuery):
    status: AlarmStatus | Literal["active"] = Field(default="active", description="active: open or acknowledged.")
    kind: AlarmKind | None = None


class MeterMapQuery(_MapQuery):
    district: str | None = Field(default=None, min_length=1, max_length=16)
    valve_state: ValveState | None = None


class Point(BaseModel):
    type: Literal["Point"] = "Point"
    coordinates: tuple[float, float] = Field(description="[longitude, latitude]")


class AlarmProperties(BaseModel):
    alarm_id: str | None = Field(description="Left out (null) for roles that may not read meters.")
    meter_id: str | None
    kind: str
    severity: int
    status: str
    detected_at: datetime
    district: str


class MeterProperties(BaseModel):
    meter_id: str | None = Field(description="Left out (null) for roles that may not read meters.")
    model: str
    valve_state: str
    district: str
    open_alarms: int


class AlarmFeature(BaseModel):
    type: Literal["Feature"] = "Feature"
    geometry: Point
    properties: AlarmProperties


class MeterFeature(BaseModel):
    type: Literal["Feature"] = "Feature"
    geometry: Point
    properties: MeterProperties


class AlarmMap(BaseModel):
    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[AlarmFeature]


class MeterMap(BaseModel):
    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[MeterFeature]


def _located(stmt: Select[Any], q: _MapQuery) -> Select[Any]:
    stmt = stmt.join(account, account.c.id == meter.c.account_id).join(premises, premises.c.id == account.c.premises_id)
    if (box := q.box) is not None:
        w, s, e, n = box
        stmt = stmt.where(premises.c.lon.between(w, e), premises.c.lat.between(s, n))
    return stmt.limit(q.limit)


def _point(lon: float, lat: float, precise: bool) -> Point:
    if precise:
        return Point(coordinates=(lon, lat))
    return Point(coordinates=(round(lon, COARSE_DIGITS), round(lat, COARSE_DIGITS)))


def _geojson(model: BaseModel) -> web.Response:
    return web.Response(body=model.__pydantic_serializer__.to_json(model), content_type=GEOJSON)


def _precise(request: web.Request) -> bool:
    return allowed(principal_of(request).role, Resource.METERS, Action.READ)


@require(Resource.MAP, Action.READ)
async def map_alarms(request: web.Request) -> web.StreamResponse:
    q = parse_query(request, AlarmMapQuery)
    precise = _precise(request)
    stmt = (select(alarm.c.id, alarm.c.meter_id, alarm.c.kind, alarm.c.severity, alarm.c.status, alarm.c.detected_at,
                   premises.c.district, premises.c.lon, premises.c.lat)
            .join(meter, meter.c.id == alarm.c.meter_id).order_by(alarm.c.detected_at, alarm.c.id))
    active = ("open", "acknowledged")
    stmt = stmt.where(alarm.c.status.in_(active) if q.status == "active" else alarm.c.status == q.status)
    if q.kind is not None:
        stmt = stmt.where(alarm.c.kind == q.kind)
    async with request.app[API].engine.connect() as conn:
        rows = (await conn.execute(_located(stmt, q))).all()
    features = [AlarmFeature(geometry=_point(r.lon, r.lat, precise), properties=AlarmProperties(
        alarm_id=r.id if precise else None, meter_id=r.meter_id if precise else None, kind=r.kind,
        severity=r.severity, status=r.status, detected_at=r.detected_at, district=r.district)) for r in rows]
    return _geojson(AlarmMap(features=features))


@require(Resource.MAP, Action.READ)
async def map_meters(request: web.Request) -> web.StreamResponse:
    q = parse_query(request, MeterMapQuery)
    precise = _precise(request)
    open_alarms = (select(alarm.c.meter_id, func.count().label("n")).where(alarm.c.status.in_(("open", "acknowledged")))
                   .group_by(alarm.c.meter_id).subquery())
    stmt = (select(meter.c.id, meter.c.model, meter.c.valve_state, premises.c.district, premises.c.lon, premises.c.lat,
                   func.coalesce(open_alarms.c.n, 0).label("open_alarms"))
            .select_from(meter).outerjoin(open_alarms, open_alarms.c.meter_id == meter.c.id).order_by(meter.c.id))
    if q.district is not None:
        stmt = stmt.where(premises.c.district == q.district)
    if q.valve_state is not None:
        stmt = stmt.where(meter.c.valve_state == q.valve_state)
    async with request.app[API].engine.connect() as conn:
        rows = (await conn.execute(_located(stmt, q))).all()
    features = [MeterFeature(geometry=_point(r.lon, r.lat, precise), properties=MeterProperties(
        meter_id=r.id if precise else None, model=r.model, valve_state=r.valve_state, district=r.district,
        open_alarms=int(r.open_alarms))) for r in rows]
    return _geojson(MeterMap(features=features))


def map_endpoints() -> list[Endpoint]:
    rd = Action.READ
    return [
        Endpoint("GET", "/map/alarms", map_alarms, "Active alarms as a GeoJSON FeatureCollection (no personal data)",
                 AlarmMap, Resource.MAP, rd, query=AlarmMapQuery, content_type=GEOJSON),
        Endpoint("GET", "/map/meters", map_meters, "Meters as a GeoJSON FeatureCollection (no personal data)",
                 MeterMap, Resource.MAP, rd, query=MeterMapQuery, content_type=GEOJSON),
    ]
