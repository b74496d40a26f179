"""A payment through the whole hub, on both stacks: ``payment.received`` → the core credits it once and
settles a bill → one ``invoice.requested`` on the bus → the tax stand-in answers → the core stores the
issued invoice; every message under the payment's correlation id in the ops trace."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
from sqlalchemy import func, insert, select

from core.accounts import CustomerIn, PremisesIn, id_check_digit, open_account
from core.db.tables_billing import bill, bill_line, meter
from core.db.tables_payments import allocation, credit, invoice, payment
from core.privacy import generate_key
from hub.envelope import Envelope
from hub.store.tables import message
from tests.flow.conftest import OPS_TOKEN, Stack, eventually
from tests.flow.payflow import count
from tests.flow.tax_stand_in import PAYMENT_ROUTES, TaxStandIn, registry

AUTH = {"Authorization": f"Bearer {OPS_TOKEN}"}
NAME = "王小明"


async def _city(hub: Any) -> str:
    """An account with a meter and one unpaid bill of 168.00 (20 m³ at 3.00, 30 m³ at 3.60)."""
    assert hub.privacy is not None
    async with hub.db.begin() as conn:
        view = await open_account(
            conn, hub.privacy, "flow-open",
            CustomerIn(name=NAME, phone="13912345678",
                       id_number="33062119850615004" + id_check_digit("33062119850615004")),
            PremisesIn(address="绍兴市柯桥区笛扬路1号", district="keqiao", lat=30.08, lon=120.49),
            "residential", "postpaid")
        await conn.execute(insert(meter).values(id="M-FLOW", account_id=view.account_id, model="G2.5",
                                                installed_at=date(2025, 6, 1), valve_state="open",
                                                prepaid_balance=Decimal("0")))
        await conn.execute(insert(bill).values(
            id="B-FLOW", account_id=view.account_id, meter_id="M-FLOW", period_start=date(2026, 2, 1),
            period_end=date(2026, 3, 1), reading_start_m3=Decimal("1280"), reading_end_m3=Decimal("1330"),
            volume_m3=Decimal("50"), total=Decimal("168.00"), net_total=Decimal("154.13"),
            tax_total=Decimal("13.87"), cumulative_before=Decimal("280"), cumulative_after=Decimal("330"),
            category="residential", status="issued", created_at=datetime(2026, 3, 2, tzinfo=UTC)))
        await conn.execute(insert(bill_line), [
            {"bill_id": "B-FLOW", "line_no": n, "tier": n, "tariff_version": "RES-2025", "cycle_start": None,
             "start": date(2026, 2, 1), "end": date(2026, 3, 1), "volume_m3": Decimal(v), "unit_price": Decimal(p),
             "amount": Decimal(a), "vat_rate": Decimal("0.0900")}
            for n, (v, p, a) in enumerate([("20", "3.00", "60.00"), ("30", "3.60", "108.00")], start=1)
        ])
    return view.account_id


async def test_a_payment_is_credited_once_allocated_and_invoiced_under_one_correlation_id(stack: Stack) -> None:
    (stack.routes_dir / "payments.toml").write_text(PAYMENT_ROUTES)
    connectors = {**stack.settings().connectors, "tax": {"kind": "tax_stand_in"}}
    hub = await stack.start_hub(registry=registry(), connectors=connectors, core={"keys": {"k1": generate_key()}})
    account_id = await _city(hub)
    data = {"channel": "wechat", "transaction_id": "4200001234202603051234567890", "out_trade_no": "GAS-0001",
            "account_id": account_id, "amount": "200.00", "paid_at": "2026-03-05T09:30:00+08:00",
            "payer_ref": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}
    first = Envelope(type="payment.received", source="test", subject=account_id, data=data)
    again = Envelope(type="payment.received", source="test", subject=account_id, data=data)  # the channel's retry
    await hub.publisher.publish([first])

    async def issued() -> bool:
        return await count(hub, invoice, invoice.c.status == "issued") == 1

    await eventually(issued, what="the invoice issued and recorded", timeout=20)
    await hub.publisher.publish([again])
    await eventually(lambda: _settled(hub, again.id), what="the retry processed")
    await asyncio.sleep(0.3)  # nothing more may come

    async with hub.db.read() as conn:
        (pay,) = (await conn.execute(select(payment))).all()
        shares = [(r.bill_id, r.kind, r.amount) for r in await conn.execute(select(allocation))]
        kept = await conn.scalar(select(func.sum(credit.c.amount)))
        (inv,) = (await conn.execute(select(invoice))).all()
    assert (pay.amount, pay.account_id, pay.message_id) == (Decimal("200.00"), account_id, first.id)
    assert shares == [("B-FLOW", "payment", Decimal("168.00"))]
    assert Decimal(kept).quantize(Decimal("0.01")) == Decimal("32.00")
    assert (inv.request_serial, inv.total, inv.total_tax, inv.status) == (
        f"PAY-{pay.id}", Decimal("200.00"), Decimal("16.51"), "issued")
    assert inv.invoice_number is not None
    assert len(inv.invoice_number) == 20

    tax = hub.connectors["tax"]
    assert isinstance(tax, TaxStandIn)
    assert [r["request_serial"] for r in tax.requests] == [f"PAY-{pay.id}"]  # one invoice request on the bus
    assert tax.requests[0]["user_name"] == NAME
    assert await count(hub, message, message.c.type == "invoice.requested") == 1

    trace: dict[str, Any] = {}

    async def told() -> bool:  # the flow ends with the invoice's SMS and the gateway's answer
        async with aiohttp.ClientSession(headers=AUTH) as http:
            async with http.get(f"{stack.base_url(hub)}/ops/messages/{first.id}/trace") as resp:
                assert resp.status == 200
                trace.update(await resp.json())
        return "sms-delivered" in {h["route"] for h in trace["hops"] if h["outcome"] == "delivered"}

    await eventually(told, what="the invoice's SMS delivered and recorded")
    assert trace["correlation_id"] == first.correlation_id
    assert sorted(m["type"] for m in trace["messages"]) == [
        "invoice.issued", "invoice.requested", "notification.delivered", "notification.requested", "payment.received"]
    assert {m["correlation_id"] for m in trace["messages"]} == {first.correlation_id}
    delivered = [h["route"] for h in trace["hops"] if h["outcome"] == "delivered"]
    assert delivered == ["payments", "tax-issue", "tax-issued", "sms-send", "sms-delivered"]
    assert stack.sms.sent[0]["params"]["invoice_number"] == inv.invoice_number  # the holder is told the number
    shown = orjson.dumps(trace).decode()
    assert NAME not in shown  # personal fields are masked in the ops trace
    assert "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o" not in shown


async def _settled(hub: Any, message_id: str) -> bool:
    async with hub.db.read() as conn:
        return await conn.scalar(select(func.count()).select_from(message).where(message.c.id == message_id)) == 1
