"""`gashub demo` from an empty directory: it seeds a city with encrypted holders, bills the last month,
takes payments (WeChat Pay's over the wire, signed and encrypted), issues their invoices over SOAP and
texts each invoice's number to its holder, tells one bill's whole story (bill, WeChat payment, invoice
number, SMS), shows the flows in /ops, keeps the audit chain intact and stops by itself; its meter fleet
reports through DTUs and CTWing, and a leak at one fleet meter closes that meter's valve, asks for the
SMS and opens the work order, in one flow."""

from __future__ import annotations

import asyncio
import re
import socket
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from connectors.demo.city import plan_city
from connectors.vendor_push.simulator import VendorCloudSimulator
from core.db.tables_accounts import DISTRICTS, LAT_RANGE, LON_RANGE
from hub.store.audit import verify_chain
from hub.store.db import Database
from tests.cli_env import clean_env

ACCOUNTS = 120
"""Accounts whose meters the vendor's cloud pushes."""
FLEET = 60
"""Accounts whose meters are the simulated fleet (20 on CTWing, 40 on 4 DTUs)."""
TOTAL = ACCOUNTS + FLEET
TOKEN = "demo-test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"the demo never showed {what} within {timeout} s")
        await asyncio.sleep(0.2)


async def test_demo_seeds_a_city_bills_it_and_turns_payments_into_invoices(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(GASHUB_OPS__TOKEN=TOKEN, COLUMNS="200")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "demo", "--duration", "28", "--port", str(port), "--accounts", str(ACCOUNTS),
        "--meters", str(FLEET), "--dtus", "4", "--ctwing", "20",
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            async def healthy() -> bool:
                try:
                    async with http.get(f"{base}/health") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            await _until(healthy, "/health", 10)
            async with http.get(f"{base}/ops") as resp:
                assert resp.status == 200
                assert "gashub operations" in await resp.text()
            headers = {"Authorization": f"Bearer {TOKEN}"}

            async def flowing() -> bool:
                async with http.get(f"{base}/ops/routes", headers=headers) as resp:
                    routes = {r["name"]: r["settled"].get("delivered", 0) for r in (await resp.json())["routes"]}
                return all(routes.get(name, 0) > 0 for name in (
                    "vendor-readings", "bill-notify", "sms-send", "payments", "invoices-tax", "invoices-issued"))

            await _until(flowing, "readings, bills, SMS, payments and invoices on their routes", 22)
            async with http.get(f"{base}/ops/messages", params={"type": "payment.received", "limit": "500"},
                                headers=headers) as resp:
                first = (await resp.json())["items"][-1]  # the oldest payment
            trace: dict[str, Any] = {}

            async def invoiced() -> bool:
                async with http.get(f"{base}/ops/messages/{first['id']}/trace", headers=headers) as resp:
                    trace.update(await resp.json())
                return {m["type"] for m in trace["messages"]} == {
                    "payment.received", "invoice.requested", "invoice.issued", "notification.requested",
                    "notification.delivered"}

            await _until(invoiced, "a payment's whole flow in its trace", 12)
        output, _ = await asyncio.wait_for(proc.communicate(), 45)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = output.decode()
    assert proc.returncode == 0, text
    hops = [(h["route"], h["outcome"]) for h in trace["hops"] if h["outcome"] == "delivered"]
    assert hops == [("payments", "delivered"), ("invoices-tax", "delivered"), ("invoices-issued", "delivered"),
                    ("sms-send", "delivered"), ("sms-delivered", "delivered")]

    city = plan_city(ACCOUNTS, today=date.today())  # the holders the demo invented (they do not depend on the day)
    personal = [v for home in city for v in (home.customer.name, home.customer.phone, home.customer.id_number)]
    personal += [home.premises.address for home in city]
    shown = text + orjson.dumps(trace).decode()
    leaked = [v for v in personal if v in shown]
    assert not leaked, f"personal data on the console or in the ops trace: {leaked[:3]}"

    assert "demo summary" in text
    assert "audit chain      intact" in text
    db_file = tmp_path / "var" / "demo.db"
    assert db_file.exists()
    assert sorted(p.name for p in (tmp_path / "var" / "demo-routes").glob("*.toml")) == [
        "billing.toml", "demo-fleet.toml", "meters.toml", "notifications.toml", "payments.toml"]
    assert "fleet            60 meters" in text
    story = re.search(r"leak story\s+meter (\d{14}): alarm (\S+) → close frame on its wire after (\d+) ms "
                      r"→ valve closed → SMS requested → work order (\S+) \(complete\)", " ".join(text.split()))
    assert story, text[-3000:]
    leaking, alarm_id, _, order_id = story.groups()

    with sqlite3.connect(db_file) as conn:
        _city_is_seeded_and_encrypted(conn, personal)
        _bills_payments_and_invoices(conn)
        _the_leak_closed_the_valve(conn, leaking, alarm_id, order_id)
        _one_bill_end_to_end(conn, text)
    db = Database(f"sqlite+aiosqlite:///{db_file}")
    try:
        async with db.read() as conn:
            verdict = await verify_chain(conn)
    finally:
        await db.aclose()
    assert verdict.ok, verdict.problem
    assert verdict.checked > 0


def _city_is_seeded_and_encrypted(conn: sqlite3.Connection, personal: list[str]) -> None:
    assert conn.execute("SELECT count(*) FROM core_customer").fetchone() == (TOTAL,)
    assert conn.execute("SELECT count(*) FROM core_account WHERE status = 'active'").fetchone() == (TOTAL,)
    kinds = dict(conn.execute("SELECT coalesce(subcategory, category), count(*) FROM core_account GROUP BY 1"))
    assert set(kinds) == {"residential", "commercial"}
    assert kinds["residential"] > kinds["commercial"] > 0
    places = conn.execute("SELECT district, lat, lon FROM core_premises").fetchall()
    assert len({d for d, _, _ in places}) >= 5
    assert all(d in DISTRICTS and LAT_RANGE[0] <= lat <= LAT_RANGE[1] and LON_RANGE[0] <= lon <= LON_RANGE[1]
               for d, lat, lon in places)
    meters = dict(conn.execute("SELECT id, account_id FROM core_meter"))
    # the ids the cloud pushes, then the fleet's
    assert sorted(meters) == [VendorCloudSimulator.meter_id(n) for n in range(TOTAL)]
    assert all(meters.values())
    tokens = conn.execute("SELECT name_enc, phone_enc, id_number_enc FROM core_customer").fetchall()
    assert all(t.startswith("v1:") for row in tokens for t in row)
    # No holder's name, phone, ID number or address in clear in any row of any table.
    raw = []
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
        raw += [str(v) for row in conn.execute(f'SELECT * FROM "{table}"') for v in row if isinstance(v, str | bytes)]
    everything = "\n".join(raw)
    leaked = [v for v in personal if v in everything]
    assert not leaked, f"personal data in clear in the database: {leaked[:3]}"
    live = conn.execute("SELECT count(*) FROM core_reading WHERE quality != 'unvalidated'").fetchone()[0]
    backfilled = conn.execute("SELECT count(*) FROM core_reading WHERE quality = 'unvalidated'").fetchone()[0]
    assert backfilled == TOTAL * 13
    assert live > 0


def _bills_payments_and_invoices(conn: sqlite3.Connection) -> None:
    bills = conn.execute("SELECT count(*), sum(total), min(period_start), max(period_end) FROM core_bill").fetchone()
    assert bills[0] == TOTAL  # every account had its opening and closing readings
    assert Decimal(str(bills[1])) > 0
    sms = dict(conn.execute("SELECT outcome, count(*) FROM hub_hop WHERE route = 'sms-send' GROUP BY outcome"))
    assert sms.get("retry", 0) > 0  # the gateway was down when the bills went out
    told = dict(conn.execute("SELECT substr(notification_id, 1, instr(notification_id, '-') - 1), count(*) "
                             "FROM core_notification_status GROUP BY 1"))
    assert told["bill"] == TOTAL  # then every holder got the SMS of their bill
    leaks = conn.execute("SELECT count(*) FROM core_alarm").fetchone()[0]
    assert told.get("alarm", 0) <= leaks  # and the holders of leaking meters theirs (the last one may be on its way)
    invoices = conn.execute("SELECT count(*) FROM core_invoice WHERE status = 'issued'").fetchone()[0]
    assert told["bill"] + told.get("alarm", 0) + told.get("invoice", 0) <= sms["delivered"] <= \
        TOTAL + leaks + invoices  # each SMS once: bills, alarms, invoices
    payments = conn.execute("SELECT id, amount FROM core_payment").fetchall()
    assert payments
    paid_in: dict[str, Decimal] = {pid: Decimal(0) for pid, _ in payments}
    for pid, amount in conn.execute("SELECT payment_id, amount FROM core_payment_allocation"):
        paid_in[pid] += Decimal(str(amount))
    for pid, amount in conn.execute("SELECT payment_id, amount FROM core_account_credit"):
        paid_in[pid] += Decimal(str(amount))
    # Each payment credited exactly once: its allocations and credit add up to its amount, no more.
    assert {pid: Decimal(str(amount)) for pid, amount in payments} == paid_in
    assert conn.execute("SELECT count(*) FROM core_payment_allocation").fetchone()[0] > 0
    notified = conn.execute("SELECT count(*) FROM hub_message WHERE type = 'payment.received'").fetchone()[0]
    assert notified >= len(payments)  # WeChat's second copies stop at the connector's inbox, Alipay's at the core
    channels = dict(conn.execute("SELECT channel, count(*) FROM core_payment GROUP BY channel"))
    wechat_in = conn.execute("SELECT count(*) FROM hub_hop WHERE route = 'in:wechatpay' AND outcome = 'received'"
                             ).fetchone()[0]
    assert channels["wechat"] == wechat_in > 0  # every WeChat payment came in through the connector, once
    requested = conn.execute("SELECT count(*) FROM hub_hop WHERE route = 'invoices-tax' AND outcome = 'delivered'"
                             ).fetchone()[0]
    issued = conn.execute("SELECT invoice_number FROM core_invoice WHERE status = 'issued'").fetchall()
    assert requested > 0
    assert issued
    assert all(re.fullmatch(r"\d{20}", n) for (n,) in issued)
    assert conn.execute("SELECT count(*) FROM hub_message WHERE type = 'invoice.issued'").fetchone()[0] == len(issued)



def _the_leak_closed_the_valve(conn: sqlite3.Connection, meter: str, alarm_id: str, order_id: str) -> None:
    """The fleet meter's leak: its alarm, the close command on the safety lane and the SMS request in
    the alarm's flow, the meter's valve closed in the core (from the meter's own answer) and the
    emergency order opened in the same flow."""
    kind, correlation = conn.execute("SELECT kind, correlation_id FROM core_alarm WHERE id = ? AND meter_id = ?",
                                     (alarm_id, meter)).fetchone()
    assert kind == "leak"
    types = {t for (t,) in conn.execute("SELECT type FROM hub_message WHERE correlation_id = ?", (correlation,))}
    assert {"meter.reading", "alarm.raised", "valve.command", "valve.state", "notification.requested"} <= types
    assert conn.execute("SELECT valve_state FROM core_meter WHERE id = ?", (meter,)).fetchone() == ("closed",)
    assert conn.execute("SELECT category, correlation_id FROM core_work_order WHERE id = ? AND alarm_id = ?",
                        (order_id, alarm_id)).fetchone() == ("emergency_repair", correlation)
    assert conn.execute("SELECT count(*) FROM hub_hop WHERE route = 'fleet-valves-dtu' AND outcome = 'delivered'"
                        ).fetchone()[0] >= 1


def _one_bill_end_to_end(conn: sqlite3.Connection, text: str) -> None:
    """The story the console tells names a real bill, WeChat payment, invoice and SMS, all in the database."""
    assert "one bill, end to end" in text, text[-3000:]
    flat = " ".join(text.split())
    story = re.search(r"bill (\w{26}) of account (SX\d+): .*? paid by WeChat Pay: order (\S+) .*? transaction (\d+), "
                      r".*? request (PAY-\w+) → IssueInvoice → invoice (\d{20}) .*? SMS sent to 1\d\d\*{4}\d{4}: "
                      r"template SMS_INVOICE with invoice (\d{20})", flat)
    assert story, flat[flat.find("one bill"):][:1500]
    bill_id, account_number, order, transaction, serial, number, sms_number = story.groups()
    assert number == sms_number
    (payment_id, account_id, out_trade_no) = conn.execute(
        "SELECT id, account_id, out_trade_no FROM core_payment WHERE channel = 'wechat' AND transaction_id = ?",
        (transaction,)).fetchone()
    assert out_trade_no == order
    assert conn.execute("SELECT a.account_number FROM core_bill b JOIN core_account a ON a.id = b.account_id "
                        "WHERE b.id = ?", (bill_id,)).fetchone() == (account_number,)
    assert conn.execute("SELECT account_id FROM core_bill WHERE id = ?", (bill_id,)).fetchone() == (account_id,)
    assert conn.execute("SELECT request_serial, invoice_number, status FROM core_invoice WHERE reference_id = ?",
                        (payment_id,)).fetchall() == [(serial, number, "issued")]
    assert conn.execute("SELECT status FROM core_notification_status WHERE notification_id = ?",
                        (f"invoice-{serial}",)).fetchone() == ("accepted",)
    told = dict(conn.execute("SELECT substr(notification_id, 1, instr(notification_id, '-') - 1), count(*) "
                             "FROM core_notification_status GROUP BY 1"))
    issued = conn.execute("SELECT count(*) FROM core_invoice WHERE status = 'issued'").fetchone()[0]
    assert 0 < told["invoice"] <= issued
