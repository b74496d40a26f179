"""``ValvePlatformSimulator``: a meter platform that executes valve commands on simulated meters.

Executes each ``command_id`` once (a repeat answers the same state), keeps the order commands
arrived in, and can be told to fail the next N commands with 503.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web


@dataclass
class ValvePlatformSimulator:
    host: str = "127.0.0.1"
    port: int = 0
    fail_next: int = 0
    valves: dict[str, str] = field(default_factory=dict)
    commands: list[dict[str, Any]] = field(default_factory=list)
    executed: dict[str, str] = field(default_factory=dict)
    arrived_at: dict[str, float] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _command(self, request: web.Request) -> web.Response:
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=503, text="platform busy (simulated)")
        body = orjson.loads(await request.read())
        cid = body["command_id"]
        if cid not in self.executed:
            state = "closed" if body["action"] == "close" else "open"
            self.valves[body["meter_id"]] = state
            self.executed[cid] = state
            self.commands.append(body)
            self.arrived_at[cid] = time.monotonic()
        return web.json_response({"state": self.executed[cid], "observed_at": datetime.now(UTC).isoformat(),
                                  "result": "ok"})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/commands", self._command)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
