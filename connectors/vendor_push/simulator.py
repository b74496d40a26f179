"""``VendorCloudSimulator``: a meter vendor's cloud pushing readings and alarms to the hub.

Each simulated meter has a register that grows with realistic household use (a flow in m³/h, more at
meal times, for the time since its last push);
the simulator pushes readings at a set rate, repeats some pushes as real clouds do when an answer is
slow, and can inject a leak alarm or a malformed push. Registers start where ``start_from`` says (a
seeded city's last readings) or at random; a meter whose valve ``valves`` reports closed uses no gas
and reports its valve closed.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp


@dataclass
class VendorCloudSimulator:
    url: str
    token: str
    meters: int = 100
    seed: int = 7
    duplicate_rate: float = 0.02
    pushed: int = 0
    answers: dict[int, int] = field(default_factory=dict)
    valves: Mapping[str, str] = field(default_factory=dict)
    """Valve state by meter id, as the meter platform set it (e.g. ``ValvePlatformSimulator.valves``)."""
    _registers: dict[str, Decimal] = field(default_factory=dict)
    _last_push: dict[str, float] = field(default_factory=dict)
    _seq: int = 0
    _session: aiohttp.ClientSession | None = None

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        for n in range(self.meters):
            self._registers[self.meter_id(n)] = Decimal(self._rng.randint(100, 5000))

    @staticmethod
    def meter_id(n: int) -> str:
        return f"30{n:012d}"

    def start_from(self, registers: Mapping[str, Decimal]) -> None:
        """Set the registers of these meters (m³), e.g. to continue a seeded reading history."""
        unknown = sorted(set(registers) - set(self._registers))
        if unknown:
            raise ValueError(f"no simulated meter {unknown[0]!r} (meters 0..{self.meters - 1})")
        self._registers.update(registers)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def reading(self, n: int | None = None) -> dict[str, Any]:
        meter = self.meter_id(self._rng.randrange(self.meters) if n is None else n)
        now = time.time()
        hour = time.localtime(now).tm_hour
        # Gas flows at a rate (m³/h) for the time since the meter's last push: more at meal times,
        # never above what a household meter passes (a G2.5 meter's Qmax is 4 m³/h).
        flow = self._rng.uniform(0.2, 1.5) if hour in (6, 7, 11, 12, 17, 18, 19) else self._rng.uniform(0.0, 0.4)
        hours = Decimal(str(min(now - self._last_push.get(meter, now - 60.0), 3600.0) / 3600))
        self._last_push[meter] = now
        closed = self.valves.get(meter) == "closed"
        if not closed:
            self._registers[meter] += (Decimal(str(flow)) * hours).quantize(Decimal("0.001"))
        return {"event": "reading", "devId": meter, "seq": self._next_seq(), "ts": int(now * 1000),
                "totalLitres": int(self._registers[meter] * 1000), "total_m3": str(self._registers[meter]),
                "valve": "1" if closed else "0", "batt": round(self._rng.uniform(3.2, 3.6), 2)}

    def alarm(self, n: int, kind: str = "leak") -> dict[str, Any]:
        return {"event": "alarm", "devId": self.meter_id(n), "seq": self._next_seq(), "ts": int(time.time() * 1000),
                "alarm": kind, "level": 5}

    async def push(self, doc: dict[str, Any] | bytes, *, token: str | None = None) -> tuple[int, dict[str, Any]]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        data = doc if isinstance(doc, bytes) else None
        async with self._session.post(self.url, json=None if data else doc, data=data,
                                      headers={"X-Vendor-Token": token or self.token}) as resp:
            self.pushed += 1
            self.answers[resp.status] = self.answers.get(resp.status, 0) + 1
            answer = await resp.json(content_type=None)
            return resp.status, answer

    async def run(self, rate: float, *, stop: asyncio.Event | None = None) -> None:
        """Push readings at ``rate`` per second until cancelled or ``stop`` is set."""
        interval = 1.0 / rate
        while stop is None or not stop.is_set():
            doc = self.reading()
            await self.push(doc)
            if self._rng.random() < self.duplicate_rate:
                await self.push(doc)
            await asyncio.sleep(interval)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
