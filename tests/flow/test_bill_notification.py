"""A billing run's bills reach their holders by SMS, through the hub, on both transports."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import pytest
from sqlalchemy import insert, select

from core.accounts import open_account
from core.billing_run import run_billing
from core.catalogue.messages import BillIssued
from core.config import CoreConfig
from core.db.tables import outbox, reading
from core.db.tables_billing import bill, meter
from core.handlers.bills import BillNotifier
from core.messages import Incoming
from core.payments import KeysMissing
from core.privacy import generate_key
from hub.app import Hub
from hub.envelope import Envelope
from hub.errors import ConfigError
from hub.store.tables import message
from tests.flow.conftest import OPS_TOKEN, Stack, eventually
from tests.flow.test_accounts_db import ALICE, HOME
from tests.flow.test_billing_run import BOOK

ROUTE = """
[[route]]
name = "bill-notify"
from = "bill.issued"
to = "core:notify_bill"
retry = { max_attempts = 2, backoff = ["100ms"] }
"""
KEYS = {"keys": {"k1": generate_key()}, "current_key": "k1"}


async def _city(hub: Any) -> str:
    """Alice's account with a meter read at the start and the end of January 2026 (280 m³)."""
    assert hub.privacy is not None
    async with hub.db.begin() as conn:
        view = await open_account(conn, hub.privacy, "req-bill-1", ALICE, HOME, "residential", "postpaid",
                                  opened_at=datetime(2025, 6, 1, tzinfo=UTC))
        await conn.execute(insert(meter).values(
            id="MB1", account_id=view.account_id, model="G2.5", installed_at=date(2025, 6, 1),
            replace_by=date(2035, 6, 1), valve_state="open", prepaid_balance=Decimal("0.00")))
        await conn.execute(insert(reading), [
            {"id": f"RB{n}", "meter_id": "MB1", "read_at": at, "volume_m3": Decimal(v), "source": "manual",
             "quality": "", "message_id": f"rb-{n}"}
            for n, (at, v) in enumerate([(datetime(2025, 12, 31, 16, tzinfo=UTC), "1000.000"),
                                         (datetime(2026, 1, 31, 16, tzinfo=UTC), "1280.000")])
        ])
    return view.account_id


async def _bill(hub: Any) -> None:
    async with hub.db.begin() as conn:
        result = await run_billing(conn, book=BOOK, period_start=date(2026, 1, 1), period_end=date(2026, 2, 1),
                                   now=datetime(2026, 2, 2, 1, tzinfo=UTC))
    assert result.bills_issued == 1


async def test_a_bill_reaches_its_holder_by_sms_under_one_correlation_id(stack: Stack) -> None:
    (stack.routes_dir / "billing.toml").write_text(ROUTE)
    hub = await stack.start_hub(core=KEYS)
    account_id = await _city(hub)
    await _bill(hub)

    async def sent() -> bool:
        return len(stack.sms.sent) == 1
    await eventually(sent, what="the bill's SMS")
    sms = stack.sms.sent[0]
    async with hub.db.read() as conn:
        bill_id, total = (await conn.execute(select(bill.c.id, bill.c.total))).one()
    assert total == Decimal("840.00")  # 280 m³ at the first tier's 3.00
    assert sms["phone"] == "13812345678"
    assert sms["params"] == {"account_number": sms["params"]["account_number"], "period": "2026-01-01..2026-02-01",
                             "volume_m3": "280.000", "amount": "840.00", "bill_id": bill_id}
    assert sms["params"]["account_number"].startswith("SX")

    # bill.issued → notification.requested → notification.delivered, one flow in the ops trace.
    base = stack.base_url(hub)
    headers = {"Authorization": f"Bearer {OPS_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{base}/ops/messages", params={"type": "bill.issued"}) as resp:
            found = (await resp.json())["items"]
        assert [m["subject"] for m in found] == [account_id]

        async def flow() -> list[tuple[str, str]]:
            async with http.get(f"{base}/ops/messages/{found[0]['id']}/trace") as resp:
                trace = await resp.json()
            return sorted((h["route"], h["outcome"]) for h in trace["hops"])

        async def complete() -> bool:
            return ("sms-delivered", "delivered") in await flow()
        await eventually(complete, what="the delivery report in the trace")
        routes = await flow()
        assert ("bill-notify", "delivered") in routes
        assert ("sms-send", "delivered") in routes
        async with http.get(f"{base}/ops/messages", params={"type": "notification.requested"}) as resp:
            listed = (await resp.json())["items"]
        assert "13812345678" not in str(listed)  # ops output masks the phone

    # At rest: the stored notification is sealed, the published outbox event keeps no phone.
    async with hub.db.read() as conn:
        stored = (await conn.execute(select(message.c.body).where(message.c.type == "notification.requested"))
                  ).scalars().all()
        events = (await conn.execute(select(outbox.c.data, outbox.c.published_us)
                                     .where(outbox.c.type == "notification.requested"))).all()
    assert len(stored) == 1
    assert stored[0].startswith(b"gashub:sealed:1:")
    assert b"13812345678" not in stored[0]
    assert hub.db.sealer.open("hub_message", listed[0]["id"], stored[0]).count(b"13812345678") == 1
    assert [(orjson.loads(data)["phone"], published is not None) for data, published in events] == [
        ("[redacted]", True)]


async def test_without_a_key_the_hub_refuses_the_route_and_the_handler_refuses_the_bill(stack: Stack) -> None:
    (stack.routes_dir / "billing.toml").write_text(ROUTE)
    with pytest.raises(ConfigError, match=r"bill-notify.*GASHUB_CORE__KEYS__"):
        Hub.build(stack.settings(core={}))
    keyed = await stack.start_hub(core=KEYS)
    await _city(keyed)
    await _bill(keyed)
    async with keyed.db.read() as conn:
        bill_id = (await conn.execute(select(bill.c.id))).scalar_one()
        issued = BillIssued(bill_id=bill_id, account_id="A", meter_id="MB1", period_start=date(2026, 1, 1),
                            period_end=date(2026, 2, 1), category="residential", volume_m3=Decimal("1.000"),
                            total=Decimal("2.40"), net_total=Decimal("2.20"), tax_total=Decimal("0.20"),
                            issued_at=datetime(2026, 2, 2, tzinfo=UTC))
        with pytest.raises(KeysMissing, match=r"GASHUB_CORE__KEYS__.*replay"):
            await BillNotifier(CoreConfig()).notify_bill(conn, [Incoming("m", "bill.issued", None, "m", issued)])


async def test_a_reading_from_the_hub_closes_a_bill_in_its_own_flow(stack: Stack) -> None:
    """The reading that closes the period comes through the hub; the bill, its SMS and the delivery
    report all join the reading's correlation id, so one ops trace shows reading → bill → SMS."""
    (stack.routes_dir / "billing.toml").write_text(ROUTE)
    hub = await stack.start_hub(core=KEYS)
    assert hub.privacy is not None
    async with hub.db.begin() as conn:
        view = await open_account(conn, hub.privacy, "req-bill-2", ALICE, HOME, "residential", "postpaid",
                                  opened_at=datetime(2025, 6, 1, tzinfo=UTC))
        await conn.execute(insert(meter).values(
            id="MB2", account_id=view.account_id, model="G2.5", installed_at=date(2025, 6, 1),
            replace_by=date(2035, 6, 1), valve_state="open", prepaid_balance=Decimal("0.00")))
        await conn.execute(insert(reading).values(  # the opening register, read last month
            id="RB-open", meter_id="MB2", read_at=datetime(2025, 12, 31, 16, tzinfo=UTC),
            volume_m3=Decimal("1000.000"), source="manual", quality="valid", message_id="rb-open"))
    closing = Envelope(type="meter.reading", source="test", subject="MB2", data={
        "meter_id": "MB2", "read_at": "2026-01-31T23:30:00+08:00", "volume_m3": "1120.000", "source": "vendor"})
    await hub.publisher.publish([closing])

    async def stored() -> bool:
        async with hub.db.read() as conn:
            return (await conn.execute(select(reading.c.correlation_id).where(reading.c.message_id == closing.id))
                    ).scalar() == closing.correlation_id
    await eventually(stored, what="the closing reading, with its flow")
    await _bill(hub)

    base = stack.base_url(hub)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {OPS_TOKEN}"}) as http:
        async def flow() -> tuple[list[str], list[tuple[str, str]]]:
            async with http.get(f"{base}/ops/messages/{closing.id}/trace") as resp:
                trace = await resp.json()
            return [m["type"] for m in trace["messages"]], [(h["route"], h["outcome"]) for h in trace["hops"]]

        async def complete() -> bool:
            return ("sms-delivered", "delivered") in (await flow())[1]
        await eventually(complete, what="reading → bill → SMS → delivery in one trace")
        types, hops = await flow()
    assert types[:2] == ["meter.reading", "bill.issued"]
    assert {"notification.requested", "notification.delivered"} <= set(types)
    assert [h for h in hops if h[1] == "delivered"][:2] == [("readings", "delivered"), ("bill-notify", "delivered")]
    assert [s["params"]["volume_m3"] for s in stack.sms.sent] == ["120.000"]
