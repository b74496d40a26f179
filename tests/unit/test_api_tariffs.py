"""/api/v1/tariffs on SQLite and on PostgreSQL: the versions listed with the one in force today marked;
the administrator adds a version from a date to come (idempotent), never edits one, never reprices a
past day; other roles are refused; every POST is audited with the version it concerned."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from core.api import AuthPolicy, Role, build_api, create_user
from core.api.permissions import Action, Resource, allowed
from core.billing import TariffCategory
from core.db.tables_api import api_audit
from core.db.tables_tariffs import tariff_version
from core.tariffs import add_versions
from hub.billing import load_tariffs
from hub.migrations import upgrade
from tests.api_login import role_headers
from tests.flow.conftest import fresh_postgres_database

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
RES_2027 = {"version": "RES-2027", "category": "residential", "effective_from": "2027-01-01",
            "thresholds_m3": ["480", "960"], "prices": ["2.52", "3.02", "3.78"],
            "uplift": {"above_residents": 4, "per_person_m3": "120"}}


@dataclass
class Api:
    client: TestClient[web.Request, web.Application]
    engine: AsyncEngine
    auth: dict[Role, dict[str, str]]

    async def post(self, body: Any, role: Role = Role.ADMIN) -> tuple[int, Any]:
        resp = await self.client.post("/api/v1/tariffs", json=body, headers=self.auth[role])
        return resp.status, await resp.json()

    async def audit(self) -> list[tuple[str | None, int, str]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(api_audit.c.username, api_audit.c.status, api_audit.c.detail)
                                      .where(api_audit.c.resource == "tariffs").order_by(api_audit.c.seq))
            return [(r.username, r.status, r.detail) for r in rows]

    async def versions(self) -> int:
        async with self.engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(tariff_version)) or 0)


@pytest.fixture(params=["sqlite", "postgresql"])
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    if request.param == "sqlite":
        url, drop = f"sqlite+aiosqlite:///{tmp_path}/api.db", None
    else:
        url, drop = await fresh_postgres_database(request.getfixturevalue("postgres_url"))
    try:
        await asyncio.to_thread(upgrade, url)
        engine = create_async_engine(url)
        async with engine.begin() as conn:  # the shipped book, stored when it took effect
            await add_versions(conn, load_tariffs(REPO / "config" / "tariffs.toml").versions, by="seed",
                               now=datetime(2025, 1, 1, tzinfo=UTC))
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


async def test_the_admin_adds_a_future_version_once_and_it_is_listed_as_future(api: Api) -> None:
    status, body = await api.post({"tariff": RES_2027, "note": "price approval 2026-31"})
    assert status == 200, body
    assert body["created"] is True
    version = body["version"]
    assert (version["version"], version["state"], version["current"], version["created_by"], version["note"]) == (
        "RES-2027", "future", False, "api:admin", "price approval 2026-31")
    assert version["tariff"]["prices"] == ["2.52", "3.02", "3.78"]
    again, body2 = await api.post({"tariff": RES_2027, "note": "sent twice"})
    assert (again, body2["created"], body2["version"]["id"]) == (200, False, version["id"])
    assert await api.versions() == 5

    resp = await api.client.get("/api/v1/tariffs", headers=api.auth[Role.CUSTOMER_SERVICE])
    assert resp.status == 200
    listing = await resp.json()
    assert listing["today"] == "2026-11-27"
    assert [(i["category"], i["version"], i["state"], i["current"]) for i in listing["items"]] == [
        ("residential", "RES-2025", "current", True), ("residential", "RES-2027", "future", False),
        ("industrial", "IND-2025", "current", True), ("commercial", "COM-2025", "current", True),
        ("heating", "HEAT-2025", "current", True)]
    assert await api.audit() == [
        ("admin", 200, f"added: RES-2027 (residential from 2027-01-01, #{version['id']})"),
        ("admin", 200, f"unchanged: RES-2027 (residential from 2027-01-01, #{version['id']})"),
    ]


async def test_the_current_version_is_the_latest_whose_date_has_come(api: Api) -> None:
    heat = load_tariffs(REPO / "config" / "tariffs.toml").of(TariffCategory.HEATING)[0]
    async with api.engine.begin() as conn:  # added on 1 June, ahead of its date; today it is in force
        later = heat.model_copy(update={"version": "HEAT-2026", "effective_from": date(2026, 7, 1)})
        await add_versions(conn, (later,), by="api:admin", now=datetime(2026, 6, 1, tzinfo=UTC))
    resp = await api.client.get("/api/v1/tariffs", headers=api.auth[Role.AUDITOR])
    heating = [(i["version"], i["state"]) for i in (await resp.json())["items"] if i["category"] == "heating"]
    assert heating == [("HEAT-2025", "past"), ("HEAT-2026", "current")]


async def test_other_roles_may_not_add_a_version_and_are_audited(api: Api) -> None:
    for role in Role:
        if role is Role.ADMIN:
            continue
        status, body = await api.post({"tariff": RES_2027}, role)
        assert status == 403, role
        assert role.value in body["detail"]
        resp = await api.client.get("/api/v1/tariffs", headers=api.auth[role])
        assert resp.status == (200 if allowed(role, Resource.TARIFFS, Action.READ) else 403)
    assert await api.versions() == 4
    assert [(user, status) for user, status, _ in await api.audit()] == [
        (role.value, 403) for role in Role if role is not Role.ADMIN]


async def test_a_version_in_force_is_never_edited(api: Api) -> None:
    edited = {"version": "COM-2025", "category": "commercial", "effective_from": "2025-01-01", "price": "3.95"}
    status, body = await api.post({"tariff": edited})
    assert status == 409
    assert body["title"] == "Conflict"
    assert "COM-2025 (commercial from 2025-01-01, #" in body["detail"]
    assert "in force since 2025-01-01 and is immutable" in body["detail"]
    relabelled = {**edited, "version": "COM-2025", "effective_from": "2027-01-01"}
    status, body = await api.post({"tariff": relabelled})
    assert status == 409
    assert "has the label of COM-2025" in body["detail"]
    assert await api.versions() == 4
    assert [(status, detail) for _, status, detail in await api.audit()] == [
        (409, "conflict: COM-2025 (commercial from 2025-01-01) stored with other content"),
        (409, "conflict: COM-2025 (commercial from 2027-01-01) stored with other content"),
    ]


async def test_a_new_price_cannot_reach_back_over_priced_days(api: Api) -> None:
    for day in ("2026-11-27", "2026-03-01"):  # today is priced already, like any day before it
        status, body = await api.post({"tariff": {**RES_2027, "version": f"RES-{day}", "effective_from": day}})
        assert status == 422, body
        assert f"would change prices from {day} to 2026-11-27" in body["detail"]
    status, body = await api.post({"tariff": {**RES_2027, "effective_from": "2026-11-28"}})
    assert status == 200
    assert body["version"]["state"] == "future"
    assert [status for _, status, _ in await api.audit()] == [422, 422, 200]


@pytest.mark.parametrize(("tariff", "field"), [
    ({**RES_2027, "prices": ["3.02", "2.52", "3.78"]}, "tariff.residential"),
    ({**RES_2027, "thresholds_m3": ["480"]}, "tariff.residential"),
    ({**RES_2027, "category": "steam"}, "tariff"),
    ({**RES_2027, "surprise": 1}, "tariff.residential.surprise"),
])
async def test_an_invalid_version_is_400_naming_the_field(api: Api, tariff: dict[str, Any], field: str) -> None:
    status, body = await api.post({"tariff": tariff})
    assert status == 400
    assert body["parameter"] == field
    assert await api.versions() == 4
