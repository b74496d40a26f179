"""``gashub demo``: the hub on its embedded default with a seeded city, partner simulators and traffic.

A day in the life of a gas company in Shaoxing, sped up:

1. a fresh database gets a small city (:mod:`connectors.demo.city`): accounts in the six districts,
   holders encrypted with the demo's key, a meter each and a year of monthly readings;
2. the meter vendor's cloud pushes live readings for those meters (now and then the same push twice,
   a malformed or an unmappable one), a leak alarm closes a valve through the meter platform;
3. the billing run bills the last full month with the shipped tariffs; each ``bill.issued`` becomes an
   SMS to the holder through a gateway that is down just then (its breaker opens, the SMS wait in
   their queue, then go out);
4. customers pay some bills through WeChat Pay and Alipay (:mod:`connectors.demo.payments`; some
   notifications twice). WeChat payments go over the wire (:mod:`connectors.demo.wechat`): a Native
   order through the WeChat Pay connector's signed client, the platform simulator's signed, encrypted
   notification to ``/partners/wechatpay/notify``; Alipay's are published as ``payment.received`` (no
   Alipay connector yet). The core credits each payment once, settles bills oldest first and asks for
   an invoice, which the tax connector (:mod:`connectors.tax`) issues over SOAP from the e-invoicing
   simulator; the core stores it and texts the invoice number to the holder through the SMS gateway;
5. one bill's whole story is printed: the bill, the WeChat payment, the invoice number, the SMS;

and everything lands in the store, the audit chain and the ops dashboard at http://127.0.0.1:8080/ops.

``GASHUB_DEMO_TAX=rest`` runs the invoices through the tax connector's signed REST provider instead
of SOAP (the default, ``soap``).
The demo runs the project's own ``routes/`` (copied to ``var/demo-routes/``), with the connectors
they name configured for the simulators. The SMS connector is ``http_sms``; an Aliyun ``SendSms``
connector would be configured as the ``sms`` connector in :func:`demo_settings` in its place.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import random
import secrets
import shutil
import time
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from connectors.demo import report
from connectors.demo.city import Household, plan_city
from connectors.demo.payments import Due, Notified, PaymentChannelSimulator
from connectors.demo.seed import Seeded, seed_city
from connectors.demo.wechat import DemoWeChat, WeChatPayer
from connectors.http_sms.simulator import SmsGatewaySimulator
from connectors.payments.wechatpay import WeChatPayConnector
from connectors.tax.rest_simulator import RestTaxSimulator
from connectors.tax.simulator import EInvoiceSimulator
from connectors.valve_http.simulator import ValvePlatformSimulator
from connectors.vendor_push.simulator import VendorCloudSimulator
from core.accounts import Privacy
from hub.app import Hub
from hub.billing import COMPANY_TZ, bill_period, month_period
from hub.logs import configure
from hub.settings import Settings, load_settings
from hub.signals import stop_on_signals, wait_until_stopped
from hub.tariffs import current_book

console = Console(stderr=True)
PROJECT = Path(__file__).resolve().parents[2]  # the demo runs this project's own routes and mappings
BILL_AFTER_S = 3.0
"""Seconds of live readings before the billing run."""
SMS_OUTAGE_S = 5.0
"""How long the SMS gateway is down when the bills go out."""


TAX_CHOICES = ("soap", "rest")
TAX_NAMES = {"soap": "tax platform over SOAP", "rest": "tax platform over signed REST"}
DEMO_SELLER = "91330600MA2DEMO000"
DEMO_APP_KEY = "gashub-demo"
STORY_WAIT_S = 15.0
"""How long the demo waits for its WeChat-paid bill's invoice and SMS before telling the story."""


def demo_routes(target: Path) -> Path:
    """``target`` filled afresh with the project's routes (the demo has none of its own)."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for path in sorted((PROJECT / "routes").glob("*.toml")):
        shutil.copyfile(path, target / path.name)
    return target


def tax_connector(tax: str, url: str, app_secret: str = "") -> dict[str, object]:
    """The demo's ``tax`` connector settings for ``tax`` (``soap`` or ``rest``) at ``url``."""
    if tax == "soap":
        return {"kind": "tax", "provider": "soap", "endpoint": url, "seller_tax_id": DEMO_SELLER}
    return {"kind": "tax", "provider": "rest", "endpoint": url, "seller_tax_id": DEMO_SELLER,
            "app_key": DEMO_APP_KEY, "app_secret": app_secret}


def demo_settings(*, database_url: str, http_port: int, ops_token: str, vendor_token: str, routes_dir: Path,
                  sms_url: str, valves_url: str, tax_url: str, tax: str = "soap",
                  tax_secret: str = "", wechatpay: dict[str, object] | None = None) -> Settings:
    connectors: dict[str, object] = {
        "vendor": {"kind": "vendor_push", "token": vendor_token},
        "sms": {"kind": "http_sms", "base_url": sms_url, "timeout_s": 2.0},
        "valves": {"kind": "valve_http", "base_url": valves_url},
        "tax": tax_connector(tax, tax_url, tax_secret),
    }
    if wechatpay is not None:
        connectors["wechatpay"] = wechatpay
    return load_settings(
        database_url=database_url, amqp_url=None, http={"host": "127.0.0.1", "port": http_port},
        routes_dir=routes_dir, mappings_dir=PROJECT / "mappings",
        billing={"tariffs_file": PROJECT / "config" / "tariffs.toml"},
        ops={"token": ops_token}, log_json=False, log_level="WARNING",
        breaker={"failure_threshold": 3, "reset_after_s": 5.0},
        core={"keys": {"demo": base64.b64encode(secrets.token_bytes(32)).decode()}},
        connectors=connectors,
    )


async def run_demo(*, duration: float | None = None, port: int | None = None, rate: float = 20.0,
                   database_url: str | None = None, accounts: int = 200) -> int:
    configure("WARNING", json=False)
    started = time.monotonic()
    db_url = database_url or "sqlite+aiosqlite:///var/demo.db"
    if database_url is None:
        await asyncio.to_thread(_fresh_demo_database)
    tax_choice = os.environ.get("GASHUB_DEMO_TAX", "soap")
    if tax_choice not in TAX_CHOICES:
        console.print(f"[red]GASHUB_DEMO_TAX={tax_choice!r}[/]: choose one of {', '.join(TAX_CHOICES)}")
        return 2
    routes_dir = await asyncio.to_thread(demo_routes, Path("var") / "demo-routes")
    tax_secret = secrets.token_urlsafe(24)
    async with contextlib.AsyncExitStack() as cleanup:  # whatever fails, what was started is stopped
        tax: EInvoiceSimulator | RestTaxSimulator
        tax = EInvoiceSimulator() if tax_choice == "soap" else RestTaxSimulator(DEMO_APP_KEY, tax_secret)
        sms, valves = SmsGatewaySimulator(), ValvePlatformSimulator()
        wechat = DemoWeChat.create()
        for simulator in (sms, valves, tax, wechat.platform):
            await simulator.start()
            cleanup.push_async_callback(simulator.aclose)
        vendor_token = secrets.token_urlsafe(16)
        ops_token = os.environ.get("GASHUB_OPS__TOKEN") or secrets.token_urlsafe(18)
        http_port = port if port is not None else int(os.environ.get("GASHUB_HTTP_PORT", "8080"))
        settings = demo_settings(database_url=db_url, http_port=http_port, ops_token=ops_token,
                                 vendor_token=vendor_token, routes_dir=routes_dir, sms_url=sms.url,
                                 valves_url=valves.url, tax=tax_choice, tax_secret=tax_secret,
                                 tax_url=tax.endpoint,
                                 wechatpay=wechat.base_url_settings())
        hub = Hub.build(settings)
        await hub.start()
        cleanup.push_async_callback(hub.stop)
        assert hub.privacy is not None  # the demo configures a key
        stop = stop_on_signals()
        base = f"http://127.0.0.1:{http_port}"
        console.print(f"[bold green]gashub demo[/] running on the embedded default "
                      f"(SQLite {db_url.split('///')[-1]}, in-memory transport)")
        console.print(f"  health    {base}/health")
        console.print(f"  dashboard {base}/ops#token={ops_token}")
        console.print(f"            (or open {base}/ops and paste the token [bold]{ops_token}[/])")
        console.print(f"  metrics   {base}/metrics")
        console.print("  Ctrl-C stops it" + (f"; stopping by itself after {duration:g} s" if duration else ""))

        today = datetime.now(COMPANY_TZ).date()
        city = plan_city(accounts, today=today)
        seeded = await _seed(hub, hub.privacy, city)
        console.print(report.city_table(seeded))
        console.print(f"  {seeded.readings:,} monthly readings loaded as a backfill (12 months up to "
                      f"{today:%Y-%m}-01); holders' names, phones and ID numbers stored encrypted with the demo's key")

        vendor = VendorCloudSimulator(f"{base}/partners/vendor-demo/push", vendor_token, meters=accounts,
                                      valves=valves.valves)
        vendor.start_from({home.meter_id: home.register_now for home in city})
        cleanup.push_async_callback(vendor.aclose)
        wechat_connector = hub.connectors["wechatpay"]
        assert isinstance(wechat_connector, WeChatPayConnector)
        payer = PaymentChannelSimulator(hub.publisher.publish)
        wechat_payer = WeChatPayer(wechat.platform, wechat_connector.client, f"{base}/partners/wechatpay/notify")
        payer.wechat = wechat_payer.pay
        tasks = [
            asyncio.create_task(vendor.run(rate, stop=stop), name="demo:readings"),
            asyncio.create_task(_incidents(vendor, stop), name="demo:incidents"),
            asyncio.create_task(_report(hub, vendor, sms, valves, payer, tax, stop), name="demo:report"),
            asyncio.create_task(_story(hub, hub.privacy, sms, payer, base, tax_choice, stop), name="demo:story"),
        ]
        try:
            left = None if duration is None else max(0.0, duration - (time.monotonic() - started))
            await wait_until_stopped(stop, left)
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await _drain(hub, within_s=3.0)
        summary = await report.summary(
            hub, await report.tally(hub), sms_sent=len(sms.sent),
            bill_sms=sum(1 for s in sms.sent if s.get("template") == "SMS_BILL"),
            invoice_sms=sum(1 for s in sms.sent if s.get("template") == "SMS_INVOICE"),
            valves_closed=len(valves.commands), notified=len(payer.sent), repeated=len(payer.repeated),
            wechat_accepted=int(wechat_connector.health().extra["accepted"]), tax_issued=len(tax.invoices),
            tax_name=TAX_NAMES[tax_choice])
    console.print(summary)
    return 0


def _fresh_demo_database() -> None:
    Path("var").mkdir(exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"var/demo.db{suffix}").unlink()


async def _seed(hub: Hub, privacy: Privacy, city: list[Household]) -> Seeded:
    """Seed the city; a progress bar appears once it takes more than a second."""
    t0 = time.monotonic()
    bar: Progress | None = None
    task = None

    def progress(done: int) -> None:
        nonlocal bar, task
        if bar is None and time.monotonic() - t0 > 1.0:
            bar = Progress(TextColumn("seeding Shaoxing"), BarColumn(), MofNCompleteColumn(), TextColumn("accounts"),
                           TimeElapsedColumn(), console=console, transient=True)
            bar.start()
            task = bar.add_task("seed", total=len(city))
        if bar is not None and task is not None:
            bar.update(task, completed=done)

    try:
        return await seed_city(hub.db, privacy, city, progress=progress)
    finally:
        if bar is not None:
            bar.stop()


async def _story(hub: Hub, privacy: Privacy, sms: SmsGatewaySimulator, payer: PaymentChannelSimulator, base: str,
                 tax: str, stop: asyncio.Event) -> None:
    """Readings become bills (whose SMS meet a gateway that is down for a while), bills become payments,
    payments become invoices, and invoices SMS."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), BILL_AFTER_S)
    if stop.is_set():
        return
    outage = asyncio.create_task(_sms_outage(sms, SMS_OUTAGE_S), name="demo:sms-outage")
    one_bill: asyncio.Task[None] | None = None
    try:
        dues = await _bill(hub, privacy, base)
        one_bill = asyncio.create_task(_one_bill(hub, sms, payer, tax, stop), name="demo:one-bill")
        await _pay(payer, dues, base, tax, stop)
        await one_bill
        await outage
    finally:
        outage.cancel()
        if one_bill is not None:
            one_bill.cancel()


async def _bill(hub: Hub, privacy: Privacy, base: str) -> list[Due]:
    start, end = month_period(None)
    console.rule(f"billing {start:%Y-%m}")
    result = await bill_period(hub.db, await current_book(hub.db), start, end)
    skipped = f", {len(result.skipped):,} skipped" if result.skipped else ""
    console.print(f"[bold]billing run {start}..{end}[/] (end exclusive): {result.bills_issued:,} bills issued for "
                  f"{result.accounts_seen:,} accounts, [bold]{result.total_billed:,} yuan[/]{skipped}")
    for line in await report.sample_bill(hub, result, privacy):
        console.print(line)
    console.print(f"  each bill.issued → core:notify_bill → an SMS to its holder; dashboard {base}/ops → "
                  "Messages, type bill.issued → Trace")
    return await report.dues(hub, result.bill_ids)


async def _pay(payer: PaymentChannelSimulator, dues: list[Due], base: str, tax: str, stop: asyncio.Event) -> None:
    payments = payer.plan(dues, datetime.now(COMPANY_TZ))
    if not payments:
        return
    console.rule("payments")
    console.print(f"{len(payments):,} of {len(dues):,} bills get paid through WeChat Pay and Alipay "
                  "(most exactly, some rounded up, a few in part); a few platforms notify twice")
    shown = {"first": 0, "twice": 0}

    def told(n: Notified) -> None:
        first, twice = shown["first"] < 3, n.twice and shown["twice"] < 2
        if not (first or twice):
            return
        shown["first" if first else "twice"] += 1
        tail = " [yellow]notified twice[/]: the core credits it once" if n.twice else ""
        wire = " (signed notification to the WeChat Pay connector)" if n.envelope is None else ""
        console.print(f"[green]payment[/] {n.payment.channel} {n.payment.transaction_id[:8]}… {n.payment.amount} "
                      f"yuan ({n.payment.how}) for account {n.payment.account_number}{wire}{tail}")
        if shown["first"] == 1 and first and n.envelope is not None:
            console.print(f"  trace it: {base}/ops → Messages, flow {n.envelope.correlation_id} "
                          "(payment.received → invoice.requested → invoice.issued)")

    await payer.run(payments, per_second=max(5.0, len(payments) / 6), stop=stop, on_sent=told)
    console.print(f"  {len(payer.sent):,} payments notified ({len(payer.repeated):,} twice); each invoice comes "
                  f"from the {TAX_NAMES[tax]} (GASHUB_DEMO_TAX: soap or rest) and goes to its holder by SMS")


async def _one_bill(hub: Hub, sms: SmsGatewaySimulator, payer: PaymentChannelSimulator, tax: str,
                    stop: asyncio.Event) -> None:
    """A bill paid by WeChat, its e-invoice and the SMS that carries it, told once all three happened
    (while the other customers go on paying)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STORY_WAIT_S
    while not stop.is_set() and loop.time() < deadline:
        for paid in [p for p in payer.sent if p.channel == "wechat"][:5]:
            lines = await report.wechat_story(hub, paid, sms.sent, tax=tax)
            if lines is not None:
                console.rule("one bill, end to end")
                for line in lines:
                    console.print(line)
                return
        await asyncio.sleep(0.25)
    console.print("[yellow]no WeChat-paid bill has its invoice SMS yet[/]: see /ops → Messages, type invoice.issued")


async def _sms_outage(sms: SmsGatewaySimulator, lasting_s: float) -> None:
    sms.down = True
    console.print("[red]SMS gateway down[/] as the bills go out: the breaker opens, the bill SMS wait in their queue")
    try:
        await asyncio.sleep(lasting_s)
    finally:
        sms.down = False
    console.print("[green]SMS gateway back[/]: the breaker lets a trial through, the waiting SMS go out")


async def _incidents(vendor: VendorCloudSimulator, stop: asyncio.Event) -> None:
    rng = random.Random(11)
    tick = 0
    while not stop.is_set():
        await asyncio.sleep(1.0)
        tick += 1
        if tick % 10 == 5:
            meter = rng.randrange(vendor.meters)
            await vendor.push(vendor.alarm(meter, "leak"))
            console.print(f"[yellow]leak alarm[/] at meter {vendor.meter_id(meter)}: the core closes its valve, "
                          "asks for the holder's SMS and opens an emergency work order (/api/v1/work-orders)")
        if tick % 13 == 7:
            await vendor.push(b'{"event": "reading", "devId": "30000000000001", "seq": "oops"')
            console.print("[red]malformed push[/] from the vendor: refused with 400 and audited")
        if tick % 17 == 11:
            bad = vendor.reading()
            bad["totalLitres"] = "lots"
            await vendor.push(bad)
            console.print("[red]unmappable reading[/] (totalLitres is not a number): dead-lettered with its reason")


async def _report(hub: Hub, vendor: VendorCloudSimulator, sms: SmsGatewaySimulator, valves: ValvePlatformSimulator,
                  payer: PaymentChannelSimulator, tax: EInvoiceSimulator | RestTaxSimulator,
                  stop: asyncio.Event) -> None:
    while not stop.is_set():
        await asyncio.sleep(5.0)
        settled = {name: rt.pipeline.settled for name, rt in hub.runtimes.items()}
        breaker = hub.breakers.get("sms")
        state = breaker.state if breaker else "-"
        console.print(
            f"[dim]{time.strftime('%H:%M:%S')}[/] pushes {vendor.pushed:,}  readings "
            f"{settled.get('vendor-readings', 0):,}  SMS {len(sms.sent):,} (breaker {state})"
            f"  valves closed {len(valves.commands)}  payments {len(payer.sent):,}  invoices {len(tax.invoices):,}")


async def _drain(hub: Hub, *, within_s: float) -> None:
    """Wait (up to ``within_s``) until the flows in hand are done: the outbox empty, no route queue
    holding a message and no new audit hop, three times in a row (the in-memory transport's queues
    die with the process)."""
    from sqlalchemy import func, select

    from core import outbox
    from hub.store.tables import hop

    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    quiet, hops = 0, -1
    while loop.time() < deadline and quiet < 3:
        async with hub.db.read() as conn:
            pending = await outbox.pending_count(conn)
            now_hops = int(await conn.scalar(select(func.count()).select_from(hop)) or 0)
        depths = [(await rt.transport.queue_info(rt.route.queues.main)).messages for rt in hub.runtimes.values()]
        quiet = quiet + 1 if pending == 0 and not any(depths) and now_hops == hops else 0
        hops = now_hops
        await asyncio.sleep(0.15)
