"""The /api/v1 account endpoints: matrix on every role, idempotent writes, masking and audited reveal,
blind-index search, overview, problem+json for domain refusals, 503 without keys."""

from __future__ import annotations

import asyncio
import itertools
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

from core.accounts import Privacy, id_check_digit
from core.api import AuthPolicy, Role, build_api, create_user
from core.api.accounts import NO_METER, OVERVIEW_READS, account_endpoints
from core.api.permissions import Action, Resource, allowed
from core.billing import ResidentialTariff, TariffBook
from core.db.tables import alarm, reading
from core.db.tables_accounts import account_household
from core.db.tables_api import api_audit
from core.db.tables_billing import bill, meter
from core.db.tables_payments import allocation, credit, invoice, payment
from core.privacy import KeyRing, generate_key
from core.tariffs import add_versions
from hub.migrations import upgrade
from tests.api_login import role_headers
from tests.flow.conftest import fresh_postgres_database

PASSWORD = "correct horse battery staple"
ALICE_ID = "33060219900101123" + id_check_digit("33060219900101123")
BOB_ID = "33062119850615004" + id_check_digit("33062119850615004")
ALICE = {"name": "张三丰", "phone": "13812345678", "id_number": ALICE_ID, "address": "浙江省绍兴市越城区人民中路123号"}
BOB = {"name": "李四", "phone": "+86 139-0000-1111", "id_number": BOB_ID, "address": None}
HOME = {"address": "绍兴市越城区解放北路88号3幢201室", "district": "yuecheng", "lat": 30.0, "lon": 120.58}
_ids = itertools.count()


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Api:
    client: TestClient[web.Request, web.Application]
    engine: AsyncEngine
    auth: dict[Role, dict[str, str]]

    async def audit(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(select(api_audit).order_by(api_audit.c.seq))).mappings()]

    async def open(self, role: Role = Role.CUSTOMER_SERVICE, **changes: Any) -> dict[str, Any]:
        resp = await self.client.post("/api/v1/accounts", json=open_body(**changes), headers=self.auth[role])
        assert resp.status == 201, await resp.text()
        return dict(await resp.json())


def rid() -> str:
    return f"req-{next(_ids)}"


def open_body(**changes: Any) -> dict[str, Any]:
    return {"client_request_id": rid(), "customer": ALICE, "premises": HOME, "category": "residential",
            "billing": "postpaid", **changes}


def household_body(**changes: Any) -> dict[str, Any]:
    return {"client_request_id": rid(), "residents": 6,
            "approval": {"reference": "UP-2026-001", "valid_from": "2026-01-01", "valid_until": "2027-01-01"},
            **changes}


def future(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


BOOK = TariffBook(versions=(ResidentialTariff(version="RES-2025", effective_from=date(2025, 1, 1),
                                              thresholds_m3=(Decimal(300), Decimal(600)),
                                              prices=(Decimal("3.00"), Decimal("3.60"), Decimal("4.50"))),))


async def _build(tmp_path: Path, privacy: Privacy | None, url: str | None = None,
                 tariffs: TariffBook | None = BOOK) -> AsyncIterator[Api]:
    url = url or f"sqlite+aiosqlite:///{tmp_path}/api.db"
    await asyncio.to_thread(upgrade, url)
    engine = create_async_engine(url)
    clock = Clock()
    for role in Role:
        await create_user(engine, role.value, PASSWORD, role, clock=clock)
    app = web.Application()
    app.add_subapp("/api/v1", build_api(engine, clock=clock, policy=AuthPolicy(), privacy=privacy,
                                        tariffs=tariffs))
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        auth = await role_headers(client, PASSWORD)
        yield Api(client, engine, auth)
    finally:
        await client.close()
        await engine.dispose()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    privacy = Privacy.from_ring(KeyRing.from_settings({"k1": generate_key()}, current="k1"))
    async for built in _build(tmp_path, privacy):
        yield built


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    """The API on SQLite (reads one by one), then on a fresh PostgreSQL database (reads combined)."""
    privacy = Privacy.from_ring(KeyRing.from_settings({"k1": generate_key()}, current="k1"))
    if request.param == "sqlite":
        async for built in _build(tmp_path, privacy):
            yield built
        return
    url, drop = await fresh_postgres_database(request.getfixturevalue("postgres_url"))
    try:
        async for built in _build(tmp_path, privacy, url):
            yield built
    finally:
        await drop()


@pytest.fixture
async def keyless(tmp_path: Path) -> AsyncIterator[Api]:
    async for built in _build(tmp_path, None):
        yield built


def assert_problem(resp_body: dict[str, Any], status: int) -> None:
    assert resp_body["status"] == status
    assert resp_body["type"] == "about:blank"
    assert resp_body["title"]
    assert len(resp_body["detail"]) > 10


# --- every account endpoint, every role --------------------------------------------------------------


async def _valid_request(api: Api, method: str, path: str) -> tuple[str, dict[str, Any] | None, int]:
    """A request that succeeds for a role allowed to make it: (path, body, expected status)."""
    if method == "POST" and path == "/accounts":
        return "/api/v1/accounts", open_body(), 201
    if path == "/customers/{id}":
        return "/api/v1/customers/" + (await api.open())["holder"]["customer_id"], None, 200
    acc = (await api.open())["account_id"]
    concrete = "/api/v1" + path.replace("{id}", acc)
    if path.endswith("/transfer"):
        body = {"client_request_id": rid(), "new_customer": BOB, "arrears_policy": "carry", "effective": future(3)}
        return concrete, body, 200
    if path.endswith("/close"):
        return concrete, {"client_request_id": rid(), "final_reading_m3": "123.456", "at": future(3)}, 200
    if path.endswith("/household"):
        return concrete, household_body(), 200
    if path == "/accounts":
        return concrete + "?phone=13812345678", None, 200
    return concrete, None, 200


async def test_every_account_endpoint_with_every_role_follows_the_matrix(api: Api) -> None:
    for ep in account_endpoints():
        assert ep.resource
        assert ep.action
        path, body, ok = await _valid_request(api, ep.method, ep.path)
        resp = await api.client.request(ep.method, path, json=body)
        assert resp.status == 401, ep.path
        assert resp.content_type == "application/problem+json"
        for role in Role:
            path, body, ok = await _valid_request(api, ep.method, ep.path)
            resp = await api.client.request(ep.method, path, json=body, headers=api.auth[role])
            expected = ok if allowed(role, ep.resource, ep.action) else 403
            assert resp.status == expected, (ep.method, ep.path, role, await resp.text())
            if expected == 403:
                assert resp.content_type == "application/problem+json"
                problem = await resp.json()
                assert_problem(problem, 403)
                assert role.value in problem["detail"]


def test_government_has_no_account_access_and_field_engineer_none_either() -> None:
    for action in Action:
        assert not allowed(Role.GOVERNMENT, Resource.ACCOUNTS, action)
        assert not allowed(Role.GOVERNMENT, Resource.PERSONAL_DATA, action)
        assert not allowed(Role.FIELD_ENGINEER, Resource.ACCOUNTS, action)
    assert [r for r in Role if allowed(r, Resource.PERSONAL_DATA, Action.READ)] == [Role.ADMIN, Role.CUSTOMER_SERVICE]
    assert [r for r in Role if allowed(r, Resource.ACCOUNTS, Action.WRITE)] == [Role.ADMIN, Role.CUSTOMER_SERVICE]
    assert not allowed(Role.AUDITOR, Resource.ACCOUNTS, Action.WRITE)


async def test_government_gets_counts_only(api: Api) -> None:
    await api.open()
    await api.open(premises={**HOME, "district": "keqiao", "lat": 30.08, "lon": 120.49},
                   category="non_residential", subcategory="commercial")
    resp = await api.client.get("/api/v1/summaries/accounts", headers=api.auth[Role.GOVERNMENT])
    assert resp.status == 200
    assert await resp.json() == {"items": [
        {"district": "keqiao", "category": "non_residential", "status": "active", "count": 1},
        {"district": "yuecheng", "category": "residential", "status": "active", "count": 1},
    ]}
    assert (await api.client.get("/api/v1/accounts?phone=13812345678",
                                 headers=api.auth[Role.GOVERNMENT])).status == 403


# --- open: idempotency, conflicts, domain refusals ---------------------------------------------------


async def test_open_is_idempotent_by_client_request_id(api: Api) -> None:
    body = open_body()
    cs = api.auth[Role.CUSTOMER_SERVICE]
    first = await api.client.post("/api/v1/accounts", json=body, headers=cs)
    assert first.status == 201
    again = await api.client.post("/api/v1/accounts", json=body, headers=cs)
    assert again.status == 200
    assert await again.json() == await first.json()
    other = await api.client.post("/api/v1/accounts", json={**body, "billing": "prepaid"}, headers=cs)
    assert other.status == 409
    assert other.content_type == "application/problem+json"
    problem = await other.json()
    assert_problem(problem, 409)
    assert body["client_request_id"] in problem["detail"]
    search = await (await api.client.get("/api/v1/accounts?phone=13812345678", headers=cs)).json()
    assert search["count"] == 1
    opened = await first.json()
    assert opened["status"] == "active"
    assert opened["masked"] is True
    assert opened["holder"]["phone"] == "138****5678"


@pytest.mark.parametrize(("change", "words"), [
    ({"customer": {**ALICE, "id_number": ALICE_ID[:17] + ("0" if ALICE_ID[17] != "0" else "1")}}, "check digit"),
    ({"customer": {**ALICE, "phone": "12345"}}, "phone"),
    ({"premises": {**HOME, "lat": 31.5}}, "outside Shaoxing"),
    ({"category": "non_residential"}, "subcategory"),
])
async def test_domain_refusals_are_422_problems(api: Api, change: dict[str, Any], words: str) -> None:
    resp = await api.client.post("/api/v1/accounts", json=open_body(**change), headers=api.auth[Role.ADMIN])
    assert resp.status == 422, await resp.text()
    assert resp.content_type == "application/problem+json"
    problem = await resp.json()
    assert_problem(problem, 422)
    assert words in problem["detail"]
    assert ALICE_ID not in problem["detail"]


async def test_malformed_body_is_400_naming_the_field(api: Api) -> None:
    body = open_body()
    del body["billing"]
    resp = await api.client.post("/api/v1/accounts", json=body, headers=api.auth[Role.ADMIN])
    assert resp.status == 400
    assert (await resp.json())["parameter"] == "billing"
    resp = await api.client.post("/api/v1/accounts", json=open_body(category="shop"), headers=api.auth[Role.ADMIN])
    assert resp.status == 400
    assert (await resp.json())["parameter"] == "category"


# --- household ---------------------------------------------------------------------------------------


async def test_household_is_set_replayed_validated_and_shown(any_api: Api) -> None:
    api = any_api
    acc = (await api.open())["account_id"]
    cs, admin = api.auth[Role.CUSTOMER_SERVICE], api.auth[Role.ADMIN]
    url = f"/api/v1/accounts/{acc}/household"
    body = household_body()
    first = await api.client.put(url, json=body, headers=cs)
    assert first.status == 200, await first.text()
    shown = (await first.json())["household"]
    assert shown["residents"] == 6
    assert shown["approval"] == body["approval"]
    assert (shown["effective_from"], shown["recorded_by"]) == ("2026-01-01", "customer_service")
    again = await api.client.put(url, json=body, headers=cs)
    assert (again.status, await again.json()) == (200, await first.json())
    conflict = await api.client.put(url, json={**body, "residents": 7}, headers=cs)
    assert conflict.status == 409
    assert_problem(await conflict.json(), 409)
    # withdrawn from 1 March 2026 by a later change without an approval; the view shows the latest
    later = await api.client.put(url, json=household_body(residents=5, approval=None, effective_from="2026-03-01"),
                                 headers=admin)
    assert later.status == 200
    assert (await later.json())["household"] | {"recorded_at": None} == {
        "residents": 5, "approval": None, "effective_from": "2026-03-01", "recorded_at": None,
        "recorded_by": "admin"}
    view = await (await api.client.get(f"/api/v1/accounts/{acc}", headers=api.auth[Role.AUDITOR])).json()
    assert view["household"]["residents"] == 5
    async with api.engine.connect() as conn:
        assert len((await conn.execute(select(account_household.c.id)
                                       .where(account_household.c.account_id == acc))).all()) == 2
    writes = [(r["status"], r["detail"]) for r in await api.audit() if r["path"] == url]
    assert writes == [(200, "set household: 6 residents, approval UP-2026-001"),
                      (200, "replayed household: 6 residents, approval UP-2026-001"),
                      (409, "conflict"), (200, "set household: 5 residents, no approval")]


@pytest.mark.parametrize(("change", "status", "parameter"), [
    ({"residents": 0}, 400, "residents"),
    ({"residents": 100}, 400, "residents"),
    ({"approval": {"reference": "UP-1", "valid_from": "2026-02-01", "valid_until": "2026-02-01"}}, 400, "approval"),
    ({"approval": {"reference": "", "valid_from": "2026-02-01"}}, 400, "approval.reference"),
    ({"unknown": 1}, 400, "unknown"),
    ({"effective_from": "2027-02-01"}, 422, None),  # the approval ends before the household takes effect
])
async def test_household_validation(api: Api, change: dict[str, Any], status: int, parameter: str | None) -> None:
    acc = (await api.open())["account_id"]
    resp = await api.client.put(f"/api/v1/accounts/{acc}/household", json=household_body(**change),
                                headers=api.auth[Role.ADMIN])
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/problem+json"
    problem = await resp.json()
    assert_problem(problem, status)
    if parameter is not None:
        assert problem["parameter"] == parameter


async def test_household_refused_for_unknown_non_residential_and_other_roles(api: Api) -> None:
    body = household_body()
    unknown = await api.client.put("/api/v1/accounts/NOPE/household", json=body, headers=api.auth[Role.ADMIN])
    assert unknown.status == 404
    shop = (await api.open(category="non_residential", subcategory="commercial"))["account_id"]
    refused = await api.client.put(f"/api/v1/accounts/{shop}/household", json=household_body(),
                                   headers=api.auth[Role.ADMIN])
    assert refused.status == 422
    assert "residential" in (await refused.json())["detail"]
    acc = (await api.open())["account_id"]
    for role in (Role.DISPATCHER, Role.AUDITOR, Role.GOVERNMENT, Role.FIELD_ENGINEER):
        resp = await api.client.put(f"/api/v1/accounts/{acc}/household", json=household_body(),
                                    headers=api.auth[role])
        assert resp.status == 403, role
        assert_problem(await resp.json(), 403)


# --- transfer and close ------------------------------------------------------------------------------


async def test_transfer_and_close(api: Api) -> None:
    cs = api.auth[Role.CUSTOMER_SERVICE]
    acc = (await api.open())["account_id"]
    transfer = {"client_request_id": rid(), "new_customer": BOB, "arrears_policy": "settle", "effective": future(2)}
    resp = await api.client.post(f"/api/v1/accounts/{acc}/transfer", json=transfer, headers=cs)
    assert resp.status == 200, await resp.text()
    view = await resp.json()
    assert view["holder"]["name"] == "李*"
    assert [h["arrears_policy"] for h in view["holders"]] == [None, "settle"]
    assert (view["outcome"], view["arrears_carried"]) == ("settled", "0.00")
    again = await api.client.post(f"/api/v1/accounts/{acc}/transfer", json=transfer, headers=cs)
    assert again.status == 200
    assert await again.json() == view
    clash = await api.client.post(f"/api/v1/accounts/{acc}/transfer",
                                  json={**transfer, "arrears_policy": "carry"}, headers=cs)
    assert clash.status == 409
    # by phone, the account now belongs to Bob
    assert (await (await api.client.get("/api/v1/accounts?phone=13812345678", headers=cs)).json())["count"] == 0
    assert (await (await api.client.get("/api/v1/accounts?phone=13900001111", headers=cs)).json())["count"] == 1

    close = {"client_request_id": rid(), "final_reading_m3": 812.5, "at": future(5)}
    resp = await api.client.post(f"/api/v1/accounts/{acc}/close", json=close, headers=cs)
    assert resp.status == 200, await resp.text()
    closed = await resp.json()
    assert closed["status"] == "closed"
    assert closed["final_bill"] is None  # no meter: nothing metered to bill
    assert closed["final_reading_m3"] == "812.500"
    assert closed["settlement"] == {"bill": None, "credit_applied": "0.00", "payment": "0.00", "owed": "0.00",
                                    "credit_left": "0.00", "prepaid_balance": None, "refund_due": "0.00",
                                    "refund_order_id": None}
    twice = await api.client.post(f"/api/v1/accounts/{acc}/close", json={**close, "client_request_id": rid()},
                                  headers=cs)
    assert twice.status == 422
    assert_problem(await twice.json(), 422)
    late = await api.client.post(f"/api/v1/accounts/{acc}/transfer",
                                 json={**transfer, "client_request_id": rid()}, headers=cs)
    assert late.status == 422
    assert "closed" in (await late.json())["detail"]


async def test_meter_readings_reach_the_close_and_are_checked(api: Api) -> None:
    """``meter_readings`` (one register per meter, for accounts with several) goes to the close: a meter
    that is not the account's is a 422 naming it; a malformed meter id or a negative register a 400."""
    cs = api.auth[Role.CUSTOMER_SERVICE]
    acc = (await api.open())["account_id"]
    close = {"client_request_id": rid(), "meter_readings": {"M-ELSEWHERE": 12}, "at": future(5)}
    resp = await api.client.post(f"/api/v1/accounts/{acc}/close", json=close, headers=cs)
    assert resp.status == 422, await resp.text()
    assert "M-ELSEWHERE" in (await resp.json())["detail"]
    for bad in ({"M 1": 12}, {"M1": -1}, {}):
        resp = await api.client.post(f"/api/v1/accounts/{acc}/close", json={**close, "meter_readings": bad},
                                     headers=cs)
        assert resp.status == 400, (bad, await resp.text())
    resp = await api.client.get(f"/api/v1/accounts/{acc}", headers=cs)
    assert (await resp.json())["status"] == "active"


async def test_settle_transfer_while_owing_is_409_with_the_amount_then_paid(api: Api) -> None:
    """The old holder owes 120.50 on a bill (here an account without a meter, so no transfer reading):
    settle is refused with the amount until the settlement payment covers it; carry records the debt."""
    cs = api.auth[Role.CUSTOMER_SERVICE]
    owing, other = (await api.open())["account_id"], (await api.open())["account_id"]
    async with api.engine.begin() as conn:
        for n, acc in enumerate((owing, other)):
            await conn.execute(insert(bill).values(
                id=f"BILL{n}", account_id=acc, meter_id="M-X", period_start=date(2026, 1, 1),
                period_end=date(2026, 2, 1), reading_start_m3=0, reading_end_m3=40, volume_m3=40,
                total=Decimal("120.50"), net_total=Decimal("110.55"), tax_total=Decimal("9.95"), cumulative_before=0,
                cumulative_after=40,
                category="residential", status="issued", created_at=datetime(2026, 2, 1, tzinfo=UTC)))
    transfer = {"client_request_id": rid(), "new_customer": BOB, "arrears_policy": "settle", "effective": future(1)}
    resp = await api.client.post(f"/api/v1/accounts/{owing}/transfer", json=transfer, headers=cs)
    assert resp.status == 409
    body = await resp.json()
    assert_problem(body, 409)
    assert body["owed"] == "120.50"
    assert "owes 120.50 yuan" in body["detail"]
    short = await api.client.post(f"/api/v1/accounts/{owing}/transfer",
                                  json={**transfer, "settlement_payment": "100.00"}, headers=cs)
    assert short.status == 409
    paid = await api.client.post(f"/api/v1/accounts/{owing}/transfer",
                                 json={**transfer, "settlement_payment": "120.50"}, headers=cs)
    assert paid.status == 200, await paid.text()
    moved = await paid.json()
    assert (moved["outcome"], moved["settlement"]["payment"], moved["settlement"]["owed"]) == (
        "settled", "120.50", "0.00")
    async with api.engine.connect() as conn:
        row = (await conn.execute(select(payment.c.channel, payment.c.transaction_id, payment.c.amount))).one()
    assert tuple(row) == ("counter", transfer["client_request_id"], Decimal("120.50"))

    carry = {"client_request_id": rid(), "new_customer": BOB, "arrears_policy": "carry", "effective": future(1)}
    resp = await api.client.post(f"/api/v1/accounts/{other}/transfer", json=carry, headers=cs)
    assert resp.status == 200
    carried = await resp.json()
    assert (carried["outcome"], carried["arrears_carried"], carried["holders"][-1]["arrears_carried"]) == (
        "carried", "120.50", "120.50")


async def test_close_prices_with_the_database_book_and_answers_503_while_it_is_empty(tmp_path: Path) -> None:
    privacy = Privacy.from_ring(KeyRing.from_settings({"k1": generate_key()}, current="k1"))
    async for built in _build(tmp_path, privacy, tariffs=None):  # the default: the book in core_tariff_version
        cs = built.auth[Role.CUSTOMER_SERVICE]
        acc = (await built.open())["account_id"]
        close = {"client_request_id": rid(), "final_reading_m3": 1, "at": future(1)}
        resp = await built.client.post(f"/api/v1/accounts/{acc}/close", json=close, headers=cs)
        assert resp.status == 503
        assert "no tariff version is stored" in (await resp.json())["detail"]
        async with built.engine.begin() as conn:
            await add_versions(conn, BOOK.versions, by="test", now=datetime.now(UTC), note="test")
        resp = await built.client.post(f"/api/v1/accounts/{acc}/close", json=close, headers=cs)
        assert resp.status == 200, await resp.text()


async def test_unknown_account_is_404(api: Api) -> None:
    admin = api.auth[Role.ADMIN]
    for method, path, body in [
        ("GET", "/accounts/NOPE", None),
        ("GET", "/accounts/NOPE/overview", None),
        ("POST", "/accounts/NOPE/close", {"client_request_id": rid(), "final_reading_m3": 1, "at": future(1)}),
    ]:
        resp = await api.client.request(method, "/api/v1" + path, json=body, headers=admin)
        assert resp.status == 404, path
        assert_problem(await resp.json(), 404)


# --- masking and reveal ------------------------------------------------------------------------------


async def test_masking_per_role_and_audited_reveal(api: Api) -> None:
    acc = (await api.open())["account_id"]
    for role in Role:
        resp = await api.client.get(f"/api/v1/accounts/{acc}", headers=api.auth[role])
        if not allowed(role, Resource.ACCOUNTS, Action.READ):
            assert resp.status == 403
            continue
        view = await resp.json()
        assert view["masked"] is True
        assert view["holder"] == {**view["holder"], "name": "张**", "phone": "138****5678",
                                  "id_number": ALICE_ID[:6] + "********" + ALICE_ID[-4:],
                                  "address": "浙江省绍兴市越城区****"}
        assert view["premises"]["address"] == "绍兴市越城区****"
    before = len(await api.audit())
    outcome = {}
    for role in Role:
        resp = await api.client.get(f"/api/v1/accounts/{acc}?reveal=true", headers=api.auth[role])
        outcome[role] = resp.status
        if resp.status == 200:
            view = await resp.json()
            assert view["masked"] is False
            assert view["holder"]["phone"] == "13812345678"
            assert view["holder"]["id_number"] == ALICE_ID
            assert view["premises"]["address"] == HOME["address"]
    assert outcome == {Role.ADMIN: 200, Role.CUSTOMER_SERVICE: 200, Role.DISPATCHER: 403, Role.FIELD_ENGINEER: 403,
                       Role.AUDITOR: 403, Role.GOVERNMENT: 403}
    reveals = (await api.audit())[before:]
    # field engineer and government are refused by require() before reveal is considered: not a reveal
    assert [(r["role"], r["status"], r["detail"], r["resource"], r["resource_id"], r["method"]) for r in reveals] == [
        ("admin", 200, "reveal", "personal_data", acc, "GET"),
        ("customer_service", 200, "reveal", "personal_data", acc, "GET"),
        ("dispatcher", 403, "reveal", "personal_data", acc, "GET"),
        ("auditor", 403, "reveal", "personal_data", acc, "GET"),
    ]
    # a plain read is not audited
    await api.client.get(f"/api/v1/accounts/{acc}", headers=api.auth[Role.ADMIN])
    assert len(await api.audit()) == before + 4
    # search and overview reveal too, and are audited
    admin = api.auth[Role.ADMIN]
    found = await (await api.client.get("/api/v1/accounts?phone=13812345678&reveal=1", headers=admin)).json()
    assert found["items"][0]["holder"]["name"] == "张三丰"
    ov = await (await api.client.get(f"/api/v1/accounts/{acc}/overview?reveal=true", headers=admin)).json()
    assert ov["account"]["holder"]["name"] == "张三丰"
    assert ov["holder_history"][0]["name"] == "张三丰"
    tail = (await api.audit())[-2:]
    assert [(r["path"], r["detail"]) for r in tail] == [("/api/v1/accounts", "reveal"),
                                                        (f"/api/v1/accounts/{acc}/overview", "reveal")]


# --- search ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("phone", [
    "13812345678", "+86 138-1234-5678", "138 1234 5678", "0086 13812345678", "8613812345678",
    "１３８１２３４５６７８", "(138) 1234-5678",
])
async def test_search_by_phone_in_any_written_form(api: Api, phone: str) -> None:
    acc = (await api.open())["account_id"]
    resp = await api.client.get("/api/v1/accounts", params={"phone": phone}, headers=api.auth[Role.DISPATCHER])
    assert resp.status == 200, await resp.text()
    found = await resp.json()
    assert found["count"] == 1
    assert found["items"][0]["account_id"] == acc
    assert found["items"][0]["holder"]["phone"] == "138****5678"


async def test_search_by_id_number_and_bad_searches(api: Api) -> None:
    acc = (await api.open())["account_id"]
    auth = api.auth[Role.AUDITOR]
    spaced = f"{ALICE_ID[:6]} {ALICE_ID[6:14]} {ALICE_ID[14:]}".lower()
    found = await (await api.client.get("/api/v1/accounts", params={"id_number": spaced}, headers=auth)).json()
    assert [a["account_id"] for a in found["items"]] == [acc]
    none = await (await api.client.get("/api/v1/accounts", params={"phone": "13900001111"}, headers=auth)).json()
    assert none == {"items": [], "count": 0}
    for params, parameter in [({}, "phone"), ({"phone": "13812345678", "id_number": ALICE_ID}, "id_number"),
                              ({"phone": "12345"}, "phone"), ({"id_number": "123"}, "id_number"),
                              ({"name": "x"}, "name")]:
        resp = await api.client.get("/api/v1/accounts", params=params, headers=auth)
        assert resp.status == 400, params
        problem = await resp.json()
        assert_problem(problem, 400)
        assert problem["parameter"] == parameter


# --- overview ----------------------------------------------------------------------------------------


async def test_overview_of_an_account_without_a_meter(api: Api) -> None:
    acc = (await api.open())["account_id"]
    resp = await api.client.get(f"/api/v1/accounts/{acc}/overview", headers=api.auth[Role.DISPATCHER])
    assert resp.status == 200
    ov = await resp.json()
    assert set(ov) == {"account", "holder_history", "status_history", "meter_link", "recent_readings", "open_alarms",
                       "recent_bills", "credit", "recent_payments", "recent_invoices"}
    assert ov["account"]["account_id"] == acc
    assert ov["account"]["masked"] is True
    assert [h["name"] for h in ov["holder_history"]] == ["张**"]
    assert [(s["status"], s["reason"]) for s in ov["status_history"]] == [("active", "opened")]
    assert ov["meter_link"] == {"linked": False, "meters": [], "reason": NO_METER}
    assert (ov["recent_readings"], ov["open_alarms"]) == ([], [])
    # A dispatcher may not read bills, payments or invoices: the overview leaves them out (null).
    assert (ov["recent_bills"], ov["credit"], ov["recent_payments"], ov["recent_invoices"]) == (None,) * 4
    cs = await (await api.client.get(f"/api/v1/accounts/{acc}/overview",
                                     headers=api.auth[Role.CUSTOMER_SERVICE])).json()
    assert (cs["recent_bills"], cs["credit"], cs["recent_payments"], cs["recent_invoices"]) == ([], "0.00", [], [])


async def seed_overview(api: Api) -> tuple[str, str]:
    """Two accounts with meters, readings, alarms, bills, payments, allocations, credit and invoices."""
    acc = (await api.open())["account_id"]
    other = (await api.open())["account_id"]
    day = datetime(2026, 1, 31, 8, tzinfo=UTC)
    async with api.engine.begin() as conn:
        await conn.execute(insert(meter), [
            {"id": meter_id, "account_id": owner, "model": "G2.5", "installed_at": date(2025, 1, 1),
             "valve_state": "open", "prepaid_balance": Decimal("0.00")}
            for meter_id, owner in (("M-A", acc), ("M-B", acc), ("M-X", other))])
        await conn.execute(insert(reading), [
            {"id": f"R-{m}-{k:02d}", "meter_id": m, "read_at": day + timedelta(days=30 * k), "source": "ctwing",
             "volume_m3": Decimal(100 * k), "quality": "", "message_id": f"msg-{m}-{k}"}
            for m in ("M-A", "M-B", "M-X") for k in range(10)])
        await conn.execute(insert(alarm), [
            {"id": f"AL-{n}", "kind": "leak", "meter_id": m, "severity": 1, "detected_at": day, "status": status,
             "detail": "", "message_id": f"al-{n}"}
            for n, (m, status) in enumerate((("M-A", "open"), ("M-B", "acknowledged"), ("M-A", "closed"),
                                             ("M-X", "open")))])
        await conn.execute(insert(bill), [
            {"id": f"B-{owner[-4:]}-{month}", "account_id": owner, "meter_id": "M-A",
             "period_start": date(2026, month, 1), "period_end": date(2026, month + 1, 1),
             "reading_start_m3": Decimal(0), "reading_end_m3": Decimal(30),
             "volume_m3": Decimal(30), "total": Decimal("72.00"), "net_total": Decimal("66.06"),
             "tax_total": Decimal("5.94"), "cumulative_before": Decimal(0), "cumulative_after": Decimal(30),
             "category": "residential", "status": "issued", "created_at": day}
            for owner in (acc, other) for month in range(1, 12)])
        # A payment of 100.00 paid November's bill (72.00) and part of October's; 0.00 left as credit,
        # then a second payment of 50.00 left 22.00 of credit after October; one invoice each.
        await conn.execute(insert(payment), [
            {"id": f"P-{n}", "channel": "wechat", "transaction_id": f"tx-{n}", "out_trade_no": f"o-{n}",
             "account_id": acc, "amount": Decimal(amount), "refunded": Decimal("0.00"), "currency": "CNY",
             "paid_at": day + timedelta(days=n),
             "status": "received", "message_id": f"pm-{n}", "created_at": day}
            for n, amount in ((1, "100.00"), (2, "50.00"))])
        await conn.execute(insert(allocation), [
            {"id": f"AL{n}", "payment_id": pid, "bill_id": f"B-{acc[-4:]}-{month}", "account_id": acc,
             "kind": "payment", "amount": Decimal(amount), "created_at": day}
            for n, (pid, month, amount) in enumerate((("P-1", 11, "72.00"), ("P-1", 10, "28.00"),
                                                      ("P-2", 10, "28.00")))])
        await conn.execute(insert(account_household).values(
            id="H1", account_id=acc, effective_from=date(2026, 1, 1), residents=6, approval_reference="UP-1",
            approval_valid_from=date(2026, 1, 1), approval_valid_until=date(2027, 1, 1), recorded_at=day,
            recorded_by="admin", client_request_id="h-1"))
        await conn.execute(insert(credit), [{"id": "CR1", "account_id": acc, "payment_id": "P-2", "bill_id": None,
                                             "kind": "overpayment", "amount": Decimal("22.00"), "created_at": day}])
        await conn.execute(insert(invoice), [
            {"id": f"I-{n}", "request_serial": f"PAY-P-{n}", "kind": "blue", "scope": "payment",
             "reference_id": f"P-{n}", "account_id": acc, "status": "issued" if n == 1 else "requested",
             "user_name_enc": "v1:x", "user_name_masked": "张**", "invoice_type": "026" if n == 1 else None,
             "invoice_number": "24330000000000000001" if n == 1 else None, "total": Decimal(amount),
             "total_tax": Decimal("0.00"), "requested_at": day, "issued_at": day if n == 1 else None,
             "updated_at": day}
            for n, amount in ((1, "100.00"), (2, "50.00"))])
    return acc, other


async def test_overview_shows_the_meters_readings_open_alarms_and_bills_of_the_account(any_api: Api) -> None:
    api = any_api
    acc, _ = await seed_overview(api)
    ov = await (await api.client.get(f"/api/v1/accounts/{acc}/overview", headers=api.auth[Role.AUDITOR])).json()
    assert ov["meter_link"] == {"linked": True, "meters": ["M-A", "M-B"], "reason": None}
    readings = [(r["meter_id"], r["read_at"]) for r in ov["recent_readings"]]
    assert len(readings) == 13
    assert {m for m, _ in readings} == {"M-A", "M-B"}
    assert readings == sorted(readings, key=lambda r: r[1], reverse=True)
    assert sorted(a["id"] for a in ov["open_alarms"]) == ["AL-0", "AL-1"]
    assert [b["period_start"] for b in ov["recent_bills"]] == [f"2026-{m:02d}-01" for m in range(11, 0, -1)]
    assert ov["recent_bills"][0] == {
        "bill_id": f"B-{acc[-4:]}-11", "meter_id": "M-A", "period_start": "2026-11-01", "period_end": "2026-12-01",
        "category": "residential", "volume_m3": "30.000", "total": "72.00", "paid": "72.00", "outstanding": "0.00",
        "status": "issued", "created_at": "2026-01-31T08:00:00Z"}
    assert [(b["paid"], b["outstanding"]) for b in ov["recent_bills"][1:3]] == [("56.00", "16.00"), ("0.00", "72.00")]
    assert ov["credit"] == "22.00"
    assert ov["account"]["household"] == {
        "residents": 6, "approval": {"reference": "UP-1", "valid_from": "2026-01-01", "valid_until": "2027-01-01"},
        "effective_from": "2026-01-01", "recorded_at": "2026-01-31T08:00:00Z", "recorded_by": "admin"}
    assert [(p["payment_id"], p["amount"]) for p in ov["recent_payments"]] == [("P-2", "50.00"), ("P-1", "100.00")]
    assert [(i["invoice_id"], i["status"], i["invoice_number"], i["user_name"]) for i in ov["recent_invoices"]] == [
        ("I-2", "requested", None, "张**"), ("I-1", "issued", "24330000000000000001", "张**")]


@pytest.mark.parametrize("any_api", ["postgresql"], indirect=True)
async def test_combined_overview_read_equals_the_reads_one_by_one_on_postgresql(any_api: Api) -> None:
    """On PostgreSQL the overview is one statement (``core.db.combined``): it must give exactly the rows,
    types and order that the same selects give one by one, for a full account, another and a bare one."""
    api = any_api
    acc, other = await seed_overview(api)
    bare = (await api.open())["account_id"]
    async with api.engine.connect() as conn:
        for account_id in (acc, other, bare, "no-such-account"):
            params = {"account_id": account_id}
            one_by_one = await OVERVIEW_READS.fetch_one_by_one(conn, params)
            fetched = await OVERVIEW_READS.fetch(conn, params)
            assert fetched == one_by_one
            assert {k: [{f: type(v) for f, v in row.items()} for row in rows] for k, rows in fetched.items()} == \
                {k: [{f: type(v) for f, v in row.items()} for row in rows] for k, rows in one_by_one.items()}
            if account_id == acc:
                assert {k: len(v) for k, v in fetched.items()} == {
                    "account": 1, "holders": 1, "premises": 1, "statuses": 1, "household": 1, "meters": 2,
                    "readings": 13,
                    "alarms": 2, "bills": 11, "credit": 1, "payments": 2, "invoices": 2}
        only = await OVERVIEW_READS.fetch(conn, {"account_id": acc}, only=["account", "bills"])
        assert set(only) == {"account", "bills"}
        assert only["bills"] == (await OVERVIEW_READS.fetch_one_by_one(conn, {"account_id": acc}))["bills"]


# --- audit of writes ---------------------------------------------------------------------------------


async def test_writes_are_audited_without_personal_data(api: Api) -> None:
    body = open_body()
    cs, disp = api.auth[Role.CUSTOMER_SERVICE], api.auth[Role.DISPATCHER]
    opened = await (await api.client.post("/api/v1/accounts", json=body, headers=cs)).json()
    acc = opened["account_id"]
    await api.client.post("/api/v1/accounts", json=body, headers=cs)
    await api.client.post("/api/v1/accounts", json={**body, "billing": "prepaid"}, headers=cs)
    await api.client.post("/api/v1/accounts", json=open_body(), headers=disp)
    await api.client.post("/api/v1/accounts", json=open_body(customer={**ALICE, "phone": "1"}), headers=cs)
    close = {"client_request_id": rid(), "final_reading_m3": "5", "at": future(1)}
    await api.client.post(f"/api/v1/accounts/{acc}/close", json=close, headers=cs)
    rows = [r for r in await api.audit() if r["path"].startswith("/api/v1/accounts")]
    assert [(r["method"], r["status"], r["role"], r["resource"], r["detail"]) for r in rows] == [
        ("POST", 201, "customer_service", "accounts", f"opened account {acc}"),
        ("POST", 200, "customer_service", "accounts", f"replayed account {acc}"),
        ("POST", 409, "customer_service", "accounts", "conflict"),
        ("POST", 403, "dispatcher", "accounts", ""),
        ("POST", 422, "customer_service", "accounts", "rejected"),
        ("POST", 200, "customer_service", "accounts", "closed"),
    ]
    assert rows[-1]["resource_id"] == acc
    text = repr(await api.audit())
    for secret in ("13812345678", ALICE_ID, "张三丰", "人民中路"):
        assert secret not in text


# --- without keys, and OpenAPI -----------------------------------------------------------------------


async def test_without_keys_account_routes_answer_503(keyless: Api) -> None:
    for ep in account_endpoints():
        assert ep.resource
        assert ep.action
        path = "/api/v1" + ep.path.replace("{id}", "X1")
        for role in Role:
            resp = await keyless.client.request(ep.method, path, json=open_body(), headers=keyless.auth[role])
            expected = 503 if allowed(role, ep.resource, ep.action) else 403
            assert resp.status == expected, (ep.path, role)
            assert resp.content_type == "application/problem+json"
            if expected == 503:
                problem = await resp.json()
                assert_problem(problem, 503)
                assert "personal-data keys are not configured: set GASHUB_CORE__KEYS__<id>" in problem["detail"]
    # counts need no keys
    assert (await keyless.client.get("/api/v1/summaries/accounts", headers=keyless.auth[Role.GOVERNMENT])).status == 200
    doc = await (await keyless.client.get("/api/v1/openapi.json")).json()
    assert not any(p.startswith("/api/v1/accounts") for p in doc["paths"])


async def test_openapi_documents_the_account_routes_when_keys_are_set(api: Api) -> None:
    doc = await (await api.client.get("/api/v1/openapi.json")).json()
    for ep in account_endpoints():
        op = doc["paths"]["/api/v1" + ep.path][ep.method.lower()]
        assert ep.resource
        assert ep.action
        assert op["x-roles"] == [r.value for r in Role if allowed(r, ep.resource, ep.action)]
        assert {"401", "403", "503"} <= set(op["responses"])
    search = doc["paths"]["/api/v1/accounts"]["get"]
    assert {p["name"] for p in search["parameters"]} == {"phone", "id_number", "reveal"}
    assert "requestBody" in doc["paths"]["/api/v1/accounts"]["post"]
    assert "/api/v1/summaries/accounts" in doc["paths"]


# --- customers and meters -------------------------------------------------------------------------------


async def test_a_customer_with_the_accounts_they_hold_masked_unless_revealed(api: Api) -> None:
    opened = await api.open()
    cid = opened["holder"]["customer_id"]
    cs = api.auth[Role.CUSTOMER_SERVICE]
    view = await (await api.client.get(f"/api/v1/customers/{cid}", headers=cs)).json()
    assert view["masked"] is True
    assert (view["customer"]["name"], view["customer"]["phone"]) == ("张**", "138****5678")
    assert [(a["account_id"], a["held_to"]) for a in view["accounts"]] == [(opened["account_id"], None)]
    clear = await (await api.client.get(f"/api/v1/customers/{cid}?reveal=true", headers=cs)).json()
    assert (clear["customer"]["name"], clear["customer"]["phone"]) == (ALICE["name"], ALICE["phone"])
    resp = await api.client.get(f"/api/v1/customers/{cid}?reveal=true", headers=api.auth[Role.AUDITOR])
    assert resp.status == 403
    resp = await api.client.get("/api/v1/customers/NOPE", headers=cs)
    assert resp.status == 404
    reveals = [r for r in await api.audit() if r["detail"] == "reveal"]
    assert [(r["role"], r["status"]) for r in reveals] == [("customer_service", 200), ("auditor", 403)]


async def test_meters_by_account_paged_and_one_with_its_last_reading(api: Api) -> None:
    acc = (await api.open())["account_id"]
    day = datetime(2026, 1, 31, 8, tzinfo=UTC)
    async with api.engine.begin() as conn:
        await conn.execute(insert(meter), [
            {"id": f"MT-{n}", "account_id": acc if n < 3 else None, "model": "G2.5", "installed_at": date(2025, 1, 1),
             "replace_by": date(2035, 1, 1), "valve_state": "open", "prepaid_balance": Decimal("9.00")}
            for n in range(4)])
        await conn.execute(insert(reading), [
            {"id": f"RT-{k}", "meter_id": "MT-0", "read_at": day + timedelta(days=k), "source": "ctwing",
             "volume_m3": Decimal(10 * k), "quality": "valid", "message_id": f"mt-{k}"} for k in range(3)])
    fe = api.auth[Role.FIELD_ENGINEER]
    first = await (await api.client.get(f"/api/v1/meters?account_id={acc}&limit=2", headers=fe)).json()
    assert [m["meter_id"] for m in first["items"]] == ["MT-0", "MT-1"]
    rest = await (await api.client.get(f"/api/v1/meters?account_id={acc}&limit=2&cursor={first['next_cursor']}",
                                       headers=fe)).json()
    assert ([m["meter_id"] for m in rest["items"]], rest["next_cursor"]) == (["MT-2"], None)
    one = await (await api.client.get("/api/v1/meters/MT-0", headers=fe)).json()
    assert one["last_reading"] == {"read_at": "2026-02-02T08:00:00Z", "volume_m3": "20.000", "quality": "valid"}
    assert "prepaid_balance" not in one
    assert (await api.client.get("/api/v1/meters/NOPE", headers=fe)).status == 404
    assert (await api.client.get("/api/v1/meters", headers=api.auth[Role.GOVERNMENT])).status == 403
