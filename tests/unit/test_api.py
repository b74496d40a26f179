"""The /api/v1 framework: permission matrix on every endpoint and role, tokens, lockout, audit, OpenAPI."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from core.api import AuthPolicy, Role, build_api, create_user, revoke_user_tokens
from core.api.handlers import endpoints
from core.api.permissions import MATRIX, Action, Resource, allowed, parse_markdown, render_markdown
from core.db.tables import alarm, reading, reading_exception
from core.db.tables_accounts import account, customer, premises
from core.db.tables_api import api_audit, api_token, api_user
from core.db.tables_billing import bill, meter
from core.db.tables_payments import allocation, invoice, payment
from core.db.tables_reconciliation import recon_discrepancy, recon_run
from core.db.tables_workorders import work_order
from hub.migrations import upgrade

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Api:
    client: TestClient[web.Request, web.Application]
    engine: AsyncEngine
    clock: Clock

    async def token(self, username: str, password: str = PASSWORD) -> str:
        resp = await self.client.post("/api/v1/auth/token", json={"username": username, "password": password})
        assert resp.status == 201, await resp.text()
        return str((await resp.json())["access_token"])

    async def audit(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(select(api_audit).order_by(api_audit.c.seq))).mappings()]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    url = f"sqlite+aiosqlite:///{tmp_path}/api.db"
    await asyncio.to_thread(upgrade, url)
    engine = create_async_engine(url)
    clock = Clock()
    async with engine.begin() as conn:
        await conn.execute(insert(alarm), [
            {"id": f"A{i}", "kind": "leak", "meter_id": f"M{i % 2}", "severity": 3,
             "detected_at": T0 + timedelta(minutes=i), "status": "open", "detail": "", "message_id": f"m{i}"}
            for i in range(5)
        ])
        await conn.execute(insert(reading), [
            {"id": f"R{i:02d}", "meter_id": f"M{i % 2}", "read_at": T0 + timedelta(hours=i),
             "volume_m3": Decimal("10.5") + i, "source": "dtu", "quality": "", "message_id": f"r{i}"}
            for i in range(7)
        ])
        await _money(conn)
        await conn.execute(insert(reading_exception).values(
            id="A1", meter_id="M1", account_id="ACC1", read_at=T0, volume_m3=Decimal("10.500"), rules="clock",
            billable=False, findings="[]", status="open", created_at=T0, message_id="r-A1", kind="reading",
            severity="error"))
        await conn.execute(insert(meter).values(id="A1", account_id="ACC1", model="G2.5",
                                                installed_at=date(2025, 1, 1), valve_state="closed"))
        await conn.execute(insert(work_order).values(
            id="A1", source="test:A1", category="inspection", priority="normal", status="accepted", flags="",
            account_id="ACC1", meter_id="A1", alarm_id=None, summary="", opened_at=T0, due_at=T0 + timedelta(days=3),
            clock_until="handled", updated_at=T0, correlation_id="c-A1"))
    for role in Role:
        await create_user(engine, role.value, PASSWORD, role, clock=clock)
    app = web.Application()
    app.add_subapp("/api/v1", build_api(engine, clock=clock, policy=AuthPolicy()))
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Api(client, engine, clock)
    finally:
        await client.close()
        await engine.dispose()


async def _money(conn: Any) -> None:
    """An account with a bill, a payment on it and its invoice, each with id A1 like the alarm."""
    await conn.execute(insert(customer).values(id="C1", name_enc="x", phone_enc="x", id_number_enc="x",
                                               phone_bidx="p", id_number_bidx="i", created_at=T0))
    await conn.execute(insert(premises).values(id="P1", address_enc="x", district="yuecheng", lat=30.0, lon=120.58,
                                               created_at=T0))
    await conn.execute(insert(account).values(id="ACC1", account_number="SX100000000001", category="residential",
                                              billing="postpaid", status="active", premises_id="P1",
                                              customer_id="C1", opened_at=T0))
    await conn.execute(insert(bill).values(
        id="A1", account_id="ACC1", meter_id="M1", period_start=date(2026, 10, 1), period_end=date(2026, 11, 1),
        reading_start_m3=Decimal(0), reading_end_m3=Decimal(10), volume_m3=Decimal(10), total=Decimal("30.00"),
        net_total=Decimal("27.52"), tax_total=Decimal("2.48"), cumulative_before=Decimal(0), category="residential",
        status="issued", created_at=T0))
    await conn.execute(insert(payment).values(
        id="A1", channel="wechat", transaction_id="T1", out_trade_no="O1", account_id="ACC1",
        amount=Decimal("30.00"), refunded=Decimal("0.00"), currency="CNY", paid_at=T0, status="received",
        message_id="m-pay", created_at=T0))
    await conn.execute(insert(allocation).values(id="AL1", payment_id="A1", bill_id="A1", account_id="ACC1",
                                                 kind="payment", amount=Decimal("30.00"), created_at=T0))
    await conn.execute(insert(invoice).values(
        id="A1", request_serial="PAY-A1", kind="blue", scope="payment", reference_id="A1", account_id="ACC1",
        status="requested", user_name_enc="v1:k1:not-decrypted-unless-revealed", user_name_masked="张**",
        total=Decimal("30.00"), total_tax=Decimal("2.48"), message_id="m-pay", requested_at=T0, updated_at=T0))
    await conn.execute(insert(recon_run).values(
        id="A1", channel="wechat", format="wechatpay", statement_date=date(2026, 11, 26), file_sha256="0" * 64,
        file_name="bill.csv", imported_at=T0, imported_by="cli:ops", lines=1, payments=1, refunds=0, matched=0,
        discrepancies=1, statement_total=Decimal("31.00"), refund_total=Decimal("0.00")))
    await conn.execute(insert(recon_discrepancy).values(
        id="A1", run_id="A1", kind="amount_mismatch", transaction_id="T1", refund_id="", out_trade_no="O1",
        payment_id="A1", line_no=2, statement_amount=Decimal("31.00"), core_amount=Decimal("30.00"),
        statement_status="payment", core_status="received", detail="statement 31.00, core 30.00", status="open"))


def assert_problem(body: dict[str, Any], status: int) -> None:
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["title"]
    assert len(body["detail"]) > 10


# --- the matrix and its document ---------------------------------------------------------------------


def test_docs_table_equals_the_matrix() -> None:
    text = (REPO / "docs/permissions.md").read_text()
    table = re.search(r"<!-- permission-matrix:start -->\n(.*?)<!-- permission-matrix:end -->", text, re.S)
    assert table, "docs/permissions.md lost its permission-matrix markers"
    assert table.group(1) == render_markdown()
    documented = parse_markdown(table.group(1))
    assert documented == {(ro, re_, ac): allowed(ro, re_, ac) for ro in Role for re_ in Resource for ac in Action}


def test_auditor_is_read_only_and_government_sees_summaries_and_the_map_only() -> None:
    assert all(Action.WRITE not in acts for res, acts in MATRIX[Role.AUDITOR].items() if res != Resource.SESSION)
    assert allowed(Role.AUDITOR, Resource.AUDIT, Action.READ)
    assert {res for res, acts in MATRIX[Role.GOVERNMENT].items() if Action.READ in acts} == {
        Resource.SUMMARIES, Resource.MAP, Resource.PROFILE}


# --- every endpoint, every role --------------------------------------------------------------------


async def test_every_endpoint_with_every_role_follows_the_matrix(api: Api) -> None:
    tokens = {role: await api.token(role.value) for role in Role}
    bodies = {  # endpoints that need a body get a valid one (meter A1's valve is closed)
        "/meters/{id}/valve/reopen": {"client_request_id": "every-role", "confirmation": {
            "on_site_check_done": True, "checked_by": "engineer 0451", "checked_at": api.clock.now.isoformat()}},
        "/tariffs": {"tariff": {"version": "HEAT-2027", "category": "heating", "effective_from": "2027-01-01",
                                "price": "3.30"}, "note": "every role"},
        "/alarms/{id}/acknowledge": {"note": "every role"},
        "/alarms/{id}/close": {"note": "every role"},
        "/work-orders/{id}/transition": {"to": "dispatched", "note": "every role"},  # then the same again: no change
        # the reading exception A1: resolving it again the same way answers the same
        "/readings/exceptions/{id}/resolve": {"outcome": "accepted", "note": "register checked on site"},
        # the discrepancy A1: resolving it again with the same note answers the same
        "/reconciliation/discrepancies/{id}/resolve": {"note": "channel confirmed 30.00"},
    }
    assert {ep.path for ep in endpoints() if ep.body is not None and not ep.public} == set(bodies)
    for ep in endpoints():
        path = "/api/v1" + ep.path.replace("{id}", "A1")
        body = {"username": "admin", "password": PASSWORD} if ep.path == "/auth/token" else None
        # no token
        resp = await api.client.request(ep.method, path, json=body)
        if ep.public:
            assert resp.status == 201, (ep.path, await resp.text())
            continue
        assert resp.status == 401, ep.path
        assert resp.content_type == "application/problem+json"
        assert_problem(await resp.json(), 401)
        resp = await api.client.request(ep.method, path, headers={"Authorization": "Bearer not-a-token"})
        assert resp.status == 401, ep.path
        assert ep.resource
        assert ep.action
        for role in Role:
            token = await api.token(role.value) if ep.path == "/auth/revoke" else tokens[role]
            resp = await api.client.request(ep.method, path, headers={"Authorization": f"Bearer {token}"},
                                            json=bodies.get(ep.path))
            expected = 200 if allowed(role, ep.resource, ep.action) else 403
            assert resp.status == expected, (ep.method, ep.path, role, await resp.text())
            if expected == 403:
                assert resp.content_type == "application/problem+json"
                body403 = await resp.json()
                assert_problem(body403, 403)
                assert role.value in body403["detail"]


# --- tokens ------------------------------------------------------------------------------------------


async def test_tokens_are_stored_hashed_only(api: Api) -> None:
    token = await api.token("dispatcher")
    async with api.engine.connect() as conn:
        rows = [dict(r) for r in (await conn.execute(select(api_token))).mappings()]
        users = [dict(r) for r in (await conn.execute(select(api_user))).mappings()]
    assert len(rows) == 1
    assert all(token not in str(v) for row in rows for v in row.values())
    assert all(PASSWORD not in str(v) for u in users for v in u.values())
    assert rows[0]["token_hash"] != token
    assert len(rows[0]["token_hash"]) == 64


async def test_token_expires_and_idles_out(api: Api) -> None:
    token = await api.token("auditor")
    auth = {"Authorization": f"Bearer {token}"}
    for _ in range(20):  # used every 25 minutes, so never idle, until the 8-hour TTL
        api.clock.now += timedelta(minutes=25)
        resp = await api.client.get("/api/v1/me", headers=auth)
        assert resp.status == (200 if api.clock.now - datetime(2026, 11, 27, 9, tzinfo=UTC) < timedelta(hours=8)
                               else 401)
    token = await api.token("auditor")
    api.clock.now += timedelta(minutes=31)
    resp = await api.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 401
    assert "POST /api/v1/auth/token" in (await resp.json())["detail"]


async def test_reads_write_the_last_use_of_a_token_at_most_once_a_minute(api: Api) -> None:
    token = await api.token("dispatcher")
    auth = {"Authorization": f"Bearer {token}"}

    async def last_used() -> datetime:
        async with api.engine.connect() as conn:
            return (await conn.execute(select(api_token.c.last_used_at))).scalar_one()

    issued = await last_used()
    for _ in range(3):  # a burst within the minute: no write
        api.clock.now += timedelta(seconds=15)
        assert (await api.client.get("/api/v1/me", headers=auth)).status == 200
    assert await last_used() == issued
    api.clock.now += timedelta(seconds=20)  # a minute and five seconds after the login: written
    assert (await api.client.get("/api/v1/me", headers=auth)).status == 200
    assert await last_used() == api.clock.now
    api.clock.now += timedelta(minutes=29, seconds=59)  # idle time counts from the last write
    assert (await api.client.get("/api/v1/me", headers=auth)).status == 200
    api.clock.now += timedelta(minutes=30, seconds=1)
    assert (await api.client.get("/api/v1/me", headers=auth)).status == 401


async def test_revoked_token_is_refused(api: Api) -> None:
    auth = {"Authorization": f"Bearer {await api.token('admin')}"}
    assert (await api.client.get("/api/v1/me", headers=auth)).status == 200
    assert (await api.client.post("/api/v1/auth/revoke", headers=auth)).status == 200
    assert (await api.client.get("/api/v1/me", headers=auth)).status == 401


async def test_a_token_revoked_by_another_process_is_refused_within_the_recheck_time(api: Api) -> None:
    """A server process trusts a token it checked less than ``recheck_every`` (5 s) ago; a revocation made
    elsewhere (another server process, ``gashub users``) is seen once that time has passed."""
    auth = {"Authorization": f"Bearer {await api.token('auditor')}"}
    assert (await api.client.get("/api/v1/me", headers=auth)).status == 200
    async with api.engine.connect() as conn:
        user_id = (await conn.execute(select(api_token.c.user_id))).scalar_one()
    await revoke_user_tokens(api.engine, user_id, clock=api.clock)  # behind this process's back
    api.clock.now += timedelta(seconds=4)
    assert (await api.client.get("/api/v1/me", headers=auth)).status == 200  # checked 4 s ago: trusted
    api.clock.now += timedelta(seconds=1)
    assert (await api.client.get("/api/v1/me", headers=auth)).status == 401  # read again: revoked
    assert (await api.client.get("/api/v1/me", headers=auth)).status == 401


async def test_lockout_after_five_failed_logins(api: Api) -> None:
    bad = {"username": "dispatcher", "password": "wrong password!"}
    for _ in range(5):
        resp = await api.client.post("/api/v1/auth/token", json=bad)
        assert resp.status == 401
        assert "locked" in (await resp.json())["detail"]
    resp = await api.client.post("/api/v1/auth/token", json={"username": "dispatcher", "password": PASSWORD})
    assert resp.status == 423
    assert_problem(body := await resp.json(), 423)
    assert "locked until" in body["detail"]
    assert int(resp.headers["Retry-After"]) > 0
    api.clock.now += timedelta(minutes=16)
    assert await api.token("dispatcher")
    # failures spread over more than 15 minutes do not lock
    for _ in range(8):
        api.clock.now += timedelta(minutes=4)
        assert (await api.client.post("/api/v1/auth/token", json=bad)).status == 401
    assert await api.token("dispatcher")


async def test_unknown_user_gets_the_same_answer_as_a_wrong_password(api: Api) -> None:
    a = await api.client.post("/api/v1/auth/token", json={"username": "nobody", "password": "x"})
    b = await api.client.post("/api/v1/auth/token", json={"username": "admin", "password": "x"})
    assert a.status == b.status == 401
    assert (await a.json()) == (await b.json())


# --- audit -------------------------------------------------------------------------------------------


async def test_writes_are_audited_allowed_denied_and_failed(api: Api) -> None:
    eng = {"Authorization": f"Bearer {await api.token('field_engineer')}"}
    cs = {"Authorization": f"Bearer {await api.token('customer_service')}"}
    assert (await api.client.post("/api/v1/alarms/A2/acknowledge", headers=eng)).status == 200
    assert (await api.client.post("/api/v1/alarms/A2/acknowledge", headers=eng)).status == 200  # idempotent
    assert (await api.client.post("/api/v1/alarms/A2/close", headers=cs)).status == 403
    assert (await api.client.post("/api/v1/alarms/NOPE/close", headers=eng)).status == 404
    assert (await api.client.post("/api/v1/alarms/A2/close")).status == 401
    assert (await api.client.post("/api/v1/auth/token", json={"username": "admin", "password": "no"})).status == 401
    rows = await api.audit()
    logins = [r for r in rows if r["path"] == "/api/v1/auth/token"]
    writes = [r for r in rows if r["path"].startswith("/api/v1/alarms")]
    assert [r["status"] for r in logins] == [201, 201, 401]
    assert logins[-1]["username"] == "admin"
    assert logins[-1]["user_id"] is None
    assert [(r["status"], r["role"], r["resource_id"], r["method"]) for r in writes] == [
        (200, "field_engineer", "A2", "POST"),
        (200, "field_engineer", "A2", "POST"),
        (403, "customer_service", "A2", "POST"),
        (404, "field_engineer", "NOPE", "POST"),
        (401, None, "A2", "POST"),
    ]
    assert writes[0]["detail"] == "status -> acknowledged"
    assert writes[1]["detail"] == "no change"
    assert all(r["remote"] and r["at"] == api.clock.now and r["resource"] for r in rows)
    async with api.engine.connect() as conn:
        status = (await conn.execute(select(alarm.c.status).where(alarm.c.id == "A2"))).scalar_one()
    assert status == "acknowledged"
    # the auditor reads it back, reads are not audited
    aud = {"Authorization": f"Bearer {await api.token('auditor')}"}
    page = await (await api.client.get("/api/v1/audit?limit=2", headers=aud)).json()
    assert len(page["items"]) == 2
    assert page["next_cursor"]
    assert page["items"][0]["path"] == "/api/v1/auth/token"  # newest first: the auditor's own login


async def test_close_is_idempotent(api: Api) -> None:
    auth = {"Authorization": f"Bearer {await api.token('dispatcher')}"}
    for _ in range(2):
        resp = await api.client.post("/api/v1/alarms/A3/close", headers=auth)
        assert resp.status == 200
        assert (await resp.json())["status"] == "closed"
    resp = await api.client.post("/api/v1/alarms/A3/acknowledge", headers=auth)
    assert (await resp.json())["status"] == "closed"  # a closed alarm stays closed


# --- reads, paging, validation -----------------------------------------------------------------------


async def test_readings_page_with_an_opaque_cursor(api: Api) -> None:
    auth = {"Authorization": f"Bearer {await api.token('customer_service')}"}
    seen: list[str] = []
    url = "/api/v1/readings?limit=3"
    while True:
        page = await (await api.client.get(url, headers=auth)).json()
        seen += [r["id"] for r in page["items"]]
        if not page["next_cursor"]:
            break
        url = f"/api/v1/readings?limit=3&cursor={page['next_cursor']}"
    assert seen == [f"R{i:02d}" for i in range(7)]
    page = await (await api.client.get("/api/v1/readings", headers=auth,
                                       params={"meter_id": "M1", "since": (T0 + timedelta(hours=2)).isoformat(),
                                               "until": (T0 + timedelta(hours=6)).isoformat()})).json()
    assert [r["id"] for r in page["items"]] == ["R03", "R05"]
    assert Decimal(page["items"][0]["volume_m3"]) == Decimal("13.5")


async def test_alarm_filters(api: Api) -> None:
    auth = {"Authorization": f"Bearer {await api.token('dispatcher')}"}
    await api.client.post("/api/v1/alarms/A0/close", headers=auth)
    page = await (await api.client.get("/api/v1/alarms?status=open&meter_id=M0", headers=auth)).json()
    assert [a["id"] for a in page["items"]] == ["A2", "A4"]
    one = await (await api.client.get("/api/v1/alarms/A0", headers=auth)).json()
    assert one["status"] == "closed"


@pytest.mark.parametrize(("query", "parameter"), [
    ("/readings?limit=0", "limit"),
    ("/readings?limit=abc", "limit"),
    ("/readings?since=yesterday", "since"),
    ("/readings?since=2026-11-01T00:00:00", "since"),  # naive: no timezone
    ("/readings?meterid=M1", "meterid"),
    ("/readings?cursor=garbage", "cursor"),
    ("/readings?limit=1&limit=2", "limit"),
    ("/readings?since=2026-11-02T00:00:00Z&until=2026-11-01T00:00:00Z", "since"),
    ("/alarms?status=bogus", "status"),
    ("/audit?cursor=WyJ4Il0", "cursor"),
])
async def test_bad_parameters_are_400_naming_the_parameter(api: Api, query: str, parameter: str) -> None:
    auth = {"Authorization": f"Bearer {await api.token('admin')}"}
    resp = await api.client.get("/api/v1" + query, headers=auth)
    assert resp.status == 400
    assert resp.content_type == "application/problem+json"
    body = await resp.json()
    assert_problem(body, 400)
    assert body["parameter"] == parameter
    assert parameter in body["detail"]


async def test_bad_login_body_is_400(api: Api) -> None:
    resp = await api.client.post("/api/v1/auth/token", json={"username": "admin"})
    assert resp.status == 400
    assert (await resp.json())["parameter"] == "password"
    resp = await api.client.post("/api/v1/auth/token", data=b"not json")
    assert resp.status == 400


async def test_unknown_route_is_problem_json(api: Api) -> None:
    resp = await api.client.get("/api/v1/nothing-here")
    assert resp.status == 404
    assert resp.content_type == "application/problem+json"
    assert_problem(await resp.json(), 404)


async def test_government_sees_counts_without_personal_data(api: Api) -> None:
    auth = {"Authorization": f"Bearer {await api.token('government')}"}
    body = await (await api.client.get("/api/v1/summaries/alarms", headers=auth)).json()
    assert body == {"items": [{"kind": "leak", "status": "open", "count": 5}]}
    for path in ("/readings", "/alarms", "/alarms/A1", "/audit"):
        assert (await api.client.get("/api/v1" + path, headers=auth)).status == 403


# --- OpenAPI -----------------------------------------------------------------------------------------


async def test_openapi_lists_every_route_and_is_structurally_valid(api: Api) -> None:
    resp = await api.client.get("/api/v1/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"].startswith("3.1")
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "Token from POST /api/v1/auth/token"}
    routes = {(ep.method.lower(), "/api/v1" + ep.path) for ep in endpoints()} | {("get", "/api/v1/openapi.json")}
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == routes
    schemas = doc["components"]["schemas"]

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            return ([node["$ref"]] if "$ref" in node else []) + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in schemas, ref
    by_route = {(ep.method.lower(), "/api/v1" + ep.path): ep for ep in endpoints()}
    for (method, path), ep in by_route.items():
        op = doc["paths"][path][method]
        assert op["operationId"]
        assert op["summary"]
        assert op["responses"]
        for name in re.findall(r"{(\w+)}", path):
            assert any(p["name"] == name and p["in"] == "path" and p["required"] for p in op["parameters"])
        if ep.public:
            assert op["security"] == []
        else:
            assert op["security"] == [{"bearer": []}]
            assert ep.resource
            assert ep.action
            assert op["x-roles"] == [r.value for r in Role if allowed(r, ep.resource, ep.action)]
            assert "401" in op["responses"]
            assert "403" in op["responses"]
    readings = doc["paths"]["/api/v1/readings"]["get"]
    assert {p["name"] for p in readings["parameters"]} == {"meter_id", "since", "until", "limit", "cursor"}
    assert doc["paths"]["/api/v1/auth/token"]["post"]["requestBody"]["required"] is True
    assert len({op["operationId"] for ops in doc["paths"].values() for op in ops.values()}) == len(documented)


def test_a_route_without_require_is_refused_at_build_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import core.api.app as app_module
    from core.api.framework import Endpoint
    from core.api.models import Me

    async def naked(request: web.Request) -> web.StreamResponse:
        return web.Response()

    monkeypatch.setattr(app_module, "endpoints",
                        lambda: [Endpoint("GET", "/x", naked, "x", Me, Resource.PROFILE, Action.READ)])
    with pytest.raises(RuntimeError, match="require"):
        build_api(create_async_engine("sqlite+aiosqlite://"))
