"""The meter fleet against the whole hub, on both stacks: what a faulty fleet sends is refused at the
door with a clear reason and an audit record, and nothing of it is stored or published: a garbled frame
from a DTU meter, a meter the hub does not know on a DTU bus, a garbled CTWing report; a silent meter
sends nothing. A sound report from the same fleet passes, so the refusals are the faults' doing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from connectors.meters import DtuConnector
from connectors.meters.fleet import Fault, MeterFleet, meter_id
from core.db.tables import reading
from core.privacy import generate_key
from hub.app import Hub
from hub.store.tables import hop, message
from tests.flow.conftest import VENDOR_TOKEN, Stack, eventually

CTWING_BAD, CTWING_OK, DTU_BAD, DTU_UNKNOWN, DTU_SILENT = (meter_id(n) for n in range(900, 905))


async def start(stack: Stack) -> tuple[Hub, MeterFleet]:
    fleet = MeterFleet.plan(5, dtus=1, ctwing=2, seed=11, first=900)
    await fleet.start_platform("")
    dtu = fleet.dtu_settings(port=0, request_timeout_s=1.0)
    dtu["meters"] = [m for m in dtu["meters"] if m["meter_id"] != DTU_UNKNOWN]  # on the bus, not in the hub
    connectors: dict[str, Any] = {
        "vendor": {"kind": "vendor_push", "token": VENDOR_TOKEN},
        "sms": {"kind": "http_sms", "base_url": stack.sms.url, "in_call_attempts": 1, "timeout_s": 2},
        "valves": {"kind": "valve_http", "base_url": stack.valves.url},
        "meters": dtu,
        "ctwing": fleet.ctwing_settings(fleet.ctwing_url),
    }
    try:
        hub = await stack.start_hub(core={"keys": {"k1": generate_key()}}, connectors=connectors)
        connector = hub.connectors["meters"]
        assert isinstance(connector, DtuConnector)
        assert fleet.ctwing is not None
        fleet.ctwing.push_url = f"{stack.base_url(hub)}/partners/ctwing/push"
        await fleet.start("127.0.0.1", connector.port, fleet.ctwing.push_url, report=False)
    except BaseException:
        await fleet.stop()
        raise
    await eventually(lambda: _true(bool(connector.sessions)), what="the fleet's DTU registered")
    return hub, fleet


async def scalar(hub: Hub, stmt: Any) -> Any:
    async with hub.db.read() as conn:
        return await conn.scalar(stmt)


async def rejections(hub: Hub) -> list[str]:
    async with hub.db.read() as conn:
        return [str(r) for r in (await conn.execute(select(hop.c.error).where(hop.c.outcome == "rejected")
                                                    .order_by(hop.c.seq))).scalars()]


async def test_a_faulty_fleet_is_refused_with_reasons_and_audited_and_nothing_is_stored(stack: Stack) -> None:
    hub, fleet = await start(stack)
    try:
        before = await scalar(hub, select(func.count()).select_from(message))
        await fleet.inject(DTU_BAD, Fault.GARBLE)
        assert await fleet.report(DTU_BAD)
        assert await fleet.report(DTU_UNKNOWN)
        await fleet.inject(CTWING_BAD, Fault.GARBLE)
        assert await fleet.report(CTWING_BAD)
        await fleet.inject(DTU_SILENT, Fault.SILENCE)
        assert not await fleet.report(DTU_SILENT)
        assert fleet.ctwing is not None
        assert fleet.ctwing.pushed[-1][1] == 400  # CTWing is told its push was refused

        async def three() -> bool:
            return len(await rejections(hub)) >= 3

        await eventually(three, what="three refusals audited")
        reasons = await rejections(hub)
        dtu = next(iter(fleet.layout.buses))
        assert any(r.startswith(f"garbled bytes from DTU {dtu}") for r in reasons), reasons
        assert any(r.startswith(f"unknown meter address {DTU_UNKNOWN} on DTU {dtu}") for r in reasons), reasons
        assert any("garbled" in r.lower() or "checksum" in r.lower() for r in reasons
                   if "DTU" not in r), reasons
        assert await scalar(hub, select(func.count()).select_from(message)) == before
        assert await scalar(hub, select(func.count()).select_from(reading)) == 0

        # The same meters, sound again, are heard: the refusals were the faults'.
        assert await fleet.report(DTU_BAD)
        assert await fleet.report(CTWING_OK)
        ok = (DTU_BAD, CTWING_OK)

        async def heard() -> bool:
            n = await scalar(hub, select(func.count()).select_from(message).where(
                message.c.type == "meter.reading", message.c.subject.in_(ok)))
            return int(n) == 2

        await eventually(heard, what="the sound reports received")
        assert len(await rejections(hub)) == 3
    finally:
        await fleet.stop()


async def _true(value: bool) -> bool:
    return value
