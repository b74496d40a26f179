"""/api/v1 bills, payments and invoices, over data written by the real payment handlers: filters and
paging, details, masking with audited reveal, 404 and 503, OpenAPI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from core.accounts import CustomerIn, PremisesIn, Privacy, id_check_digit, open_account
from core.api import AuthPolicy, Role, build_api, create_user
from core.api.payments import payment_endpoints
from core.api.permissions import allowed
from core.catalogue.messages import InvoiceIssued, PaymentChannel, PaymentReceived, PaymentRefunded
from core.config import CoreConfig
from core.db.tables_api import api_audit
from core.db.tables_billing import bill, bill_line, bill_meter, meter
from core.db.tables_payments import invoice, payment
from core.handlers.payments import PaymentHandlers
from core.messages import Incoming
from core.privacy import KeyRing, generate_key
from hub.migrations import upgrade
from tests.api_login import role_headers

PASSWORD = "correct horse battery staple"
NAME = "张三丰"
NOW = datetime(2026, 3, 5, 2, tzinfo=UTC)
D = Decimal


@dataclass
class Api:
    client: TestClient[web.Request, web.Application]
    engine: AsyncEngine
    auth: dict[Role, dict[str, str]]
    account_id: str
    payment_id: str

    async def get(self, path: str, role: Role = Role.CUSTOMER_SERVICE) -> tuple[int, Any]:
        resp = await self.client.get("/api/v1" + path, headers=self.auth[role])
        return resp.status, await resp.json()

    async def audit(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(select(api_audit).order_by(api_audit.c.seq))).mappings()]


def _item(n: int, data: Any) -> Incoming:
    return Incoming(f"m{n}", "test", None, f"c{n}", data)


async def _data(engine: AsyncEngine, privacy: Privacy) -> tuple[str, str]:
    """Two bills (January 100.00, February 168.00), a payment of 300.00 with its issued invoice, a refund of
    50.00 and its red request, and a second payment of 5.00."""
    handlers = PaymentHandlers(CoreConfig(privacy=privacy), clock=lambda: NOW)
    async with engine.begin() as conn:
        view = await open_account(
            conn, privacy, "open-1",
            CustomerIn(name=NAME, phone="13812345678", id_number="33060219900101123" + id_check_digit(
                "33060219900101123")),
            PremisesIn(address="绍兴市越城区解放北路88号", district="yuecheng", lat=30.0, lon=120.58),
            "residential", "postpaid")
        account_id = view.account_id
        await conn.execute(insert(meter).values(id="M1", account_id=account_id, model="G2.5",
                                                installed_at=date(2025, 6, 1), valve_state="open",
                                                prepaid_balance=D(0)))
        for bill_id, month, total in (("B-JAN", 1, "100.00"), ("B-FEB", 2, "168.00")):
            await conn.execute(insert(bill).values(
                id=bill_id, account_id=account_id, meter_id="M1", period_start=date(2026, month, 1),
                period_end=date(2026, month + 1, 1), reading_start_m3=D(0), reading_end_m3=D(50), volume_m3=D(50),
                total=D(total), net_total=D(total), tax_total=D(0), cumulative_before=D(0), category="residential",
                status="issued", created_at=datetime(2026, month + 1, 2, tzinfo=UTC)))
            await conn.execute(insert(bill_line).values(
                bill_id=bill_id, line_no=1, tier=1, tariff_version="RES-2025", start=date(2026, month, 1),
                end=date(2026, month + 1, 1), volume_m3=D(50), unit_price=D(total) / 50, amount=D(total),
                vat_rate=D("0.09")))
        await handlers.record_payment(conn, [_item(1, PaymentReceived(
            channel=PaymentChannel.WECHAT, transaction_id="T1", out_trade_no="O1", account_id=account_id,
            amount=D("300.00"), paid_at=datetime(2026, 3, 5, 1, tzinfo=UTC)))])
        payment_id = (await conn.execute(select(payment.c.id))).scalar_one()
        await handlers.record_invoice_issued(conn, [_item(2, InvoiceIssued(
            request_serial=f"PAY-{payment_id}", account_id=account_id, user_name=NAME, invoice_type="数电票",
            invoice_number="1" * 20, issued_at=NOW, total=D("300.00"), total_tax=D("24.77")))])
        await handlers.record_refund(conn, [_item(3, PaymentRefunded(
            channel=PaymentChannel.WECHAT, transaction_id="T1", refund_id="R1", amount=D("50.00"),
            refunded_at=NOW))])
        await handlers.record_payment(conn, [_item(4, PaymentReceived(
            channel=PaymentChannel.ALIPAY, transaction_id="T2", out_trade_no="O2", account_id=account_id,
            amount=D("5.00"), paid_at=datetime(2026, 3, 6, tzinfo=UTC)))])
    return account_id, payment_id


async def _build(tmp_path: Path, keys: bool) -> AsyncIterator[Api]:
    url = f"sqlite+aiosqlite:///{tmp_path}/api.db"
    await asyncio.to_thread(upgrade, url)
    engine = create_async_engine(url)
    privacy = Privacy.from_ring(KeyRing.from_settings({"k1": generate_key()}, current="k1"))
    account_id, payment_id = await _data(engine, privacy)
    for role in Role:
        await create_user(engine, role.value, PASSWORD, role)
    app = web.Application()
    app.add_subapp("/api/v1", build_api(engine, policy=AuthPolicy(), privacy=privacy if keys else None))
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        auth = await role_headers(client, PASSWORD)
        yield Api(client, engine, auth, account_id, payment_id)
    finally:
        await client.close()
        await engine.dispose()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async for built in _build(tmp_path, keys=True):
        yield built


@pytest.fixture
async def keyless(tmp_path: Path) -> AsyncIterator[Api]:
    async for built in _build(tmp_path, keys=False):
        yield built


async def test_bills_show_what_is_paid_and_filter_and_page(api: Api) -> None:
    status, page = await api.get(f"/bills?account_id={api.account_id}")
    assert status == 200
    assert [(b["id"], b["paid"], b["outstanding"], b["payment_status"]) for b in page["items"]] == [
        ("B-JAN", "100.00", "0.00", "paid"), ("B-FEB", "155.00", "13.00", "partly_paid")]
    assert page["next_cursor"] is None
    _, page = await api.get("/bills?payment_status=partly_paid")
    assert [b["id"] for b in page["items"]] == ["B-FEB"]
    _, page = await api.get("/bills?payment_status=unpaid")
    assert page["items"] == []
    _, page = await api.get("/bills?period_from=2026-02-01&period_to=2026-03-01&status=issued")
    assert [b["id"] for b in page["items"]] == ["B-FEB"]
    _, first = await api.get("/bills?limit=1")
    _, second = await api.get(f"/bills?limit=1&cursor={first['next_cursor']}")
    assert [b["id"] for b in first["items"] + second["items"]] == ["B-JAN", "B-FEB"]
    assert second["next_cursor"] is None
    status, problem = await api.get("/bills?payment_status=overdue")
    assert (status, problem["parameter"]) == (400, "payment_status")
    status, problem = await api.get("/bills?cursor=bm90LWEtY3Vyc29y")
    assert (status, problem["parameter"]) == (400, "cursor")


async def test_a_bill_shows_its_lines_allocations_and_invoices(api: Api) -> None:
    status, feb = await api.get("/bills/B-FEB", Role.AUDITOR)
    assert status == 200
    assert [(x["volume_m3"], x["amount"]) for x in feb["lines"]] == [("50.000", "168.00")]
    assert [(a["payment_id"], a["kind"], a["amount"]) for a in feb["allocations"]] == [
        (api.payment_id, "payment", "168.00"), (api.payment_id, "reversal", "-18.00"),
        # the 5.00 payment came after the refund and settles part of what the refund re-opened
        (feb["allocations"][2]["payment_id"], "payment", "5.00")]
    assert feb["invoices"] == []  # invoiced per payment
    assert feb["meters"] == []  # a one-meter account's bill: its own registers say it all
    async with api.engine.begin() as conn:  # as a run writes the bill of an account with two meters
        await conn.execute(insert(bill_meter), [
            {"bill_id": "B-FEB", "meter_id": m, "reading_start_m3": D(a), "reading_end_m3": D(b),
             "volume_m3": D(b) - D(a), "estimated": m == "W1"} for m, a, b in (("W1", "5", "25"), ("K1", "0", "30"))])
    status, feb = await api.get("/bills/B-FEB", Role.AUDITOR)
    assert [(m["meter_id"], m["volume_m3"], m["estimated"]) for m in feb["meters"]] == [
        ("K1", "30.000", False), ("W1", "20.000", True)]
    status, problem = await api.get("/bills/NOPE")
    assert status == 404
    assert "GET /api/v1/bills" in problem["detail"]


async def test_payments_show_where_the_money_went(api: Api) -> None:
    _, page = await api.get(f"/payments?account_id={api.account_id}")
    assert [(p["channel"], p["amount"], p["refunded"], p["status"]) for p in page["items"]] == [
        ("wechat", "300.00", "50.00", "partly_refunded"), ("alipay", "5.00", "0.00", "received")]
    _, page = await api.get("/payments?status=received&channel=alipay&since=2026-03-06T00:00:00Z")
    assert [p["transaction_id"] for p in page["items"]] == ["T2"]
    status, _ = await api.get("/payments?since=2026-03-06T00:00:00Z&until=2026-03-05T00:00:00Z")
    assert status == 400
    status, detail = await api.get(f"/payments/{api.payment_id}")
    assert status == 200
    assert detail["credit_unused"] == "0.00"  # the 32.00 overpayment went back with the refund
    assert [(r["refund_id"], r["from_credit"], r["from_bills"], r["red_serial"] is not None)
            for r in detail["refunds"]] == [("R1", "32.00", "18.00", True)]
    assert sorted((i["kind"], i["status"], i["total"]) for i in detail["invoices"]) == [
        ("blue", "issued", "300.00"), ("red", "requested", "-50.00")]
    assert (await api.get("/payments/NOPE"))[0] == 404


async def test_invoice_user_names_are_masked_and_revealed_only_to_allowed_roles_audited(api: Api) -> None:
    status, page = await api.get("/invoices?kind=blue&status=issued", Role.AUDITOR)
    assert status == 200
    (blue,) = page["items"]
    assert (blue["user_name"], blue["user_number"], blue["masked"], blue["invoice_number"]) == (
        "张**", None, True, "1" * 20)
    assert NAME not in str(page)
    status, revealed = await api.get(f"/invoices/{blue['id']}?reveal=true", Role.ADMIN)
    assert status == 200
    assert (revealed["user_name"], revealed["user_number"], revealed["masked"]) == (NAME, api.account_id, False)
    assert [(x["quantity"], x["amount"], x["tax"]) for x in revealed["lines"]] == [("1.000", "275.23", "24.77")]
    status, _ = await api.get("/invoices?reveal=true", Role.AUDITOR)
    assert status == 403
    _, page = await api.get("/invoices?reveal=true&status=requested")
    assert sorted((i["kind"], i["user_name"], i["total"]) for i in page["items"]) == [
        ("blue", NAME, "5.00"), ("red", NAME, "-50.00")]
    reveals = [(r["role"], r["status"], r["resource"], r["detail"]) for r in await api.audit()
               if r["detail"] == "reveal"]
    assert reveals == [("admin", 200, "personal_data", "reveal"), ("auditor", 403, "personal_data", "reveal"),
                       ("customer_service", 200, "personal_data", "reveal")]
    assert NAME not in repr(await api.audit())
    assert (await api.get("/invoices/NOPE"))[0] == 404


async def test_without_keys_invoices_read_masked_and_a_reveal_is_503(keyless: Api) -> None:
    status, page = await keyless.get("/invoices")
    assert status == 200
    assert {i["user_name"] for i in page["items"]} == {"张**"}
    status, problem = await keyless.get("/invoices?reveal=true", Role.ADMIN)
    assert status == 503
    assert "GASHUB_CORE__KEYS__" in problem["detail"]


async def test_the_roles_and_openapi_of_the_money_endpoints(api: Api) -> None:
    doc = await (await api.client.get("/api/v1/openapi.json")).json()
    for ep in payment_endpoints():
        assert ep.resource
        assert ep.action
        op = doc["paths"]["/api/v1" + ep.path][ep.method.lower()]
        assert op["x-roles"] == [r.value for r in Role if allowed(r, ep.resource, ep.action)] == [
            "admin", "customer_service", "auditor"]
        status, _ = await api.get(ep.path.replace("{id}", "B-JAN"), Role.DISPATCHER)
        assert status == 403
    bills = doc["paths"]["/api/v1/bills"]["get"]
    assert {p["name"] for p in bills["parameters"]} == {
        "account_id", "status", "payment_status", "period_from", "period_to", "limit", "cursor"}
    assert "BillDetail" in doc["components"]["schemas"]
    assert "user_name_enc" not in str(doc)


async def test_bill_and_invoice_rows_hold_the_name_only_encrypted(api: Api) -> None:
    async with api.engine.connect() as conn:
        rows = [dict(r) for r in (await conn.execute(select(invoice))).mappings()]
    assert rows
    assert all(NAME not in str(v) for row in rows for v in row.values())
