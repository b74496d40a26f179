"""The safety loop in /api/v1 on SQLite and on PostgreSQL: alarms filtered, acknowledged and closed (a
reason while their work order is not handled); work orders listed, read with their history and moved
through the loop (refused moves 422); alarms and meters as GeoJSON inside Shaoxing, coarse and without ids
for the government; every write audited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from ulid import ULID

from core.accounts import CustomerIn, PremisesIn, Privacy, id_check_digit, open_account
from core.alarms import AlarmPolicy
from core.api import AuthPolicy, Role, build_api, create_user
from core.catalogue.messages import AlarmKind, AlarmRaised
from core.db.tables_api import api_audit
from core.db.tables_billing import meter
from core.handlers.alarms import AlarmHandler
from core.messages import Incoming
from core.privacy import KeyRing, generate_key
from core.workorders import WorkOrderSettings
from hub.migrations import upgrade
from tests.api_login import role_headers
from tests.flow.conftest import fresh_postgres_database

PASSWORD = "correct horse battery staple"
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
HOLDER = CustomerIn(name="王五", phone="13812345678",
                    id_number="33060219900101123" + id_check_digit("33060219900101123"))
YUECHENG = PremisesIn(address="绍兴市越城区解放北路88号3幢201室", district="yuecheng", lat=30.00021, lon=120.58213)
KEQIAO = PremisesIn(address="绍兴市柯桥区笛扬路1号", district="keqiao", lat=30.08334, lon=120.49372)
SHAOXING = (119.8, 29.2, 121.3, 30.4)  # lon/lat box around the city's districts


@dataclass
class Api:
    client: TestClient[web.Request, web.Application]
    engine: AsyncEngine
    auth: dict[Role, dict[str, str]]

    async def get(self, path: str, role: Role = Role.DISPATCHER, **params: str) -> tuple[int, Any]:
        resp = await self.client.get("/api/v1" + path, headers=self.auth[role], params=params)
        return resp.status, await resp.json(content_type=None)

    async def post(self, path: str, body: Any = None, role: Role = Role.DISPATCHER) -> tuple[int, Any]:
        resp = await self.client.post("/api/v1" + path, headers=self.auth[role], json=body)
        return resp.status, await resp.json(content_type=None)

    async def audit(self, resource: str) -> list[tuple[str | None, int, str]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(api_audit.c.username, api_audit.c.status, api_audit.c.detail)
                                      .where(api_audit.c.resource == resource).order_by(api_audit.c.seq))
            return [(r.username, r.status, r.detail) for r in rows]

    async def order_of(self, alarm_id: str) -> dict[str, Any]:
        status, page = await self.get("/work-orders", alarm_id=alarm_id)
        assert status == 200
        (order,) = page["items"]
        return dict(order)


async def _world(engine: AsyncEngine) -> None:
    privacy = Privacy.from_ring(KeyRing.from_settings({"k1": generate_key()}, current="k1"))
    async with engine.begin() as conn:
        for meter_id, home in (("M-YC", YUECHENG), ("M-KQ", KEQIAO)):
            view = await open_account(conn, privacy, f"req-{ULID()}", HOLDER, home, "residential", "postpaid",
                                      opened_at=NOW - timedelta(days=400))
            await conn.execute(insert(meter).values(id=meter_id, account_id=view.account_id, model="G2.5",
                                                    installed_at=date(2025, 1, 1), valve_state="open"))
        await conn.execute(insert(meter).values(id="M-SPARE", account_id=None, model="G4",
                                                installed_at=date(2025, 1, 1), valve_state="unknown"))
    handler = AlarmHandler(AlarmPolicy(), WorkOrderSettings(), None, clock=lambda: NOW - timedelta(hours=1))
    alarms = [("L1", AlarmKind.LEAK, "M-YC", 120), ("B1", AlarmKind.LOW_BATTERY, "M-KQ", 60),
              ("T1", AlarmKind.TAMPER, "M-SPARE", 30)]
    async with engine.begin() as conn:
        await handler.record_alarm(conn, [
            Incoming(f"msg-{a}", "alarm.raised", m, f"corr-{a}", AlarmRaised(
                alarm_id=a, kind=k, meter_id=m, severity=3, detected_at=NOW - timedelta(minutes=ago)))
            for a, k, m, ago in alarms])


@pytest.fixture(params=["sqlite", "postgresql"])
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    if request.param == "sqlite":
        url, drop = f"sqlite+aiosqlite:///{tmp_path}/api.db", None
    else:
        url, drop = await fresh_postgres_database(request.getfixturevalue("postgres_url"))
    try:
        await asyncio.to_thread(upgrade, url)
        engine = create_async_engine(url)
        await _world(engine)
        for role in Role:
            await create_user(engine, role.value, PASSWORD, role, clock=lambda: NOW)
        app = web.Application()
        app.add_subapp("/api/v1", build_api(engine, clock=lambda: NOW, policy=AuthPolicy()))
        client = TestClient(TestServer(app))
        await client.start_server()
        try:
            auth = await role_headers(client, PASSWORD)
            yield Api(client, engine, auth)
        finally:
            await client.close()
            await engine.dispose()
    finally:
        if drop is not None:
            await drop()


def ids(page: dict[str, Any]) -> list[str]:
    return [i["id"] for i in page["items"]]


async def test_alarms_are_filtered_by_kind_district_and_time(api: Api) -> None:
    assert ids((await api.get("/alarms"))[1]) == ["L1", "B1", "T1"]
    assert ids((await api.get("/alarms", kind="leak"))[1]) == ["L1"]
    assert ids((await api.get("/alarms", district="keqiao"))[1]) == ["B1"]
    assert ids((await api.get("/alarms", district="shangyu"))[1]) == []
    window = {"since": (NOW - timedelta(minutes=90)).isoformat(), "until": (NOW - timedelta(minutes=30)).isoformat()}
    assert ids((await api.get("/alarms", **window))[1]) == ["B1"]
    page = (await api.get("/alarms", limit="2"))[1]
    assert ids(page) == ["L1", "B1"]
    assert ids((await api.get("/alarms", limit="2", cursor=page["next_cursor"]))[1]) == ["T1"]
    status, problem = await api.get("/alarms", kind="earthquake")
    assert (status, problem["parameter"]) == (400, "kind")
    one = (await api.get("/alarms/L1"))[1]
    assert (one["severity"], one["correlation_id"], one["acknowledged_by"]) == (5, "corr-L1", None)


async def test_acknowledge_and_close_record_who_and_closing_needs_the_order_handled_or_a_reason(api: Api) -> None:
    status, body = await api.post("/alarms/L1/acknowledge", {"note": "crew called"}, role=Role.FIELD_ENGINEER)
    assert (status, body["status"], body["acknowledged_by"], body["acknowledged_at"], body["note"]) == (
        200, "acknowledged", "field_engineer", NOW.isoformat().replace("+00:00", "Z"), "crew called")
    status, body = await api.post("/alarms/L1/acknowledge", role=Role.DISPATCHER)  # no body: fine, no change
    assert (status, body["acknowledged_by"]) == (200, "field_engineer")

    order = await api.order_of("L1")
    status, problem = await api.post("/alarms/L1/close", {"note": "looks fine"})
    assert status == 422
    assert problem["parameter"] == "reason"
    assert f"{order['id']} (accepted)" in problem["detail"]
    status, body = await api.post("/alarms/L1/close", {"reason": "false alarm: the hob was left on"})
    assert (status, body["status"], body["closed_by"], body["note"]) == (
        200, "closed", "dispatcher", "false alarm: the hob was left on")
    assert (await api.post("/alarms/L1/close"))[1]["closed_by"] == "dispatcher"  # again: no change

    b1 = await api.order_of("B1")
    for to in ("dispatched", "signed", "on_site", "handled"):
        status, moved = await api.post(f"/work-orders/{b1['id']}/transition", {"to": to}, role=Role.FIELD_ENGINEER)
        assert status == 200, moved
    status, body = await api.post("/alarms/B1/close")  # its order is handled: no reason needed
    assert (status, body["status"], body["note"]) == (200, "closed", None)

    assert [(u, s, d) for u, s, d in await api.audit("alarms")] == [
        ("field_engineer", 200, "status -> acknowledged"), ("dispatcher", 200, "no change"),
        ("dispatcher", 422, "refused: work order not handled, no reason"),
        ("dispatcher", 200, "status -> closed with a reason"), ("dispatcher", 200, "no change"),
        ("dispatcher", 200, "status -> closed")]
    assert (await api.post("/alarms/L1/close", role=Role.GOVERNMENT))[0] == 403
    assert (await api.post("/alarms/NOPE/close"))[0] == 404


async def test_work_orders_are_listed_read_with_history_and_moved_through_the_loop(api: Api) -> None:
    status, page = await api.get("/work-orders", role=Role.CUSTOMER_SERVICE)
    assert status == 200
    # opened in one batch at one time: listed by opened_at, then id
    assert sorted((o["alarm_id"], o["category"], o["priority"], o["status"]) for o in page["items"]) == [
        ("B1", "maintenance", "normal", "accepted"), ("L1", "emergency_repair", "emergency", "accepted"),
        ("T1", "inspection", "high", "accepted")]
    leak = next(o for o in page["items"] if o["alarm_id"] == "L1")
    # opened an hour ago with 30 minutes to be on site: late, and still running
    assert leak["due_at"] == (NOW - timedelta(minutes=30)).isoformat().replace("+00:00", "Z")
    assert (leak["overdue"], leak["next"], leak["correlation_id"]) == (True, ["dispatched"], "corr-L1")
    assert [o["alarm_id"] for o in (await api.get("/work-orders", overdue="true"))[1]["items"]] == ["L1"]
    assert sorted(o["alarm_id"] for o in (await api.get("/work-orders", overdue="false"))[1]["items"]) == ["B1", "T1"]
    assert [o["alarm_id"] for o in (await api.get("/work-orders", category="inspection"))[1]["items"]] == ["T1"]
    assert [o["alarm_id"] for o in (await api.get("/work-orders", priority="emergency"))[1]["items"]] == ["L1"]

    path = f"/work-orders/{leak['id']}/transition"
    status, problem = await api.post(path, {"to": "handled"})
    assert status == 422
    assert "accepted: it cannot move to handled (allowed: dispatched)" in problem["detail"]
    status, body = await api.post(path, {"to": "dispatched", "note": "crew 3"})
    assert (status, body["status"], body["next"]) == (200, "dispatched", ["accepted", "signed"])
    status, body = await api.post(path, {"to": "dispatched"})
    assert (status, body["status"]) == (200, "dispatched")  # a retry changes nothing
    status, body = await api.post(path, {"flag": "supervised", "note": "chief on it"})
    assert (status, body["flags"]) == (200, ["supervised"])
    for bad in ({}, {"to": "signed", "flag": "supervised"}, {"flag": "overdue"}, {"to": "done"}, {"to": "signed",
                                                                                                   "who": "x"}):
        status, problem = await api.post(path, bad)
        assert status == 400, bad
    for to in ("signed", "on_site"):
        status, body = await api.post(path, {"to": to}, role=Role.FIELD_ENGINEER)
        assert status == 200
    assert body["clock_stopped_at"] == NOW.isoformat().replace("+00:00", "Z")
    assert body["overdue"] is False  # the clock stopped (late: the history shows it)
    status, detail = await api.get(f"/work-orders/{leak['id']}", role=Role.AUDITOR)
    assert status == 200
    steps = [(h["action"], h["by"], h["from_status"], h["to_status"], h["flag"], h["note"]) for h in detail["history"]]
    assert steps == [
        ("open", "core.safety", None, "accepted", None, ""),
        ("status", "dispatcher", "accepted", "dispatched", None, "crew 3"),
        ("flag", "dispatcher", None, None, "supervised", "chief on it"),
        ("status", "field_engineer", "dispatched", "signed", None, ""),
        ("status", "field_engineer", "signed", "on_site", None, "")]
    assert [d for _, _, d in await api.audit("work_orders")] == [
        "refused: work order " + leak["id"] + " is accepted: it cannot move to handled (allowed: dispatched)",
        "accepted -> dispatched", "no change: dispatched -> dispatched", "flag supervised",
        *[""] * 5, "dispatched -> signed", "signed -> on_site"]
    assert (await api.get("/work-orders/NOPE"))[0] == 404
    assert (await api.post(path, {"to": "handled"}, role=Role.AUDITOR))[0] == 403
    assert (await api.get("/work-orders", role=Role.GOVERNMENT))[0] == 403


def _inside_shaoxing(feature: dict[str, Any]) -> bool:
    lon, lat = feature["geometry"]["coordinates"]
    w, s, e, n = SHAOXING
    return w <= lon <= e and s <= lat <= n


async def test_alarms_and_meters_are_geojson_inside_shaoxing_without_personal_data(api: Api) -> None:
    resp = await api.client.get("/api/v1/map/alarms", headers=api.auth[Role.DISPATCHER])
    assert resp.status == 200
    assert resp.content_type == "application/geo+json"
    fc = await resp.json(content_type=None)
    assert fc["type"] == "FeatureCollection"
    assert all(f["type"] == "Feature" and f["geometry"]["type"] == "Point" for f in fc["features"])
    assert all(_inside_shaoxing(f) for f in fc["features"])
    by_id = {f["properties"]["alarm_id"]: f for f in fc["features"]}
    assert set(by_id) == {"L1", "B1"}  # T1's meter is on no account: no premises, no point
    assert by_id["L1"]["geometry"]["coordinates"] == [120.58213, 30.00021]  # [lon, lat]
    assert by_id["L1"]["properties"] == {"alarm_id": "L1", "meter_id": "M-YC", "kind": "leak", "severity": 5,
                                         "status": "open", "detected_at": "2026-11-27T07:00:00Z",
                                         "district": "yuecheng"}
    text = await resp.text()
    assert "13812345678" not in text
    assert "王" not in text
    assert "解放北路" not in text

    keqiao_box = "120.40,30.05,120.55,30.15"
    assert [f["properties"]["alarm_id"] for f in (await api.get("/map/alarms", bbox=keqiao_box))[1]["features"]] == [
        "B1"]
    assert [f["properties"]["alarm_id"] for f in (await api.get("/map/alarms", kind="leak"))[1]["features"]] == ["L1"]
    await api.post("/alarms/L1/close", {"reason": "test"})
    assert [f["properties"]["alarm_id"] for f in (await api.get("/map/alarms"))[1]["features"]] == ["B1"]
    assert [f["properties"]["alarm_id"] for f in (await api.get("/map/alarms", status="closed"))[1]["features"]] == [
        "L1"]
    for bad in ("1,2,3", "a,b,c,d", "121,30,120,31", "0,-91,1,0"):
        status, problem = await api.get("/map/alarms", bbox=bad)
        assert (status, problem["parameter"]) == (400, "bbox"), bad

    status, meters = await api.get("/map/meters")
    assert status == 200
    assert [(f["properties"]["meter_id"], f["properties"]["open_alarms"], f["properties"]["district"])
            for f in meters["features"]] == [("M-KQ", 1, "keqiao"), ("M-YC", 0, "yuecheng")]
    assert all(_inside_shaoxing(f) for f in meters["features"])
    assert [f["properties"]["meter_id"] for f in (await api.get("/map/meters", district="yuecheng"))[1][
        "features"]] == ["M-YC"]
    assert (await api.get("/map/meters", valve_state="closed"))[1]["features"] == []

    status, coarse = await api.get("/map/alarms", role=Role.GOVERNMENT)
    assert status == 200
    (only,) = coarse["features"]
    assert only["geometry"]["coordinates"] == [120.49, 30.08]
    assert (only["properties"]["alarm_id"], only["properties"]["meter_id"], only["properties"]["kind"]) == (
        None, None, "low_battery")
    status, coarse_meters = await api.get("/map/meters", role=Role.GOVERNMENT)
    assert [f["properties"]["meter_id"] for f in coarse_meters["features"]] == [None, None]
    assert (await api.get("/alarms", role=Role.GOVERNMENT))[0] == 403


async def test_openapi_documents_the_geojson_and_the_optional_bodies(api: Api) -> None:
    doc = await (await api.client.get("/api/v1/openapi.json")).json()
    assert "application/geo+json" in doc["paths"]["/api/v1/map/alarms"]["get"]["responses"]["200"]["content"]
    close = doc["paths"]["/api/v1/alarms/{id}/close"]["post"]
    assert close["requestBody"]["required"] is False
    assert "422" in close["responses"]
    transition = doc["paths"]["/api/v1/work-orders/{id}/transition"]["post"]
    assert transition["requestBody"]["required"] is True
    assert set(transition["x-roles"]) == {"admin", "dispatcher", "field_engineer"}
    assert "government" in doc["paths"]["/api/v1/map/meters"]["get"]["x-roles"]
