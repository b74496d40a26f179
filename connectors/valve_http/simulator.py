"""``ValvePlatformSimulator``: a meter platform that executes valve commands on simulated meters.

Executes each ``command_id`` once (a repeat answers the same state), keeps the order commands
arrived in, and can be told to fail the next N commands with 503.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from hub.connectors.simulation import HttpSimulator


class ValvePlatformSimulator(HttpSimulator):
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, fail_next: int = 0) -> None:
        super().__init__(host, port)
        self.fail_next = fail_next
        self.valves: dict[str, str] = {}
        self.commands: list[dict[str, Any]] = []
        self.executed: dict[str, str] = {}
        self.arrived_at: dict[str, float] = {}

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/commands", self._command)]

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
