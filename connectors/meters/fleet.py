"""``MeterFleet``: many simulated gas meters behind simulated DTUs and a simulated CTWing platform.

The fleet plays the meter side of a city for the demo, ``gashub simulate fleet`` and benchmarks. Meters
``0 .. ctwing-1`` report through a :class:`~connectors.nbiot.simulator.CtwingSimulator` (HTTP pushes to
the hub's ``/partners/ctwing/push``), the rest sit several to a bus behind :class:`DtuSimulator`\\ s that
dial the hub's DTU server and speak real CJ/T 188 over TCP. Every meter reports its register by itself
every ``report_every_s`` (phases spread over the period) and answers the hub's requests.

Use is a residential profile, reproducible for a seed: a morning and an evening peak, a little at
noon and at night, the month's seasonal factor (:mod:`connectors.meters.usage`), a household-
specific daily amount, and days away with no use at all. A meter whose valve is closed uses nothing.

Faults (:class:`Fault`, :meth:`MeterFleet.inject`): ``leak`` (gas flows without a pause, the meter
raises its leak status bit), ``low_battery``, ``tamper`` (status bits), ``garble`` (the next frame the
meter sends is corrupt), each reported at once, and ``silence`` (it neither reports nor answers).
Every request that reaches a meter is on its wire tap (:meth:`MeterFleet.wire`: arrival time by
``time.monotonic()`` and the decoded request), so a caller can time a valve-close frame.

Python API, for benchmarks (``tests/flow/test_fleet_flows.py`` does exactly this)::

    city = plan_city(1000, today=today)                     # connectors.demo.city: people, premises, registers
    fleet = fleet_of(city, first=0, dtus=50, ctwing=500, seed=7, report_every_s=60)  # connectors.demo.fleet
    # or, without a city: MeterFleet.plan(1000, dtus=50, ctwing=500, seed=7)
    await fleet.start_platform(push_url="")                 # the simulated CTWing's command API listens
    connectors = {"meters": fleet.dtu_settings(port=0), "ctwing": fleet.ctwing_settings(fleet.ctwing_url)}
    routes_dir.joinpath("fleet.toml").write_text(fleet_routes(fleet))   # valve commands to each meter's path
    hub = ...                                               # start the hub with those connectors and routes
    await seed_city(hub.db, hub.privacy, city)              # connectors.demo.seed: the meters in the core
    fleet.ctwing.push_url = f"{base}/partners/ctwing/push"
    await fleet.start("127.0.0.1", hub.connectors["meters"].port, fleet.ctwing.push_url)
    sent = await fleet.inject("30000000000123", Fault.LEAK)  # time.monotonic() of the leak report
    ...                                                     # fleet.wire(meter): (arrival, request) pairs
    await fleet.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import logging
import math
import random
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from connectors.meters.cjt188 import Message, MeteringData, load_meter_profiles
from connectors.meters.simulator import DtuSimulator, SimulatedMeter
from connectors.meters.usage import HOURLY_SHAPE, SEASON
from connectors.nbiot.simulator import CtwingSimulator, NbDevice

log = logging.getLogger(__name__)

TZ = ZoneInfo("Asia/Shanghai")
PROFILE = "iot-alarm"
"""The meter model of the fleet: CJ/T 188-2018 with a leak and a tamper bit (config/meter_profiles.toml)."""
_SHAPE_SUM = sum(HOURLY_SHAPE)
LEAK_M3H = Decimal("0.060")
"""Gas a leak lets through, every hour, day and night."""
M3 = Decimal("0.001")


class Fault(StrEnum):
    LEAK = "leak"
    LOW_BATTERY = "low_battery"
    TAMPER = "tamper"
    GARBLE = "garble"
    SILENCE = "silence"


def meter_id(n: int) -> str:
    """The id of the fleet's ``n``-th meter: the demo city's (and the vendor cloud's) meter ids, which
    are 14 digits and so double as the meter's CJ/T 188 address."""
    return f"30{n:012d}"


def _unit(seed: int, *parts: object) -> float:
    """A reproducible number in [0, 1) for ``parts`` (no shared RNG state: any order of calls)."""
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class FleetMeter(SimulatedMeter):
    """A simulated meter whose register follows its household's use as time passes."""

    meter_id: str = ""
    daily_m3: float = 0.7
    """Average use on a day at home (m³), before the seasonal factor."""
    seed: int = 0
    away_share: float = 0.06
    """Share of days with no use at all."""
    via: str = ""
    """``dtu:<id>`` or ``ctwing:<device id>``."""
    _at: float = field(default_factory=time.time)

    def rate_m3h(self, moment: datetime) -> float:
        """Flow (m³/h) at ``moment``: the day's amount by the hour's share, 0 on a day away; plus a leak."""
        local = moment.astimezone(TZ)
        day = local.date()
        flow = 0.0
        if _unit(self.seed, self.meter_id, day) >= self.away_share:
            factor = 0.6 + 0.8 * _unit(self.seed, self.meter_id, day, "amount")
            flow = self.daily_m3 * float(SEASON[local.month - 1]) * factor * HOURLY_SHAPE[local.hour] / _SHAPE_SUM
        if self.leak:
            flow += float(LEAK_M3H)
        return flow

    def advance(self, now: float | None = None) -> None:
        """Move the register to ``now`` (wall-clock seconds): the flow of each hour it crossed."""
        now = time.time() if now is None else now
        start, self._at = self._at, now
        if self.valve_closed or now <= start:
            return
        used = 0.0
        t = start
        while t < now:
            moment = datetime.fromtimestamp(t, UTC)
            hour_end = moment.replace(minute=0, second=0, microsecond=0).timestamp() + 3600
            step = min(hour_end, now) - t
            used += self.rate_m3h(moment) * step / 3600
            t += step
        self.volume_m3 += Decimal(str(round(used, 6)))

    def metering_data(self, ser: int, tz: ZoneInfo) -> MeteringData:
        self.advance()
        return super().metering_data(ser, tz)


@dataclass(frozen=True, slots=True)
class FleetLayout:
    """Where each meter is: the DTU buses and the CTWing devices."""

    buses: Mapping[str, tuple[str, ...]]
    """DTU id → the ids of the meters on its bus."""
    devices: Mapping[str, str]
    """CTWing device id → meter id."""


class MeterFleet:
    """N meters behind simulated DTUs and a simulated CTWing platform. Create with :meth:`plan`;
    give the hub :meth:`dtu_settings` and :meth:`ctwing_settings`; then :meth:`start` and :meth:`stop`."""

    def __init__(self, meters: Sequence[FleetMeter], layout: FleetLayout, *, report_every_s: float = 60.0,
                 seed: int = 7, profile: str = PROFILE) -> None:
        self.meters = {m.meter_id: m for m in meters}
        self.profile = profile
        """The meters' model (a profile of ``config/meter_profiles.toml``)."""
        self.layout = layout
        self.report_every_s = report_every_s
        self.seed = seed
        self.dtus: dict[str, DtuSimulator] = {}
        self.ctwing: CtwingSimulator | None = None
        self.reports = 0
        """Reports the meters sent by themselves (DTU frames and CTWing pushes)."""
        self.failed_reports = 0
        self._ctwing_by_meter = {m: d for d, m in layout.devices.items()}
        self._dtu_by_meter = {m: d for d, ms in layout.buses.items() for m in ms}
        self._task: asyncio.Task[None] | None = None
        self.dtu_port: int | None = None
        """The hub's DTU port the fleet's DTUs dialled (after :meth:`start`)."""

    @classmethod
    def plan(cls, meters: int, *, dtus: int, ctwing: int = 0, seed: int = 7, first: int = 0,
             registers: Mapping[str, Decimal] | None = None, daily_m3: Mapping[str, float] | None = None,
             report_every_s: float = 60.0, profile: str = PROFILE) -> MeterFleet:
        """``meters`` meters (ids ``meter_id(first)`` on), the first ``ctwing`` of them on CTWing, the
        others spread evenly over ``dtus`` DTU buses. ``registers`` and ``daily_m3`` by meter id continue
        a seeded city (its register today, its average daily use); otherwise they are drawn from ``seed``."""
        if meters < 1 or not 0 <= ctwing <= meters:
            raise ValueError(f"{meters} meters with {ctwing} on CTWing: need 1 meter or more and 0..meters on CTWing")
        if meters > ctwing and dtus < 1:
            raise ValueError("meters behind DTUs need at least one DTU")
        model = load_meter_profiles().get(profile)
        rng = random.Random(seed)
        fleet: list[FleetMeter] = []
        for n in range(first, first + meters):
            mid = meter_id(n)
            daily = (daily_m3 or {}).get(mid) or rng.lognormvariate(math.log(0.7), 0.4)
            register = (registers or {}).get(mid) or Decimal(rng.randint(100, 3000))
            fleet.append(FleetMeter(address=mid, profile=model, volume_m3=Decimal(register), meter_id=mid,
                                    daily_m3=daily, seed=seed))
        on_dtus = fleet[ctwing:]
        buses: dict[str, tuple[str, ...]] = {}
        for d in range(dtus if on_dtus else 0):  # contiguous runs whose sizes differ by one at most
            bus = tuple(m.meter_id for m in on_dtus[d * len(on_dtus) // dtus:(d + 1) * len(on_dtus) // dtus])
            if bus:
                buses[f"86{d:013d}"] = bus
        devices = {f"ct{n:08d}": fleet[n].meter_id for n in range(ctwing)}
        by_id = {m.meter_id: m for m in fleet}
        for dtu, ids in buses.items():
            for mid in ids:
                by_id[mid].via = f"dtu:{dtu}"
        for device, mid in devices.items():
            by_id[mid].via = f"ctwing:{device}"
        return cls(fleet, FleetLayout(buses, devices), report_every_s=report_every_s, seed=seed, profile=profile)

    # what the hub is told --------------------------------------------------------------------

    def dtu_settings(self, *, host: str = "127.0.0.1", port: int = 0, **extra: Any) -> dict[str, Any]:
        """Settings of a ``dtu_cjt188`` connector serving the fleet's DTU meters."""
        return {"kind": "dtu_cjt188", "host": host, "port": port, "daily_read_at": None, **extra,
                "meters": [{"meter_id": mid, "address": self.meters[mid].address, "dtu": dtu, "profile": self.profile}
                           for dtu, ids in self.layout.buses.items() for mid in ids]}

    def ctwing_settings(self, base_url: str, **extra: Any) -> dict[str, Any]:
        """Settings of a ``ctwing`` connector for the fleet's CTWing meters; ``base_url`` is the
        simulated platform's command API (:attr:`ctwing_url` once started)."""
        return {"kind": "ctwing", "base_url": base_url, "app_key": "sim-app", "app_secret": "sim-secret",
                "master_key": "sim-master", "product_id": "15000001", **extra,
                "devices": [{"meter_id": mid, "device_id": device, "imei": self._imei(device),
                             "address": self.meters[mid].address, "profile": self.profile}
                            for device, mid in self.layout.devices.items()]}

    def valve_route_split(self) -> str | None:
        """The first DTU meter's id: valve commands for meter ids below it go to CTWing, the others to
        the DTU connector (``where`` of the fleet's valve routes); ``None`` when one path has no meters."""
        if not self.layout.devices or not self.layout.buses:
            return None
        return min(self._dtu_by_meter)

    @staticmethod
    def _imei(device: str) -> str:
        return f"87{int(device[2:]):013d}"

    # running ----------------------------------------------------------------------------------

    @property
    def ctwing_url(self) -> str:
        """The simulated CTWing command API (after :meth:`start_platform`)."""
        assert self.ctwing is not None, "start_platform() first"
        return self.ctwing.url

    async def start_platform(self, push_url: str) -> None:
        """Start the simulated CTWing platform (its command API listens; pushes go to ``push_url``)."""
        if self.ctwing is None:
            devices = [NbDevice(device, self._imei(device), self.meters[mid]) for device, mid in
                       self.layout.devices.items()]
            self.ctwing = CtwingSimulator(push_url, devices)
            await self.ctwing.start()

    async def start(self, dtu_host: str, dtu_port: int | None, ctwing_push_url: str | None = None, *,
                    report: bool = True) -> None:
        """Dial every DTU into the hub's server, start the CTWing platform and (``report``) the meters'
        own periodic reports."""
        if self.layout.devices:
            if ctwing_push_url is None:
                raise ValueError("the fleet has CTWing meters: give the hub's push URL")
            await self.start_platform(ctwing_push_url)
        if self.layout.buses:
            if dtu_port is None:
                raise ValueError("the fleet has DTU meters: give the hub's DTU port")
            self.dtu_port = dtu_port
            for dtu, ids in self.layout.buses.items():
                sim = DtuSimulator(dtu_host, dtu_port, dtu_id=dtu, meters=[self.meters[m] for m in ids],
                                   heartbeat_s=60.0, bus_delay_s=0.005)
                await sim.connect()
                self.dtus[dtu] = sim
        if report:
            self._task = asyncio.create_task(self._report_forever(), name="fleet:reports")

    async def stop(self) -> None:
        """Stop reporting, hang up every DTU, stop the platform. Safe to call twice."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for sim in self.dtus.values():
            await sim.aclose()
        self.dtus = {}
        if self.ctwing is not None:
            await self.ctwing.aclose()
            self.ctwing = None

    async def report(self, meter: str) -> bool:
        """The meter reports its register and status now, by itself. False when it is silent or its
        link failed (the reason is logged)."""
        m = self.meters[meter]
        if m.silent:
            return False
        try:
            if meter in self._dtu_by_meter:
                await self.dtus[self._dtu_by_meter[meter]].report(m.address)
            else:
                assert self.ctwing is not None
                m.advance()
                self.ctwing.garble, m.garble = m.garble, False
                status, answer = await self.ctwing.push(self.ctwing.report(self._ctwing_by_meter[meter]))
                if status >= 500:
                    raise ConnectionError(f"CTWing push answered {status}: {answer}")
        except (OSError, ConnectionError, KeyError) as exc:
            self.failed_reports += 1
            log.info("fleet.report_failed", extra={"meter": meter, "error": str(exc)})
            return False
        self.reports += 1
        return True

    async def inject(self, meter: str, fault: Fault | str) -> float:
        """Give ``meter`` a fault and have it report at once (the meter wakes on the event; a garbled
        report is the one it sends now), except a silent one. Returns ``time.monotonic()`` when the
        meter's report left it (or the fault was set), the start of any latency measured from the wire
        tap."""
        m = self.meters[meter]
        fault = Fault(fault)
        if fault is Fault.LEAK:
            m.advance()
            m.leak = True
        elif fault is Fault.LOW_BATTERY:
            m.battery_low = True
        elif fault is Fault.TAMPER:
            m.tamper = True
        elif fault is Fault.GARBLE:
            m.garble = True
        elif fault is Fault.SILENCE:
            m.silent = True
        started = time.monotonic()
        if fault is not Fault.SILENCE:
            await self.report(meter)
        return started

    def wire(self, meter: str) -> list[tuple[float, Message]]:
        """The meter's wire tap: every request that reached it, with its ``time.monotonic()`` arrival."""
        return self.meters[meter].received

    async def _report_forever(self) -> None:
        """Each meter reports every ``report_every_s``, at a phase of its own (drawn from the seed)."""
        start = time.monotonic()
        due = [(start + _unit(self.seed, mid, "phase") * self.report_every_s, mid) for mid in self.meters]
        heapq.heapify(due)
        while due:
            at, mid = due[0]
            wait = at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            heapq.heapreplace(due, (at + self.report_every_s, mid))
            await self.report(mid)


def parse_fault(text: str, known: Collection[str]) -> tuple[Fault, str, float | None]:
    """``KIND:METER[@SECONDS]`` → (fault, meter id, seconds after the start or ``None``). METER is a
    meter id, ``M123`` or ``123`` (the 123rd meter)."""
    kind, sep, rest = text.partition(":")
    if not sep:
        raise ValueError(f"{text!r}: write KIND:METER[@SECONDS], e.g. leak:M123@10")
    try:
        fault = Fault(kind.strip().lower())
    except ValueError:
        raise ValueError(f"{text!r}: unknown fault {kind!r}; one of {', '.join(f.value for f in Fault)}") from None
    who, _, when = rest.partition("@")
    who = who.strip()
    n = who[1:] if who[:1] in ("M", "m") else who
    if len(who) == 14 and who.isdigit():
        mid = who
    elif n.isdigit():
        mid = meter_id(int(n))
    else:
        raise ValueError(f"{text!r}: {who!r} is no meter (a 14-digit id, M123 or 123)")
    if mid not in known:
        raise ValueError(f"{text!r}: meter {mid} is not in the fleet")
    after = None
    if when:
        try:
            after = float(when.rstrip("s"))
        except ValueError:
            raise ValueError(f"{text!r}: {when!r} is not a number of seconds") from None
    return fault, mid, after


def day_use(meter: FleetMeter, day: date) -> Decimal:
    """What ``meter`` uses on ``day`` (local), by its profile: for checks and reports."""
    start = datetime.combine(day, datetime.min.time(), tzinfo=TZ)
    total = sum(meter.rate_m3h(start + timedelta(hours=h)) for h in range(24))
    return Decimal(str(total)).quantize(M3)
