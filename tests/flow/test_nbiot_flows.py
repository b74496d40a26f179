"""NB-IoT meters through their platforms and the whole hub, on both stacks: the CTWing simulator
pushes a pass-through ``dataReport`` to the hub's endpoint and the core stores the reading; its resend
is dropped, a replay and an unknown device are audited refusals that store nothing; a
``valve.command`` goes out through the simulated command API and the meter's ``commandResponse``
comes back as the ``valve.state`` the core records; a silent command API gets the same body until the
route's attempts are spent, then the command is dead-lettered; OneNET's URL check is answered and a
forged OneNET push is refused and audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from connectors.meters.cjt188 import load_meter_profiles
from connectors.meters.simulator import SimulatedMeter
from connectors.nbiot import CtwingConnector
from connectors.nbiot.simulator import CtwingSimulator, NbDevice, OneNetSimulator
from core.catalogue import Lane
from core.catalogue.messages import ValveCommand
from core.db.tables import reading, valve_event
from core.privacy import generate_key
from hub.app import Hub
from hub.envelope import Envelope
from hub.store.tables import dead_letter, hop, message
from tests.flow.conftest import ROUTES, VENDOR_TOKEN, Stack, eventually
from tests.flow.test_reading_flows import metered_account, scalar

METER = "NB-M1"
ONENET_TOKEN = "onenet-flow-token"


def nb_devices() -> list[NbDevice]:
    profile = load_meter_profiles().get("cjt188-2018")
    return [NbDevice("dev-1", "861234567890001",
                     SimulatedMeter("00000000000001", profile, volume_m3=Decimal("100.25"))),
            NbDevice("dev-2", "861234567890002", SimulatedMeter("00000000000002", profile, volume_m3=Decimal("7")))]


async def start(stack: Stack, **command: Any) -> tuple[Hub, CtwingSimulator, OneNetSimulator]:
    # The platform's downlink takes the valve commands (instead of the HTTP valve platform).
    (stack.routes_dir / "test.toml").write_text(ROUTES.replace('to = "valves:valve"', 'to = "ctwing:valve"'))
    devs = nb_devices()
    sim = CtwingSimulator("", devs, answer_delay_s=0.05)
    await sim.start()
    bindings = [{"meter_id": m, "device_id": d.device_id, "imei": d.imei, "address": d.meter.address,
                 "profile": "cjt188-2018"} for m, d in zip((METER, "NB-M2"), devs, strict=True)]
    connectors: dict[str, Any] = {
        "vendor": {"kind": "vendor_push", "token": VENDOR_TOKEN},
        "sms": {"kind": "http_sms", "base_url": stack.sms.url, "in_call_attempts": 1, "timeout_s": 2},
        "valves": {"kind": "valve_http", "base_url": stack.valves.url},
        "ctwing": {"kind": "ctwing", "devices": bindings, "base_url": sim.url, "app_key": sim.app_key,
                   "app_secret": sim.app_secret, "master_key": sim.master_key, "product_id": sim.product_id,
                   "command": {"timeout_s": 1.0, "attempts": 2, "answer_within_s": 5, "poll_every_s": 1,
                               **command}},
        "onenet": {"kind": "onenet", "token": ONENET_TOKEN, "devices": [{**b, "device_id": f"9{n}"}
                                                                        for n, b in enumerate(bindings)]},
    }
    try:
        hub = await stack.start_hub(core={"keys": {"k1": generate_key()}}, connectors=connectors)
    except BaseException:
        await sim.aclose()
        raise
    sim.push_url = f"{stack.base_url(hub)}/partners/ctwing/push"
    onenet = OneNetSimulator(f"{stack.base_url(hub)}/partners/onenet/push", ONENET_TOKEN,
                             [NbDevice("90", d.imei, d.meter) for d in devs[:1]])
    return hub, sim, onenet


async def rejections(hub: Hub) -> list[str]:
    async with hub.db.read() as conn:
        return list((await conn.execute(select(hop.c.error).where(hop.c.outcome == "rejected")
                                        .order_by(hop.c.seq))).scalars().all())


async def test_a_ctwing_report_is_stored_once_and_replays_and_strangers_store_nothing(stack: Stack) -> None:
    hub, sim, onenet = await start(stack)
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        await metered_account(hub, METER, [(now - timedelta(days=10 - n), Decimal(90 + n)) for n in range(10)])
        doc = sim.report("dev-1")
        status, answer = await sim.push(doc)
        assert (status, answer["msg"]) == (200, "ok")

        async def stored() -> bool:
            found = await scalar(hub, select(reading.c.volume_m3).where(reading.c.meter_id == METER,
                                                                         reading.c.read_at >= now))
            return found is not None and Decimal(found) == Decimal("100.25")

        await eventually(stored, what="the CTWing reading stored by the core")
        status, answer = await sim.push(doc)
        assert (status, answer["msg"]) == (200, "duplicate")
        messages_before = await scalar(hub, select(func.count()).select_from(message))

        status, replayed = await sim.push(sim.replay(doc, age_s=3 * 3600))
        assert status == 403
        stranger = {**sim.report("dev-2"), "deviceId": "dev-9", "IMEI": "869999999999999"}
        assert (await sim.push(stranger))[0] == 403
        reasons = await rejections(hub)
        assert len(reasons) == 2
        assert reasons[0].startswith(replayed["msg"] + " (source ctwing, ")
        assert replayed["msg"].startswith("replayed: timestamp ")
        assert reasons[1].startswith("unknown device 'dev-9'")
        assert await scalar(hub, select(func.count()).select_from(message)) == messages_before
        assert await scalar(hub, select(func.count()).select_from(reading).where(reading.c.meter_id == METER)) == 11
    finally:
        await onenet.aclose()
        await sim.aclose()


async def test_a_valve_command_goes_through_ctwing_and_comes_back_as_the_valve_state(stack: Stack) -> None:
    hub, sim, onenet = await start(stack)
    try:
        command = Envelope(type="valve.command", source="test", subject=METER, priority=Lane.SAFETY, data={
            "command_id": "close-nb-1", "meter_id": METER, "action": "close", "reason": "leak",
            "requested_by": "test"})
        await hub.publisher.publish([command])

        async def recorded() -> bool:
            state = await scalar(hub, select(valve_event.c.state).where(valve_event.c.command_id == "close-nb-1"))
            return bool(state == "closed")

        await eventually(recorded, what="the valve.state from the commandResponse recorded by the core")
        assert sim.devices["dev-1"].meter.valve_closed
        assert [c["signed"] for c in sim.calls] == [True]
        # Audited: the command's delivery hop, and the answer stored as a valve.state message.
        async with hub.db.read() as conn:
            outcomes = (await conn.execute(select(hop.c.outcome).where(
                hop.c.message_id == command.id, hop.c.route == "valve-commands"))).scalars().all()
            answers = await conn.scalar(select(func.count()).select_from(message).where(
                message.c.type == "valve.state", message.c.correlation_id == command.correlation_id))
        assert list(outcomes) == ["delivered"]
        assert answers == 1
    finally:
        await onenet.aclose()
        await sim.aclose()


async def test_a_silent_command_api_gets_one_body_until_the_attempts_are_spent(stack: Stack) -> None:
    hub, sim, onenet = await start(stack, timeout_s=0.2)
    try:
        sim.api_silent = True
        command = Envelope(type="valve.command", source="test", subject=METER, priority=Lane.SAFETY, data={
            "command_id": "close-nb-2", "meter_id": METER, "action": "close", "reason": "leak",
            "requested_by": "test"})
        await hub.publisher.publish([command])

        async def dead() -> bool:
            return bool(await scalar(hub, select(func.count()).select_from(dead_letter).where(
                dead_letter.c.message_id == command.id)))

        await eventually(dead, timeout=30, what="the command dead-lettered after the route's attempts")
        # The route allows 5 attempts; each calls the command API twice (settings) with the same body.
        assert len(sim.calls) == 10
        assert all(c["body"] == sim.calls[0]["body"] for c in sim.calls)
        connector = hub.connectors["ctwing"]
        assert isinstance(connector, CtwingConnector)
        assert sim.calls[0]["body"]["content"]["payload"] == connector.command_body(
            ValveCommand.model_validate(command.data))["content"]["payload"]
        assert await scalar(hub, select(func.count()).select_from(valve_event)) == 0
    finally:
        await onenet.aclose()
        await sim.aclose()


async def test_onenet_url_check_is_answered_and_a_forged_push_stores_nothing(stack: Stack) -> None:
    hub, sim, onenet = await start(stack)
    try:
        assert await onenet.verify_url("ping-123") == (200, "ping-123")
        messages_before = await scalar(hub, select(func.count()).select_from(message))
        onenet.forge = True
        status, answer = await onenet.push(onenet.volume_point(0))
        assert status == 401
        [reason] = await rejections(hub)
        assert reason.startswith(answer["msg"] + " (source onenet, ")
        assert await scalar(hub, select(func.count()).select_from(message)) == messages_before
        onenet.forge = False
        status, answer = await onenet.push(onenet.volume_point(0))
        assert (status, answer["readings"]) == (200, 1)

        async def stored() -> bool:
            return bool(await scalar(hub, select(func.count()).select_from(reading).where(
                reading.c.meter_id == METER, reading.c.source == "onenet")))

        await eventually(stored, what="the OneNET reading stored by the core")
    finally:
        await onenet.aclose()
        await sim.aclose()
