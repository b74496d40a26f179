"""/api/v1 valves over a meter the real handlers closed (its prepaid balance ran out, then a leak
alarm): the state and its blockers, reopen refused and audited for each reason, allowed with an
on-site confirmation once the balance is topped up and the alarm acknowledged, idempotent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from core.accounts import Privacy
from core.api import AuthPolicy, Role, build_api, create_user
from core.db.tables import outbox
from core.db.tables_api import api_audit
from core.privacy import KeyRing, generate_key
from hub.migrations import upgrade
from tests.api_login import role_headers
from tests.flow.test_prepaid_db import day, handle, leak_alarm, prepaid_meter, top_up

PASSWORD = "correct horse battery staple"
NOTES = "checked the cooker and the hose; tenant 138-0000-1111 present"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC) + timedelta(minutes=1)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Api:
    client: TestClient[web.Request, web.Application]
    engine: AsyncEngine
    clock: Clock
    auth: dict[Role, dict[str, str]]
    privacy: Privacy
    account_id: str

    async def reopen(self, body: Any, role: Role = Role.FIELD_ENGINEER, meter_id: str = "P1") -> tuple[int, Any]:
        resp = await self.client.post(f"/api/v1/meters/{meter_id}/valve/reopen", json=body, headers=self.auth[role])
        return resp.status, await resp.json()

    async def valve(self, role: Role = Role.FIELD_ENGINEER, meter_id: str = "P1") -> tuple[int, Any]:
        resp = await self.client.get(f"/api/v1/meters/{meter_id}/valve", headers=self.auth[role])
        return resp.status, await resp.json()

    def body(self, request_id: str, *, done: bool = True, notes: str = NOTES, at: datetime | None = None
             ) -> dict[str, Any]:
        return {"client_request_id": request_id, "confirmation": {
            "on_site_check_done": done, "checked_by": "engineer 0451",
            "checked_at": (at or self.clock.now).isoformat(), "notes": notes}}

    async def audit(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(
                select(api_audit).where(api_audit.c.resource == "valves").order_by(api_audit.c.seq))).mappings()]

    async def commands(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            return [orjson.loads(r.data) | {"lane": r.lane} for r in await conn.execute(
                select(outbox).where(outbox.c.type == "valve.command").order_by(outbox.c.seq))]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    url = f"sqlite+aiosqlite:///{tmp_path}/valves.db"
    await asyncio.to_thread(upgrade, url)
    engine = create_async_engine(url)
    privacy = Privacy.from_ring(KeyRing.from_settings({"k1": generate_key()}, current="k1"))
    account_id = await prepaid_meter(engine, privacy, balance="5.00", cycle_m3="0.000")
    for n in (1, 2):  # 1.40 left, then -2.20: the valve is closed for the balance
        await handle(engine, day(n), privacy=privacy)
    clock = Clock()
    for role in Role:
        await create_user(engine, role.value, PASSWORD, role, clock=clock)
    app = web.Application()
    app.add_subapp("/api/v1", build_api(engine, clock=clock, policy=AuthPolicy()))
    client = TestClient(TestServer(app))
    await client.start_server()
    auth = await role_headers(client, PASSWORD)
    try:
        yield Api(client, engine, clock, auth, privacy, account_id)
    finally:
        await client.close()
        await engine.dispose()


async def test_a_valve_closed_for_the_balance_shows_why_and_what_blocks_it(api: Api) -> None:
    status, view = await api.valve()
    assert status == 200
    assert (view["valve_state"], view["prepaid"], view["reopen_allowed"], view["open_alarms"]) == (
        "open", True, False, [])  # "open": the meter has not reported the close yet
    (closure,) = view["closures"]
    assert (closure["reason"], closure["id"]) == ("prepaid", f"prepaid-close-{closure['reference']}")
    assert view["blockers"] == ["the prepaid balance is not above zero: the account must be topped up first"]
    assert "balance" not in view
    assert (await api.valve(Role.CUSTOMER_SERVICE))[0] == 200
    assert (await api.valve(Role.GOVERNMENT))[0] == 403
    status, problem = await api.valve(meter_id="NOPE")
    assert (status, problem["title"]) == (404, "Not found")


async def test_reopen_is_refused_for_each_reason_and_every_refusal_is_audited(api: Api) -> None:
    status, problem = await api.reopen({"client_request_id": "r-0"})
    assert (status, problem["parameter"]) == (400, "confirmation")
    status, problem = await api.reopen(api.body("r-1", done=False))
    assert status == 422
    assert "the on-site check is not confirmed" in problem["detail"]
    assert "balance is not above zero" in problem["detail"]
    status, problem = await api.reopen(api.body("r-2"))
    assert (status, problem["title"]) == (422, "Reopen refused")

    await top_up(api.engine, api.privacy, api.account_id, "30.00")
    await leak_alarm(api.engine, "leak-P1-9", datetime.now(UTC))
    status, problem = await api.reopen(api.body("r-3"))
    assert status == 422
    assert problem["detail"] == ("The valve stays closed: alarm leak-P1-9 is open: acknowledge or close it once the "
                                 "site is safe.")
    assert (await api.reopen(api.body("r-4"), role=Role.CUSTOMER_SERVICE))[0] == 403
    assert (await api.reopen(api.body("r-5"), meter_id="NOPE"))[0] == 404
    assert await api.commands() == [c for c in await api.commands() if c["action"] == "close"]

    audit = await api.audit()
    assert [(a["status"], a["resource_id"]) for a in audit] == [
        (400, "P1"), (422, "P1"), (422, "P1"), (422, "P1"), (403, "P1"), (404, "NOPE")]
    assert audit[1]["detail"].startswith("refused: the on-site check is not confirmed")
    assert audit[3]["detail"] == "refused: alarm leak-P1-9 is open: acknowledge or close it once the site is safe"
    assert all(a["username"] for a in audit)
    assert not any("138-0000-1111" in a["detail"] or "cooker" in a["detail"] for a in audit)


async def test_reopen_with_confirmation_after_a_top_up_and_the_alarm_acknowledged(api: Api) -> None:
    await top_up(api.engine, api.privacy, api.account_id, "30.00")
    await leak_alarm(api.engine, "leak-P1-7", datetime.now(UTC))
    resp = await api.client.post("/api/v1/alarms/leak-P1-7/acknowledge", headers=api.auth[Role.FIELD_ENGINEER])
    assert resp.status == 200
    assert (await api.valve())[1]["reopen_allowed"] is True

    status, done = await api.reopen(api.body("r-ok"))
    assert status == 200
    assert done["replayed"] is False
    assert sorted(c["reason"] for c in done["resolved"]) == ["prepaid", "safety"]
    opened = (await api.commands())[-1]
    assert opened == {"command_id": done["command_id"], "meter_id": "P1", "action": "open",
                      "reason": f"reopen {done['reopen_id']} confirmed on site (closed: prepaid, safety)",
                      "requested_by": opened["requested_by"], "on_site_confirmed": True, "lane": "safety"}
    assert opened["requested_by"].startswith("field:")
    view = (await api.valve())[1]
    assert view["closures"] == []

    # A retry of the same request: the same answer, no second command; other content: 409.
    status, again = await api.reopen(api.body("r-ok"), role=Role.ADMIN)
    assert (status, again["replayed"], again["command_id"]) == (200, True, done["command_id"])
    assert [c["action"] for c in await api.commands()] == ["close", "close", "open"]
    assert (await api.reopen(api.body("r-ok", notes="something else")))[0] == 409

    audit = await api.audit()
    assert [a["detail"] for a in audit] == [
        f"reopen sent: {done['command_id']} (closures: prepaid,safety)",
        f"replayed: {done['command_id']} (closures: prepaid,safety)",
        "conflict: request id reused"]
