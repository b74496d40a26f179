"""The meter fleet in the demo and in ``gashub simulate fleet``: its connectors and routes, its meters
taken from the seeded city, its faults on a timetable, and the story of a leak told as it happens.

The fleet (:mod:`connectors.meters.fleet`) plays the meters; the city (:mod:`connectors.demo.city`,
loaded by :mod:`connectors.demo.seed`) puts the same meters in the core, so every report is a known
meter of an account with a holder. This module only wires the two together.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from rich.console import Console
from sqlalchemy import select

from connectors.demo.city import Household
from connectors.meters.cjt188 import ValveAction, ValveControl
from connectors.meters.fleet import Fault, MeterFleet
from core.db.tables import alarm
from core.db.tables_billing import meter as meter_table
from core.db.tables_workorders import work_order
from hub.app import Hub
from hub.store.tables import message

FLEET_ROUTES = """# The simulated meter fleet: valve commands to the path each meter reports on.

[[route]]
name = "fleet-valves-dtu"
description = "Valve commands for the fleet's meters behind DTUs: the close frame goes on the meter's bus."
from = "valve.command"
{dtu_where}to = "meters:valve"
reply = "valve.state"
lane = "safety"
retry = {{ max_attempts = 8, backoff = ["200ms", "1s", "5s"] }}
"""
CTWING_ROUTE = """
[[route]]
name = "fleet-valves-ctwing"
description = "Valve commands for the fleet's NB-IoT meters, through CTWing's command API."
from = "valve.command"
where = 'data.meter_id >= "{first}" and data.meter_id < "{split}"'
to = "ctwing:valve"
reply = "valve.state"
lane = "safety"
retry = {{ max_attempts = 8, backoff = ["500ms", "2s", "10s"] }}
"""


def fleet_routes(fleet: MeterFleet) -> str:
    """Routes taking ``valve.command`` for the fleet's meters to its DTU or CTWing connector (by meter
    id: the fleet's CTWing meters come first). Other meters' commands go where ``routes/`` sends them."""
    ids = sorted(fleet.meters)
    first, last = ids[0], ids[-1]
    split = fleet.valve_route_split()
    out = ""
    if fleet.layout.buses:
        lo = split or first
        out += FLEET_ROUTES.format(dtu_where=f"where = 'data.meter_id >= \"{lo}\" and data.meter_id <= \"{last}\"'\n")
    if fleet.layout.devices:
        out += CTWING_ROUTE.format(first=first, split=split or f"{last}~")
    return out


def fleet_of(city: Sequence[Household], *, first: int, dtus: int, ctwing: int, seed: int,
             report_every_s: float) -> MeterFleet:
    """The fleet of the city's households ``first`` on: their registers today, their average daily use."""
    homes = city[first:]
    registers = {h.meter_id: h.register_now for h in homes}
    daily = {h.meter_id: float((h.readings[-1][1] - h.readings[0][1]) / Decimal(365)) for h in homes}
    return MeterFleet.plan(len(homes), dtus=dtus, ctwing=min(ctwing, len(homes)), seed=seed, first=first,
                           registers=registers, daily_m3=daily, report_every_s=report_every_s)


@dataclass
class LeakStory:
    """What became of a leak injected at one meter, read from the meter's wire and the database."""

    meter_id: str
    injected: float
    close_frame_after_s: float | None = None
    alarm_id: str | None = None
    correlation_id: str | None = None
    valve_state: str | None = None
    sms_requested: bool = False
    work_order: str | None = None
    told: set[str] = field(default_factory=set)

    @property
    def complete(self) -> bool:
        return (self.close_frame_after_s is not None and self.valve_state == "closed" and self.sms_requested
                and self.work_order is not None)


async def follow_leak(hub: Hub, fleet: MeterFleet, story: LeakStory, console: Console, *,
                      within_s: float = 20.0) -> LeakStory:
    """Watch the leak's flow and print each step once: alarm, close frame on the meter's wire, valve
    closed in the core, SMS requested, work order opened. Returns when all are there or ``within_s``."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and not story.complete:
        await _look(hub, fleet, story)
        _tell(story, console)
        await asyncio.sleep(0.1)
    return story


async def _look(hub: Hub, fleet: MeterFleet, story: LeakStory) -> None:
    if story.close_frame_after_s is None:
        for at, request in fleet.wire(story.meter_id):
            if isinstance(request, ValveControl) and request.action is ValveAction.CLOSE:
                story.close_frame_after_s = at - story.injected
                break
    async with hub.db.read() as conn:
        if story.alarm_id is None:
            row = (await conn.execute(select(alarm.c.id, alarm.c.correlation_id).where(
                alarm.c.meter_id == story.meter_id, alarm.c.kind == "leak").order_by(alarm.c.detected_at.desc())
                .limit(1))).first()
            if row is not None:
                story.alarm_id, story.correlation_id = row.id, row.correlation_id
        story.valve_state = await conn.scalar(select(meter_table.c.valve_state)
                                              .where(meter_table.c.id == story.meter_id))
        if story.correlation_id is not None:
            types = set((await conn.execute(select(message.c.type).where(
                message.c.correlation_id == story.correlation_id))).scalars())
            story.sms_requested = "notification.requested" in types
        if story.alarm_id is not None and story.work_order is None:
            story.work_order = await conn.scalar(select(work_order.c.id).where(work_order.c.alarm_id == story.alarm_id))


def _tell(story: LeakStory, console: Console) -> None:
    steps = [
        ("alarm", story.alarm_id is not None, f"  [red]alarm[/] {story.alarm_id} (kind leak) in flow "
                                              f"{story.correlation_id}"),
        ("frame", story.close_frame_after_s is not None,
         f"  [bold]valve-close frame on the meter's wire[/] {(story.close_frame_after_s or 0) * 1000:.0f} ms "
         "after its leak report"),
        ("closed", story.valve_state == "closed", "  [green]valve closed[/]: the meter's answer → valve.state → core"),
        ("sms", story.sms_requested, "  [green]SMS requested[/] for the holder (notification.requested, safety)"),
        ("order", story.work_order is not None, f"  [green]work order opened[/] {story.work_order} "
                                                "(emergency repair, /api/v1/work-orders)"),
    ]
    for name, done, text in steps:
        if done and name not in story.told:
            story.told.add(name)
            console.print(text)


async def inject_later(fleet: MeterFleet, fault: Fault, meter: str, after_s: float) -> float:
    """Wait ``after_s`` seconds, then inject; returns the injection's ``time.monotonic()``."""
    await asyncio.sleep(after_s)
    return await fleet.inject(meter, fault)
