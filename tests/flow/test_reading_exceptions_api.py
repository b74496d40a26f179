"""/api/v1/readings/exceptions over exceptions the real handlers made (a spike and a register going
back through ``core:record_reading`` and the exceptions route, a silent meter from the daily checks),
on SQLite and PostgreSQL: each filter, paging, resolving with each outcome and what it does to the
reading, idempotent resolves, conflicts, refusals, a wrong role, and the audit trail."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from core.accounts import Privacy
from core.api import AuthPolicy, Role, build_api, create_user
from core.billing_run import SkipReason, run_billing
from core.catalogue.messages import ReadingFlagged
from core.db.tables import outbox, reading
from core.db.tables_api import api_audit
from core.db.tables_billing import bill
from core.handlers.reading_exceptions import record_reading_exception
from core.messages import Incoming
from core.reading_checks import run_reading_checks
from core.readings import ReadingsSettings
from tests.api_login import role_headers
from tests.flow.test_billing_run import BOOK
from tests.flow.test_readings_db import (
    DAILY,
    DAY,
    HOUR,
    T0,
    account_with_meters,
    daily,
    handle,
    history,
    incoming,
    privacy,
)

__all__ = ["privacy"]  # the fixture, shared with test_readings_db
PASSWORD = "correct horse battery staple"
NOTE = "read on site by engineer 0451; tenant 138-0000-1111 present"
LAST = Decimal(100) + 39 * DAILY  # each meter's last stored register, at T0


@dataclass
class Api:
    client: TestClient[web.Request, web.Application]
    engine: AsyncEngine
    auth: dict[Role, dict[str, str]]
    accounts: dict[str, str]

    async def list(self, role: Role = Role.DISPATCHER, **query: str) -> tuple[int, Any]:
        resp = await self.client.get("/api/v1/readings/exceptions", params=query, headers=self.auth[role])
        return resp.status, await resp.json()

    async def resolve(self, exception_id: str, body: dict[str, Any], role: Role = Role.FIELD_ENGINEER
                      ) -> tuple[int, Any]:
        resp = await self.client.post(f"/api/v1/readings/exceptions/{exception_id}/resolve", json=body,
                                      headers=self.auth[role])
        if resp.status >= 400:
            assert resp.content_type == "application/problem+json"
        return resp.status, await resp.json()

    async def reading(self, reading_id: str) -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(reading).where(reading.c.id == reading_id))).one()


async def _flag_through_the_route(eng: AsyncEngine) -> None:
    """What the ``reading-exceptions`` route does with the ``reading.flagged`` events in the outbox."""
    async with eng.begin() as conn:
        rows = (await conn.execute(select(outbox).where(outbox.c.type == "reading.flagged"))).all()
        await record_reading_exception(conn, [
            Incoming(r.id, r.type, r.subject, r.correlation_id, ReadingFlagged.model_validate_json(r.data))
            for r in rows])


@pytest.fixture
async def api(engine: AsyncEngine, privacy: Privacy) -> AsyncIterator[Api]:
    accounts = {m: await account_with_meters(engine, privacy, (m, "open")) for m in ("SPIKY", "BACK", "QUIET")}
    for meter_id in accounts:
        await history(engine, meter_id, daily(Decimal(100), 40))
    # SPIKY uses 10 m³ in a day (the limit is 5 × 1.2); BACK's register goes back 2 m³.
    await handle(engine, incoming("SPIKY", T0 + DAY, LAST + 10, message_id="R-SPIKY"),
                 incoming("BACK", T0 + 2 * DAY, LAST - 2, message_id="R-BACK"), privacy=privacy)
    await _flag_through_the_route(engine)
    async with engine.begin() as conn:  # QUIET was last heard at T0: silent 3½ days (SPIKY 2½, BACK 1½)
        await run_reading_checks(conn, settings=ReadingsSettings(), now=T0 + 3 * DAY + 12 * HOUR)
    for role in Role:
        await create_user(engine, role.value, PASSWORD, role)
    app = web.Application()
    app.add_subapp("/api/v1", build_api(engine, policy=AuthPolicy()))
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        auth = await role_headers(client, PASSWORD)
        yield Api(client, engine, auth, accounts)
    finally:
        await client.close()


def ids(body: Any) -> list[str]:
    return [item["id"] for item in body["items"]]


async def test_the_list_and_each_filter(api: Api) -> None:
    stale = "stale-QUIET-20260605"
    status, body = await api.list()
    assert status == 200
    assert ids(body) == ["R-SPIKY", "R-BACK", stale]  # by read_at: 2 June, 3 June, checked on 5 June
    spiky = body["items"][0]
    assert (spiky["kind"], spiky["meter_id"], spiky["account_id"], spiky["rules"], spiky["severity"]) == (
        "reading", "SPIKY", api.accounts["SPIKY"], ["spike"], "error")
    assert (spiky["billable"], spiky["status"], spiky["resolution"]) == (False, "open", None)
    assert spiky["findings"][0]["action"] == "estimate"
    assert Decimal(spiky["volume_m3"]) == LAST + 10
    check = body["items"][2]
    assert (check["kind"], check["volume_m3"], check["rules"], check["findings"][0]["work_order"]) == (
        "check", None, ["stale"], "communication")

    assert ids((await api.list(rule="negative"))[1]) == ["R-BACK"]
    assert ids((await api.list(rule="stale"))[1]) == [stale]
    assert ids((await api.list(rule="leak"))[1]) == []
    assert ids((await api.list(severity="warning"))[1]) == [stale]
    assert ids((await api.list(kind="reading", severity="error"))[1]) == ["R-SPIKY", "R-BACK"]
    assert ids((await api.list(status="open"))[1]) == ["R-SPIKY", "R-BACK", stale]
    assert ids((await api.list(status="resolved"))[1]) == []
    assert ids((await api.list(meter_id="BACK"))[1]) == ["R-BACK"]
    assert ids((await api.list(account_id=api.accounts["QUIET"]))[1]) == [stale]
    since, until = (T0 + DAY + timedelta(hours=1)).isoformat(), (T0 + 3 * DAY).isoformat()
    assert ids((await api.list(since=since, until=until))[1]) == ["R-BACK"]
    # Paged one at a time, every exception once, in order.
    seen, cursor = [], None
    while True:
        params = {"limit": "1", **({"cursor": cursor} if cursor else {})}
        page = (await api.list(Role.CUSTOMER_SERVICE, **params))[1]
        seen += ids(page)
        if not (cursor := page["next_cursor"]):
            break
    assert seen == ["R-SPIKY", "R-BACK", stale]

    for bad in ({"rule": "gremlins"}, {"severity": "dire"}, {"since": until, "until": since}, {"cursor": "x"}):
        status, problem = await api.list(**bad)
        assert status == 400, bad
        assert problem["status"] == 400
    assert (await api.list(Role.GOVERNMENT))[0] == 403


async def test_resolving_corrects_accepts_or_estimates_and_is_audited(api: Api) -> None:
    # Customer service reads the list but may not resolve.
    status, problem = await api.resolve("R-BACK", {"outcome": "accepted", "note": NOTE}, Role.CUSTOMER_SERVICE)
    assert (status, problem["status"]) == (403, 403)
    assert "customer_service" in problem["detail"]

    # The field engineer read the register: it says 2 m³ more than reported.
    right = LAST + 2
    before = await api.reading("R-BACK")
    assert before.quality == "suspect,held"
    status, done = await api.resolve("R-BACK", {"outcome": "corrected", "note": NOTE, "corrected_m3": str(right)})
    assert status == 200, done
    assert (done["status"], done["resolution"], done["resolved_by"], done["billable"]) == (
        "resolved", "corrected", "field_engineer", True)
    assert Decimal(done["corrected_m3"]) == right
    after = await api.reading("R-BACK")
    assert (after.volume_m3, after.quality) == (right, "valid,edited")
    # The same again answers the same and changes nothing; another outcome is a conflict.
    again = await api.resolve("R-BACK", {"outcome": "corrected", "note": "again", "corrected_m3": str(right)})
    assert again == (200, done)
    status, problem = await api.resolve("R-BACK", {"outcome": "accepted", "note": NOTE})
    assert status == 409
    assert "resolved as 'corrected' by field_engineer" in problem["detail"]

    # The dispatcher has the spike billed on an estimate: the reading stays out of bills.
    status, done = await api.resolve("R-SPIKY", {"outcome": "estimated", "note": "tenant away, estimate"},
                                     Role.DISPATCHER)
    assert (status, done["resolution"], done["billable"]) == (200, "estimated", False)
    assert (await api.reading("R-SPIKY")).quality == "suspect,held,estimate_due"

    # A check finding has no reading to correct; it is accepted once the work is in hand.
    stale = "stale-QUIET-20260605"
    status, problem = await api.resolve(stale, {"outcome": "corrected", "note": NOTE, "corrected_m3": "1.000"})
    assert status == 422
    assert "daily-check finding" in problem["detail"]
    status, problem = await api.resolve("R-SPIKY", {"outcome": "corrected", "note": NOTE})
    assert status == 409  # resolved otherwise before
    assert (await api.resolve(stale, {"outcome": "accepted", "note": "order 77 dispatched"}, Role.ADMIN))[0] == 200
    assert (await api.resolve("NOPE", {"outcome": "accepted", "note": NOTE}))[0] == 404
    for body in ({"outcome": "accepted"}, {"outcome": "fixed", "note": NOTE}, {"outcome": "accepted", "note": NOTE,
                                                                               "extra": 1}):
        assert (await api.resolve(stale, body))[0] == 400, body
    assert ids((await api.list(status="open"))[1]) == []

    async with api.engine.connect() as conn:
        audit = [dict(r) for r in (await conn.execute(
            select(api_audit).where(api_audit.c.resource == "reading_exceptions").order_by(api_audit.c.seq)
        )).mappings()]
    assert [(a["resource_id"], a["status"], a["role"], a["detail"]) for a in audit[:6]] == [
        ("R-BACK", 403, "customer_service", ""),
        ("R-BACK", 200, "field_engineer", f"resolved: corrected {right} m³"),
        ("R-BACK", 200, "field_engineer", "already resolved: corrected"),
        ("R-BACK", 409, "field_engineer", "conflict: resolved before as corrected"),
        ("R-SPIKY", 200, "dispatcher", "resolved: estimated"),
        (stale, 422, "field_engineer",
         "refused: a daily-check finding has no reading to correct or estimate: resolve it as 'accepted'"),
    ]
    assert all("0451" not in a["detail"] and "138-0000" not in a["detail"] for a in audit)
    assert len(audit) == 12
    assert all(a["at"] <= datetime.now(UTC) for a in audit)


async def test_billing_follows_the_resolution(api: Api) -> None:
    """June (local) for BACK: opening 145.600 (31 May), its only later reading held → no bill; corrected
    to 148.800 → 3.200 m³ × 3.00 = 9.60. SPIKY: held for a spike → an estimate: 1.2 m³ a day from its
    good readings × 30 days = 36.000 m³ × 3.00 = 108.00."""
    june, july = date(2026, 6, 1), date(2026, 7, 1)

    async def bill_june() -> dict[str, Any]:
        async with api.engine.begin() as conn:
            result = await run_billing(conn, book=BOOK, period_start=june, period_end=july, now=T0 + 40 * DAY)
        async with api.engine.connect() as conn:
            bills = {r.meter_id: r for r in await conn.execute(select(bill))}
        return {"skipped": {s.meter_id: s.reason for s in result.skipped}, "bills": bills}

    first = await bill_june()
    assert first["skipped"] == {"BACK": SkipReason.READING_HELD}
    spiky = first["bills"]["SPIKY"]
    assert (spiky.quality, spiky.volume_m3, spiky.total) == ("estimated", Decimal("36.000"), Decimal("108.00"))

    status, _ = await api.resolve("R-BACK", {"outcome": "corrected", "note": NOTE, "corrected_m3": str(LAST + 2)})
    assert status == 200
    second = await bill_june()
    back = second["bills"]["BACK"]
    assert second["skipped"] == {}
    assert (back.quality, back.reading_start_m3, back.reading_end_m3, back.total) == (
        "actual", LAST - DAILY, LAST + 2, Decimal("9.60"))
