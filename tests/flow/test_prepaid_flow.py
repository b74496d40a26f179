"""A prepaid meter through the whole hub, on both stacks: the vendor's readings use up the balance →
the holder gets the low-balance SMS, then the close SMS, and the valve platform closes the valve →
a payment tops the balance up and the valve stays closed → the field engineer confirms the on-site
check through the API and the valve platform opens it; the close and the reopen in one trace."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
from sqlalchemy import func, insert, select
from ulid import ULID

from connectors.vendor_push.simulator import VendorCloudSimulator
from core.accounts import CustomerIn, PremisesIn, id_check_digit, open_account
from core.api import Role, create_user
from core.db.tables import reading
from core.db.tables_billing import meter
from core.db.tables_payments import invoice, prepaid_entry
from core.privacy import generate_key
from hub.app import Hub
from hub.envelope import Envelope
from tests.flow.conftest import OPS_TOKEN, VENDOR_TOKEN, Stack, eventually
from tests.flow.tax_stand_in import PAYMENT_ROUTES, registry
from tests.flow.test_reading_flows import push_doc, scalar

AUTH = {"Authorization": f"Bearer {OPS_TOKEN}"}
PHONE = "13912345678"
HOLDER = CustomerIn(name="钱七", phone=PHONE, id_number="33060219900101123" + id_check_digit("33060219900101123"))
HOME = PremisesIn(address="绍兴市上虞区市民大道1号", district="shangyu", lat=30.03, lon=120.87)
PASSWORD = "correct horse battery staple"
DAILY = Decimal("1.500")  # 3.60 yuan a day at the tariff file's first tier (2.40)


async def prepaid_account(hub: Hub, meter_id: str, points: list[tuple[datetime, Decimal]], balance: str) -> str:
    assert hub.privacy is not None
    async with hub.db.begin() as conn:
        view = await open_account(conn, hub.privacy, f"req-{ULID()}", HOLDER, HOME, "residential", "prepaid",
                                  opened_at=points[0][0] - timedelta(days=1))
        await conn.execute(insert(meter).values(id=meter_id, account_id=view.account_id, model="G2.5",
                                                installed_at=date(2025, 1, 1), valve_state="open",
                                                prepaid_balance=Decimal(balance)))
        await conn.execute(insert(reading), [
            {"id": str(ULID()), "meter_id": meter_id, "read_at": at, "volume_m3": v, "source": "vendor",
             "quality": "valid", "message_id": f"seed-{ULID()}"} for at, v in points])
    return view.account_id


async def test_readings_close_the_valve_a_top_up_does_not_and_the_engineer_reopens_it(stack: Stack) -> None:
    (stack.routes_dir / "payments.toml").write_text(PAYMENT_ROUTES)
    connectors = {**stack.settings().connectors, "tax": {"kind": "tax_stand_in"}}
    hub = await stack.start_hub(registry=registry(), connectors=connectors, core={
        "keys": {"k1": generate_key()}, "prepaid": {"enabled": True, "low_balance_yuan": "20.00"}})
    base = stack.base_url(hub)
    sim = VendorCloudSimulator(f"{base}/partners/vendor-demo/push", VENDOR_TOKEN, meters=10)
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        m = sim.meter_id(4)
        points = [(now - (41 - n) * timedelta(days=1), Decimal(600) + DAILY * n) for n in range(40)]
        account_id = await prepaid_account(hub, m, points, "5.00")
        last = points[-1][1]

        # Day one: 5.00 → 1.40, below 20.00: the low-balance SMS. Day two: → -2.20: closed.
        status, _ = await sim.push(push_doc(sim, 4, now - timedelta(days=1), last + DAILY))
        assert status == 200

        async def told(n: int) -> bool:
            return len(stack.sms.sent) == n

        await eventually(lambda: told(1), what="the low-balance SMS")
        status, second = await sim.push(push_doc(sim, 4, now - timedelta(minutes=1), last + 2 * DAILY))
        assert status == 200

        async def closed() -> bool:
            state = await scalar(hub, select(meter.c.valve_state).where(meter.c.id == m))
            return state == "closed" and stack.valves.valves.get(m) == "closed"

        await eventually(closed, what="the valve closed by the platform and recorded")
        await eventually(lambda: told(2), what="the close SMS")
        low, zero = stack.sms.sent
        assert [(s["phone"], s["template"]) for s in (low, zero)] == [(PHONE, "SMS_LOW_BALANCE")] * 2
        assert (low["params"]["stage"], low["params"]["balance"]) == ("low", "1.40")
        assert (zero["params"]["stage"], zero["params"]["balance"]) == ("zero", "-2.20")
        (close,) = stack.valves.commands
        assert (close["action"], close["command_id"]) == ("close", f"prepaid-close-{second['message_id']}")
        assert await scalar(hub, select(func.count()).select_from(prepaid_entry).where(
            prepaid_entry.c.meter_id == m, prepaid_entry.c.kind == "deduction")) == 2

        # A top-up: the balance is back above zero, the valve stays closed.
        pay = Envelope(type="payment.received", source="test", subject=account_id, data={
            "channel": "alipay", "transaction_id": f"2026{ULID()}", "out_trade_no": "GAS-PRE-1",
            "account_id": account_id, "amount": "50.00", "paid_at": now.isoformat()})
        await hub.publisher.publish([pay])

        async def topped_up() -> bool:
            return await scalar(hub, select(meter.c.prepaid_balance).where(meter.c.id == m)) == Decimal("47.80")

        await eventually(topped_up, what="the top-up credited")
        await eventually(lambda: _one(hub, invoice), what="the top-up's invoice")
        assert [c["action"] for c in stack.valves.commands] == ["close"]
        assert await scalar(hub, select(meter.c.valve_state).where(meter.c.id == m)) == "closed"

        # The field engineer checks the site and reopens through the API.
        await create_user(hub.db.engine, "engineer0451", PASSWORD, Role.FIELD_ENGINEER)
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/api/v1/auth/token",
                                 json={"username": "engineer0451", "password": PASSWORD}) as resp:
                token = (await resp.json())["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            async with http.get(f"{base}/api/v1/meters/{m}/valve", headers=headers) as resp:
                view = await resp.json()
            assert (view["reopen_allowed"], [c["reason"] for c in view["closures"]]) == (True, ["prepaid"])
            body = {"client_request_id": "visit-2026-0451", "confirmation": {
                "on_site_check_done": True, "checked_by": "engineer 0451", "checked_at": datetime.now(UTC).isoformat(),
                "notes": "meter and indoor pipes checked"}}
            async with http.post(f"{base}/api/v1/meters/{m}/valve/reopen", json=body, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                done = await resp.json()

        async def reopened() -> bool:
            state = await scalar(hub, select(meter.c.valve_state).where(meter.c.id == m))
            return state == "open" and stack.valves.valves.get(m) == "open"

        await eventually(reopened, what="the valve reopened by the platform and recorded")
        assert [(c["action"], c["command_id"]) for c in stack.valves.commands] == [
            ("close", close["command_id"]), ("open", done["command_id"])]

        # One trace: the reading that emptied the balance, the close, the SMS, and the reopen.
        flow = {"vendor-readings", "valve-commands", "valve-states", "sms-send"}

        async def traced() -> bool:
            found = await _trace(base, second["message_id"])
            types = [x["type"] for x in found["messages"]]
            return flow <= _delivered(found) and types.count("valve.state") == 2

        await eventually(traced, what="the close and the reopen in the reading's trace")
        found = await _trace(base, second["message_id"])
        commands = [x for x in found["messages"] if x["type"] == "valve.command"]
        assert [(c["body"]["data"]["action"], c["body"]["data"]["on_site_confirmed"]) for c in commands] == [
            ("close", False), ("open", True)]
        assert commands[0]["causation_id"] == second["message_id"]
        assert commands[1]["causation_id"] == commands[0]["id"]
        assert {x["correlation_id"] for x in found["messages"]} == {second["message_id"]}
        assert PHONE not in str(found)
    finally:
        await sim.aclose()


async def _one(hub: Hub, table: Any) -> bool:
    return bool(await scalar(hub, select(func.count()).select_from(table)) == 1)


async def _trace(base: str, message_id: str) -> dict[str, Any]:
    async with aiohttp.ClientSession(headers=AUTH) as http:
        async with http.get(f"{base}/ops/messages/{message_id}/trace") as resp:
            assert resp.status == 200
            return dict(await resp.json())


def _delivered(found: dict[str, Any]) -> set[str]:
    return {h["route"] for h in found["hops"] if h["outcome"] == "delivered"}
