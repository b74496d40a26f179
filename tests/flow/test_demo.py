"""`gashub demo` runs on the embedded default, answers /health and /ops, and stops by itself."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_demo_serves_health_and_ops_then_stops_after_its_duration(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GASHUB_")}
    env["GASHUB_OPS__TOKEN"] = "demo-test-token"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "demo", "--duration", "12", "--port", str(port),
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/health") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the demo never answered /health")
            async with http.get(f"http://127.0.0.1:{port}/ops") as resp:
                assert resp.status == 200
                assert "gashub operations" in await resp.text()
            await asyncio.sleep(4)  # let traffic flow
            headers = {"Authorization": "Bearer demo-test-token"}
            async with http.get(f"http://127.0.0.1:{port}/ops/routes", headers=headers) as resp:
                routes = {r["name"]: r for r in (await resp.json())["routes"]}
            assert routes["vendor-readings"]["settled"].get("delivered", 0) > 0
        output, _ = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = output.decode()
    assert proc.returncode == 0, text
    assert "demo summary" in text
    assert "audit chain      intact" in text
    assert (tmp_path / "var" / "demo.db").exists()
