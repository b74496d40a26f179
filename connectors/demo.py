"""``gashub demo``: the hub on its embedded default with partner simulators and sample traffic.

A small day in the life of a gas company, sped up: a meter vendor's cloud pushes readings (and now
and then the same push twice, or a malformed one), a leak alarm closes a valve through the meter
platform, bill notifications go out by SMS through a gateway that is sometimes busy and once goes
down for a while (its breaker opens, messages wait, then flow again), and everything lands in the
store, the audit chain and the ops dashboard at http://127.0.0.1:8080/ops.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import random
import secrets
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from connectors.http_sms.simulator import SmsGatewaySimulator
from connectors.valve_http.simulator import ValvePlatformSimulator
from connectors.vendor_push.simulator import VendorCloudSimulator
from hub.app import Hub
from hub.envelope import Envelope
from hub.ids import new_id
from hub.logs import configure
from hub.settings import load_settings
from hub.signals import stop_on_signals, wait_until_stopped
from hub.store.audit import verify_chain

console = Console(stderr=True)
PROJECT = Path(__file__).resolve().parents[1]  # the demo runs this project's own routes and mappings


async def run_demo(*, duration: float | None = None, port: int | None = None, rate: float = 20.0,
                   database_url: str | None = None) -> int:
    configure("WARNING", json=False)
    db_url = database_url or "sqlite+aiosqlite:///var/demo.db"
    if database_url is None:
        await asyncio.to_thread(_fresh_demo_database)
    sms = SmsGatewaySimulator()
    valves = ValvePlatformSimulator()
    await sms.start()
    await valves.start()
    vendor_token = secrets.token_urlsafe(16)
    ops_token = os.environ.get("GASHUB_OPS__TOKEN") or secrets.token_urlsafe(18)
    http_port = port if port is not None else int(os.environ.get("GASHUB_HTTP_PORT", "8080"))
    settings = load_settings(
        database_url=db_url, amqp_url=None, http={"host": "127.0.0.1", "port": http_port},
        routes_dir=PROJECT / "routes", mappings_dir=PROJECT / "mappings",
        billing={"tariffs_file": PROJECT / "config" / "tariffs.toml"},
        ops={"token": ops_token}, log_json=False, log_level="WARNING",
        breaker={"failure_threshold": 3, "reset_after_s": 5.0},
        core={"keys": {"demo": base64.b64encode(secrets.token_bytes(32)).decode()}},
        connectors={
            "vendor": {"kind": "vendor_push", "token": vendor_token},
            "sms": {"kind": "http_sms", "base_url": sms.url, "timeout_s": 2.0},
            "valves": {"kind": "valve_http", "base_url": valves.url},
        },
    )
    hub = Hub.build(settings)
    await hub.start()
    base = f"http://127.0.0.1:{http_port}"
    console.print(f"[bold green]gashub demo[/] running on the embedded default "
                  f"(SQLite {db_url.split('///')[-1]}, in-memory transport)")
    console.print(f"  health    {base}/health")
    console.print(f"  dashboard {base}/ops#token={ops_token}")
    console.print(f"            (or open {base}/ops and paste the token [bold]{ops_token}[/])")
    console.print(f"  metrics   {base}/metrics")
    console.print("  Ctrl-C stops it" + (f"; stopping by itself after {duration:g} s" if duration else ""))
    vendor = VendorCloudSimulator(f"{base}/partners/vendor-demo/push", vendor_token, meters=1000)
    stop = stop_on_signals()
    tasks = [
        asyncio.create_task(vendor.run(rate, stop=stop), name="demo:readings"),
        asyncio.create_task(_incidents(hub, vendor, sms, stop), name="demo:incidents"),
        asyncio.create_task(_report(hub, vendor, sms, valves, stop), name="demo:report"),
    ]
    try:
        await wait_until_stopped(stop, duration)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await asyncio.sleep(0.5)
        summary = await _summary(hub, vendor, sms, valves)
        await vendor.aclose()
        await hub.stop()
        await sms.aclose()
        await valves.aclose()
    console.print(summary)
    return 0


def _fresh_demo_database() -> None:
    Path("var").mkdir(exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"var/demo.db{suffix}").unlink()


async def _incidents(hub: Hub, vendor: VendorCloudSimulator, sms: SmsGatewaySimulator, stop: asyncio.Event) -> None:
    rng = random.Random(11)
    tick = 0
    while not stop.is_set():
        await asyncio.sleep(1.0)
        tick += 1
        if tick % 3 == 0:
            await hub.publisher.publish([Envelope(
                type="notification.requested", source="demo.billing", data={
                    "notification_id": new_id(), "kind": "bill", "phone": f"13{rng.randint(100000000, 999999999)}",
                    "params": {"amount": f"{rng.uniform(20, 300):.2f}", "month": time.strftime("%Y-%m")}})])
        if tick % 10 == 5:
            meter = rng.randrange(vendor.meters)
            await vendor.push(vendor.alarm(meter, "leak"))
            console.print(f"[yellow]leak alarm[/] at meter {vendor.meter_id(meter)}: the core closes its valve")
        if tick % 13 == 7:
            await vendor.push(b'{"event": "reading", "devId": "30000000000001", "seq": "oops"')
            console.print("[red]malformed push[/] from the vendor: refused with 400 and audited")
        if tick % 17 == 11:
            bad = vendor.reading()
            bad["totalLitres"] = "lots"
            await vendor.push(bad)
            console.print("[red]unmappable reading[/] (totalLitres is not a number): dead-lettered with its reason")
        if tick == 20:
            sms.down = True
            console.print("[red]SMS gateway down[/]: the breaker opens, notifications wait in their queue")
        if tick == 35:
            sms.down = False
            console.print("[green]SMS gateway back[/]: the waiting notifications go out")


async def _report(hub: Hub, vendor: VendorCloudSimulator, sms: SmsGatewaySimulator,
                  valves: ValvePlatformSimulator, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await asyncio.sleep(5.0)
        settled = {name: rt.pipeline.settled for name, rt in hub.runtimes.items()}
        breaker = hub.breakers.get("sms")
        console.print(
            f"[dim]{time.strftime('%H:%M:%S')}[/] pushes {vendor.pushed:,}  readings stored "
            f"{settled.get('vendor-readings', 0):,}  SMS sent {len(sms.sent):,}  valves closed "
            f"{len(valves.commands)}  sms breaker {breaker.state if breaker else '-'}")


async def _summary(hub: Hub, vendor: VendorCloudSimulator, sms: SmsGatewaySimulator,
                   valves: ValvePlatformSimulator) -> str:
    from sqlalchemy import func, select

    from core.db.tables import alarm, reading
    from hub.store.tables import dead_letter, hop, message

    counts: dict[str, Any] = {}
    async with hub.db.read() as conn:
        for label, table in (("messages stored", message), ("audit hops", hop), ("readings", reading),
                             ("alarms", alarm), ("dead letters", dead_letter)):
            counts[label] = await conn.scalar(select(func.count()).select_from(table))
        verdict = await verify_chain(conn)
    lines = ["", "[bold]demo summary[/]"]
    lines += [f"  {k:<16} {v:,}" for k, v in counts.items()]
    lines.append(f"  {'SMS sent':<16} {len(sms.sent):,}")
    lines.append(f"  {'valves closed':<16} {len(valves.commands):,}")
    lines.append(f"  audit chain      {'intact' if verdict.ok else 'BROKEN: ' + verdict.problem}"
                 f" ({verdict.checked:,} hops)")
    return "\n".join(lines)
