"""Reconciliation over payments the real handlers recorded (``record_payment``, ``record_refund``), on
SQLite and PostgreSQL: a WeChat Pay trade bill with one of each discrepancy kind imported through the
hub's import (the CLI's path, audited), idempotent re-import, a corrected statement, a statement of
another day refused, the API's runs, filters, paging, roles and resolving (audited without the note),
the ops view of the latest run per channel (also through a running hub's ``/ops/reconciliation``), and
the ``gashub reconcile import`` command itself, from a file and from a short-lived download URL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select

from connectors.payments.statements import PARSERS
from connectors.payments.statements.simulator import (
    BillDownloadSimulator,
    Trade,
    alipay_bill_zip,
    alipay_details_csv,
    wechatpay_bill,
)
from core.api import AuthPolicy, Role, build_api, create_user
from core.catalogue.messages import PaymentChannel, RefundKind
from core.db.tables_api import api_audit
from core.db.tables_reconciliation import recon_discrepancy, recon_run
from core.reconciliation import STATEMENT_TZ, Imported, LineKind, StatementError, import_statement
from core.reconciliation.queries import latest_per_channel
from hub.reconcile import DownloadFailed, download, import_file
from hub.store.db import Database
from tests.api_login import role_headers
from tests.flow.conftest import OPS_TOKEN, Stack
from tests.flow.test_payments_db import City, city, paid, refunded

__all__ = ["city"]  # the fixture, shared with test_payments_db
D = Decimal
DAY = date(2026, 3, 5)  # the handlers' payments are paid at 09:30 and refunded at 10:00 Beijing time that day
T = datetime(2026, 3, 5, 9, 30, tzinfo=STATEMENT_TZ)
REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"
NOTE = "channel confirmed by phone; payer 138-0000-1111 refunded"


def trade(kind: LineKind, tx: str, amount: str, refund_id: str = "") -> Trade:
    return Trade(kind, tx, D(amount), T, f"O-{tx}", refund_id)


STATEMENT = [
    trade(LineKind.PAYMENT, "OK", "10.00"),
    trade(LineKind.PAYMENT, "OK", "10.00"),             # listed twice
    trade(LineKind.PAYMENT, "AMT", "25.00"),            # the core has 20.00
    trade(LineKind.PAYMENT, "NEW", "9.99"),             # the core never heard of it
    trade(LineKind.PAYMENT, "REF", "40.00"),
    trade(LineKind.REFUND, "REF", "5.00", "R-REF"),     # the core has this refund
    trade(LineKind.REFUND, "REF", "2.00", "R-X"),       # and not this one
    trade(LineKind.PAYMENT, "REV", "15.00"),            # the core reversed it
    trade(LineKind.PAYMENT, "OLD", "7.00"),             # paid the day before, on this statement
]
EXPECTED = [  # (kind, transaction, refund) in the order matching finds them
    ("duplicated", "OK", ""), ("amount_mismatch", "AMT", ""), ("missing_in_core", "NEW", ""),
    ("status_mismatch", "REF", "R-X"), ("status_mismatch", "REV", ""), ("missing_in_statement", "GONE", ""),
    ("missing_in_statement", "REV", "V-REV")]


async def record_the_day(city: City) -> None:
    h = city.handlers()
    await city.run(h.record_payment, *(paid(city.postpaid, amount, txn) for txn, amount in (
        ("OK", "10.00"), ("AMT", "20.00"), ("GONE", "30.00"), ("REF", "40.00"), ("REV", "15.00"))),
        paid(city.postpaid, "7.00", "OLD", at=datetime(2026, 3, 4, 7, tzinfo=UTC)))
    await city.run(h.record_refund, refunded("5.00", "R-REF", "REF"),
                   refunded("15.00", "V-REV", "REV", kind=RefundKind.REVERSAL))


async def run_import(city: City, path: Path, fmt: str = "wechatpay", day: date = DAY) -> Imported:
    db = Database(city.url)
    try:
        return await import_file(db, fmt, day, path, by="cli:ops", now=datetime(2026, 3, 6, 1, tzinfo=UTC))
    finally:
        await db.aclose()


@pytest.fixture
async def bill(city: City, tmp_path: Path) -> Path:
    await record_the_day(city)
    path = tmp_path / "tradebill-20260305.csv"
    path.write_bytes(wechatpay_bill(STATEMENT))
    return path


async def test_import_finds_each_kind_and_the_same_file_again_writes_nothing(city: City, bill: Path) -> None:
    done = await run_import(city, bill)
    assert done.fresh
    assert (done.lines, done.matched) == (9, 4)  # OK, REF, its refund R-REF, OLD
    assert done.discrepancies == {"duplicated": 1, "amount_mismatch": 1, "missing_in_core": 1,
                                  "status_mismatch": 2, "missing_in_statement": 2}
    rows = await city.rows(recon_discrepancy, order=recon_discrepancy.c.id)
    assert sorted((r.kind, r.transaction_id, r.refund_id) for r in rows) == sorted(EXPECTED)
    assert {r.status for r in rows} == {"open"}
    by = {(r.kind, r.transaction_id, r.refund_id): r for r in rows}
    amt = by[("amount_mismatch", "AMT", "")]
    assert (D(amt.statement_amount), D(amt.core_amount), amt.line_no, amt.core_status) == (
        D("25.00"), D("20.00"), 4, "received")
    assert amt.payment_id is not None
    gone = by[("missing_in_statement", "GONE", "")]
    assert (gone.statement_amount, D(gone.core_amount), gone.line_no) == (None, D("30.00"), None)
    assert by[("status_mismatch", "REV", "")].core_status == "reversed"
    (run,) = await city.rows(recon_run)
    assert (run.channel, run.format, run.statement_date, run.lines, run.payments, run.refunds, run.matched,
            run.discrepancies, D(run.statement_total), D(run.refund_total), run.imported_by) == (
        "wechat", "wechatpay", DAY, 9, 7, 2, 4, 7, D("116.99"), D("7.00"), "cli:ops")

    again = await run_import(city, bill)
    assert (again.fresh, again.run_id, again.matched, again.discrepancies) == (
        False, done.run_id, 4, done.discrepancies)
    assert await city.count(recon_run) == 1
    assert await city.count(recon_discrepancy) == 7
    audit = await city.rows(api_audit, api_audit.c.resource == "reconciliation", order=api_audit.c.seq)
    assert [(a.method, a.status, a.username) for a in audit] == [("CLI", 201, "cli:ops"), ("CLI", 200, "cli:ops")]
    assert audit[0].detail == f"run {done.run_id}: 9 lines, 4 matched, 7 discrepancies"
    assert audit[1].detail == f"already imported as run {done.run_id}"


async def test_a_corrected_statement_is_a_new_run_and_the_ops_view_shows_the_latest(city: City, bill: Path) -> None:
    first = await run_import(city, bill)
    fixed = bill.with_name("tradebill-20260305-v2.csv")
    fixed.write_bytes(wechatpay_bill([t for t in STATEMENT if t.transaction_id not in ("NEW",)][1:]))
    second = await run_import(city, fixed)
    assert second.fresh
    assert second.run_id != first.run_id
    assert "missing_in_core" not in second.discrepancies
    assert "duplicated" not in second.discrepancies
    async with city.engine.connect() as conn:
        (view,) = await latest_per_channel(conn, items=2)
    assert view["run"]["id"] == second.run_id
    assert view["run"]["open"] == sum(second.discrepancies.values())
    assert view["open_by_kind"] == second.discrepancies
    assert len(view["open_items"]) == 2


async def test_a_statement_of_another_day_or_format_is_refused_and_nothing_written(city: City, tmp_path: Path) -> None:
    await record_the_day(city)
    path = tmp_path / "alipay.csv"
    path.write_bytes(alipay_details_csv([trade(LineKind.PAYMENT, "A1", "1.00")], date(2026, 3, 4)))
    with pytest.raises(StatementError, match="the statement of 2026-03-04, not of 2026-03-05"):
        await run_import(city, path, "alipay")
    with pytest.raises(StatementError, match="UTF-8"):
        await run_import(city, path, "wechatpay")
    assert await city.count(recon_run) == 0
    audit = await city.rows(api_audit, api_audit.c.resource == "reconciliation", order=api_audit.c.seq)
    assert [a.status for a in audit] == [422, 422]
    assert audit[0].detail.startswith("refused: the file is the statement of 2026-03-04")


# --- the API -------------------------------------------------------------------------------------------


class Api:
    def __init__(self, client: TestClient[web.Request, web.Application], auth: dict[Role, dict[str, str]]) -> None:
        self.client = client
        self.auth = auth

    async def get(self, path: str, role: Role = Role.AUDITOR, **query: str) -> tuple[int, Any]:
        resp = await self.client.get("/api/v1/reconciliation" + path, params=query, headers=self.auth[role])
        return resp.status, await resp.json()

    async def resolve(self, ident: str, note: str, role: Role = Role.ADMIN) -> tuple[int, Any]:
        resp = await self.client.post(f"/api/v1/reconciliation/discrepancies/{ident}/resolve", json={"note": note},
                                      headers=self.auth[role])
        if resp.status >= 400:
            assert resp.content_type == "application/problem+json"
        return resp.status, await resp.json()


@pytest.fixture
async def api(city: City) -> AsyncIterator[Api]:
    for role in Role:
        await create_user(city.engine, role.value, PASSWORD, role)
    app = web.Application()
    app.add_subapp("/api/v1", build_api(city.engine, policy=AuthPolicy()))
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        auth = await role_headers(client, PASSWORD)
        yield Api(client, auth)
    finally:
        await client.close()


async def test_runs_discrepancies_paging_roles_and_resolving(city: City, bill: Path, api: Api) -> None:
    done = await run_import(city, bill)
    status, page = await api.get("/runs")
    assert status == 200
    (run,) = page["items"]
    assert (run["id"], run["channel"], run["statement_date"], run["lines"], run["open"], run["statement_total"]) == (
        done.run_id, "wechat", "2026-03-05", 9, 7, "116.99")
    assert (await api.get("/runs", channel="alipay"))[1]["items"] == []
    assert [r["id"] for r in (await api.get("/runs", since="2026-03-05", until="2026-03-05"))[1]["items"]] == [
        done.run_id]
    assert (await api.get("/runs", since="2026-03-06"))[1]["items"] == []
    assert (await api.get("/runs", since="2026-03-06", until="2026-03-05"))[0] == 400
    for role, expected in ((Role.ADMIN, 200), (Role.CUSTOMER_SERVICE, 200), (Role.DISPATCHER, 403),
                           (Role.FIELD_ENGINEER, 403), (Role.GOVERNMENT, 403)):
        assert (await api.get("/runs", role))[0] == expected, role
        assert (await api.get(f"/runs/{done.run_id}", role))[0] == expected, role

    status, detail = await api.get(f"/runs/{done.run_id}", kind="missing_in_statement")
    assert status == 200
    assert detail["open_by_kind"] == done.discrepancies
    assert sorted((d["transaction_id"], d["refund_id"]) for d in detail["items"]) == [("GONE", ""), ("REV", "V-REV")]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        query = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        status, part = await api.get(f"/runs/{done.run_id}", **query)
        assert status == 200
        seen += [d["id"] for d in part["items"]]
        cursor = part["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 7
    assert (await api.get(f"/runs/{done.run_id}", kind="lost"))[0] == 400
    assert (await api.get("/runs/NOPE"))[0] == 404

    target = next(d for d in detail["items"] if d["transaction_id"] == "GONE")
    assert (await api.resolve(target["id"], NOTE, Role.CUSTOMER_SERVICE))[0] == 403
    assert (await api.resolve(target["id"], NOTE, Role.AUDITOR))[0] == 403
    status, out = await api.resolve(target["id"], NOTE)
    assert status == 200
    assert (out["status"], out["resolved_by"], out["resolution_note"]) == ("resolved", "admin", NOTE)
    assert out["resolved_at"] is not None
    assert (await api.resolve(target["id"], NOTE))[1] == out  # the same again: the same answer
    status, problem = await api.resolve(target["id"], "something else")
    assert status == 409
    assert "resolved by admin" in problem["detail"]
    assert (await api.resolve("NOPE", NOTE))[0] == 404
    resp = await api.client.post(f"/api/v1/reconciliation/discrepancies/{target['id']}/resolve",
                                 json={"note": ""}, headers=api.auth[Role.ADMIN])
    assert resp.status == 400

    status, after = await api.get(f"/runs/{done.run_id}", status="open")
    assert after["open"] == 6
    assert target["id"] not in [d["id"] for d in after["items"]]
    assert [d["id"] for d in (await api.get(f"/runs/{done.run_id}", status="resolved"))[1]["items"]] == [target["id"]]

    audit = await city.rows(api_audit, api_audit.c.method == "POST", api_audit.c.resource == "reconciliation",
                            order=api_audit.c.seq)
    assert [(a.username, a.status) for a in audit] == [
        ("customer_service", 403), ("auditor", 403), ("admin", 200), ("admin", 200), ("admin", 409), ("admin", 404),
        ("admin", 400)]
    assert audit[2].detail == "resolved: missing_in_statement GONE"
    assert audit[3].detail == "already resolved: missing_in_statement GONE"
    assert all("138" not in a.detail and "phone" not in a.detail for a in audit)  # the note is not audited


# --- the command ---------------------------------------------------------------------------------------


async def test_the_reconcile_import_command(city: City, bill: Path) -> None:
    env = {**os.environ, "GASHUB_DATABASE_URL": city.url}
    env.pop("GASHUB_CONFIG", None)
    args = [sys.executable, "-m", "hub.cli", "reconcile", "import", "--channel", "wechatpay", "--date", "2026-03-05",
            str(bill)]

    def gashub(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, cwd=REPO, check=False)

    first = await asyncio.to_thread(gashub, args)
    assert first.returncode == 0, first.stderr
    assert "wechatpay statement of 2026-03-05: 9 lines, 4 matched" in first.stdout
    assert "  amount mismatch: 1" in first.stdout
    assert "  missing in statement: 2" in first.stdout
    again = await asyncio.to_thread(gashub, args)
    assert again.returncode == 0
    assert "imported before" in again.stdout
    wrong = await asyncio.to_thread(gashub, [*args[:6], "alipay", *args[7:]])
    assert wrong.returncode == 1
    assert "nothing imported" in wrong.stderr
    async with city.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(recon_run)) == 1


# --- the ops page's data, through a running hub (embedded, then RabbitMQ + PostgreSQL) ---------------------


async def test_ops_reconciliation_shows_the_latest_run_per_channel(stack: Stack) -> None:
    hub = await stack.start_hub()
    lines = [trade(LineKind.PAYMENT, "NEW-1", "9.99"), trade(LineKind.PAYMENT, "NEW-2", "1.00")]
    for n, (fmt, data) in enumerate((("wechatpay", wechatpay_bill(lines)),
                                     ("alipay", alipay_details_csv(lines, DAY)),
                                     ("wechatpay", wechatpay_bill(lines[:1])))):
        async with hub.db.begin() as conn:
            await import_statement(conn, PARSERS[fmt](data, DAY, None), statement_date=DAY,
                                   file_sha256=f"{n:064d}", file_name=f"{fmt}-{n}.csv", by="cli:ops",
                                   now=datetime(2026, 3, 6, 1, n, tzinfo=UTC))
    base = stack.base_url(hub)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/ops/reconciliation") as resp:
            assert resp.status == 401
        async with http.get(f"{base}/ops/reconciliation", params={"items": "1"},
                            headers={"Authorization": f"Bearer {OPS_TOKEN}"}) as resp:
            assert resp.status == 200
            body = await resp.json()
        async with http.get(f"{base}/ops/reconciliation", params={"items": "0"},
                            headers={"Authorization": f"Bearer {OPS_TOKEN}"}) as resp:
            assert resp.status == 400
    alipay_view, wechat_view = body["channels"]
    assert (alipay_view["run"]["channel"], alipay_view["open_by_kind"]) == ("alipay", {"missing_in_core": 2})
    assert len(alipay_view["open_items"]) == 1  # items=1
    assert (wechat_view["run"]["file_name"], wechat_view["run"]["open"]) == ("wechatpay-2.csv", 1)  # the newest
    (item,) = wechat_view["open_items"]
    assert (item["kind"], item["transaction_id"], item["statement_amount"], item["core_amount"]) == (
        "missing_in_core", "NEW-1", "9.99", None)


# --- downloading the statement -----------------------------------------------------------------------------


async def test_the_command_downloads_alipay_statement_from_its_short_lived_url(city: City) -> None:
    h = city.handlers()
    await city.run(h.record_payment, paid(city.postpaid, "12.00", "2026030522001400000000000001",
                                          channel=PaymentChannel.ALIPAY),
                   paid(city.postpaid, "13.00", "2026030522001400000000000002", channel=PaymentChannel.ALIPAY))
    zipped = alipay_bill_zip([trade(LineKind.PAYMENT, "2026030522001400000000000001", "12.00")], DAY)
    now = [0.0]
    centre = BillDownloadSimulator(valid_s=30, clock=lambda: now[0])
    await centre.start()
    try:
        url = centre.publish(zipped, "20881234567890120156_20260305.csv.zip", biz_date=DAY)
        env = {**os.environ, "GASHUB_DATABASE_URL": city.url}
        env.pop("GASHUB_CONFIG", None)
        args = [sys.executable, "-m", "hub.cli", "reconcile", "import", "--channel", "alipay", "--date", "2026-03-05"]

        def gashub(*extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*args, *extra], capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
                                  check=False)

        done = await asyncio.to_thread(gashub, "--url", url)
        assert done.returncode == 0, done.stderr
        assert "alipay statement of 2026-03-05: 1 lines, 1 matched" in done.stdout
        assert "  missing in statement: 1" in done.stdout
        (run,) = await city.rows(recon_run)
        assert (run.channel, run.file_name) == ("alipay", "20881234567890120156_20260305.csv.zip")
        assert centre.downloads == 1

        now[0] = 31.0  # the link has expired
        expired = await asyncio.to_thread(gashub, "--url", url)
        assert expired.returncode == 1
        assert "the download answered 404" in expired.stderr
        neither = await asyncio.to_thread(gashub)
        assert neither.returncode == 2
        assert "FILE or --url" in neither.stderr
        centre.down = True
        with pytest.raises(DownloadFailed, match="answered 503"):
            await download(centre.publish(zipped, "x.zip", biz_date=DAY))
        centre.down = False
        with pytest.raises(DownloadFailed, match="larger than 0 MiB"):
            await download(centre.publish(zipped, "x.zip", biz_date=DAY), max_bytes=100)
        with pytest.raises(DownloadFailed, match="not an http"):
            await download("file:///etc/passwd")
    finally:
        await centre.aclose()
    assert await city.count(recon_run) == 1
