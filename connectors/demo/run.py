"""``gashub demo``: the hub on its embedded default with a seeded city, partner simulators and traffic.

A day in the life of a gas company in Shaoxing, sped up:

1. a fresh database gets a small city (:mod:`connectors.demo.city`): accounts in the six districts,
   holders encrypted with the demo's key, a meter each and a year of monthly readings;
2. the meter vendor's cloud pushes live readings for its meters (now and then the same push twice,
   a malformed or an unmappable one), a leak alarm closes a valve through the meter platform; a fleet
   of simulated meters (:mod:`connectors.meters.fleet`, 1,000 by default: half behind DTUs speaking
   CJ/T 188 over TCP, half on a simulated CTWing) reports by itself, and after a short while one of
   its meters reports a leak: the demo follows it from the alarm to the valve-close frame on that
   meter's wire, the valve closed, the SMS requested and the emergency work order
   (:mod:`connectors.demo.fleet`);
3. the billing run bills the last full month with the shipped tariffs; each ``bill.issued`` becomes an
   SMS to the holder through a gateway that is down just then (its breaker opens, the SMS wait in
   their queue, then go out);
4. customers pay some bills through WeChat Pay and Alipay (:mod:`connectors.demo.payments`; some
   notifications twice). WeChat payments go over the wire (:mod:`connectors.demo.wechat`): a Native
   order through the WeChat Pay connector's signed client, the platform simulator's signed, encrypted
   notification to ``/partners/wechatpay/notify``; the Alipay ones are signed by the gateway simulator
   and POSTed to the hub's ``alipay`` connector. The core credits each payment once, settles bills
   oldest first and asks for an invoice, which the tax connector (:mod:`connectors.tax`) issues over
   SOAP from the e-invoicing simulator; the core stores it and texts the invoice number to the holder
   through the SMS gateway;
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
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from connectors.demo import report
from connectors.demo.city import Household, plan_city
from connectors.demo.fleet import LeakStory, fleet_of, fleet_routes, follow_leak, inject_later
from connectors.demo.payments import Deliver, Due, Notified, Payment, PaymentChannelSimulator
from connectors.demo.seed import Seeded, seed_city
from connectors.demo.wechat import DemoWeChat, WeChatPayer
from connectors.http_sms.simulator import SmsGatewaySimulator
from connectors.meters import DtuConnector
from connectors.meters.fleet import Fault, MeterFleet, parse_fault
from connectors.payments.alipay.simulator import AlipayGatewaySimulator, new_key, private_pem, public_pem
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
LEAK_AFTER_S = 1.5
"""Seconds of fleet traffic before one of its meters reports a leak."""
FLEET_REPORT_EVERY_S = 60.0
"""Each fleet meter reports by itself this often."""


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


DEMO_ALIPAY_APP_ID = "2021004100000001"


def alipay_connector(gateway: AlipayGatewaySimulator, app_private_key: str) -> dict[str, object]:
    """The demo's Alipay connector settings, for the gateway simulator that holds the app's public key."""
    return {"kind": "alipay", "app_id": gateway.app_id, "seller_id": gateway.seller_id,
            "app_private_key": app_private_key, "alipay_public_key": gateway.alipay_public_pem,
            "gateway_url": gateway.gateway_url}


def alipay_deliver(gateway: AlipayGatewaySimulator, notify_url: str) -> Deliver:
    """A paid bill as Alipay tells it: the gateway signs the trade's notification and POSTs it to the
    hub; the second notification of a trade says it is finished (same trade, credited once)."""
    async def deliver(payment: Payment, again: bool) -> None:
        paid_at = payment.paid_at.astimezone(COMPANY_TZ).strftime("%Y-%m-%d %H:%M:%S")
        trade = {"trade_no": payment.transaction_id, "out_trade_no": payment.out_trade_no,
                 "total_amount": f"{payment.amount:.2f}", "gmt_payment": paid_at, "gmt_create": paid_at,
                 "trade_status": "TRADE_FINISHED" if again else "TRADE_SUCCESS",
                 "buyer_user_id": payment.payer_ref, "subject": "燃气费"}
        status, answer = await gateway.send(notify_url, gateway.notification(trade, passback_params=payment.account_id))
        if answer != "success":
            console.print(f"[red]alipay notification not taken[/] ({status}): {answer[:120]}")

    return deliver


def demo_settings(*, database_url: str, http_port: int, ops_token: str, vendor_token: str, routes_dir: Path,
                  sms_url: str, valves_url: str, tax_url: str, tax: str = "soap",
                  tax_secret: str = "", wechatpay: dict[str, object] | None = None,
                  alipay: dict[str, object] | None = None, fleet: MeterFleet | None = None) -> Settings:
    connectors: dict[str, object] = {
        "vendor": {"kind": "vendor_push", "token": vendor_token},
        "sms": {"kind": "http_sms", "base_url": sms_url, "timeout_s": 2.0},
        "valves": {"kind": "valve_http", "base_url": valves_url},
        "tax": tax_connector(tax, tax_url, tax_secret),
    }
    if wechatpay is not None:
        connectors["wechatpay"] = wechatpay
    if alipay is not None:
        connectors["alipay"] = alipay
    if fleet is not None and fleet.layout.buses:
        connectors["meters"] = fleet.dtu_settings(port=0, request_timeout_s=2.0)
    if fleet is not None and fleet.layout.devices:
        connectors["ctwing"] = fleet.ctwing_settings(fleet.ctwing_url, command={"poll_every_s": 2.0})
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
                   database_url: str | None = None, accounts: int = 200, meters: int = 1000, dtus: int = 50,
                   ctwing: int = 500, faults: Sequence[str] = (), leak: bool = True, story: bool = True,
                   seed: int = 7) -> int:
    """The demo. ``accounts`` households report through the vendor's cloud, ``meters`` more are the
    fleet (``ctwing`` of them on CTWing, the rest on ``dtus`` DTUs); ``faults`` (``KIND:METER[@SECONDS]``)
    are injected into the fleet, and with ``leak`` one DTU meter reports a leak after ``LEAK_AFTER_S``.
    Without ``story`` there is no billing run and no payments (``gashub simulate fleet``)."""
    configure("WARNING", json=False)
    started = time.monotonic()
    today = datetime.now(COMPANY_TZ).date()
    try:
        city = plan_city(accounts + meters, today=today)
        fleet = fleet_of(city, first=accounts, dtus=dtus, ctwing=ctwing, seed=seed,
                         report_every_s=FLEET_REPORT_EVERY_S) if meters else None
        timetable = [parse_fault(f, fleet.meters if fleet else ()) for f in faults]
    except ValueError as exc:  # nothing is started or written before the options are known to be good
        console.print(f"[red]cannot run[/]: {exc}")
        return 2
    db_url = database_url or "sqlite+aiosqlite:///var/demo.db"
    if database_url is None:
        await asyncio.to_thread(_fresh_demo_database)
    tax_choice = os.environ.get("GASHUB_DEMO_TAX", "soap")
    if tax_choice not in TAX_CHOICES:
        console.print(f"[red]GASHUB_DEMO_TAX={tax_choice!r}[/]: choose one of {', '.join(TAX_CHOICES)}")
        return 2
    routes_dir = await asyncio.to_thread(demo_routes, Path("var") / "demo-routes")
    if fleet is not None:
        (routes_dir / "demo-fleet.toml").write_text(fleet_routes(fleet), encoding="utf-8")
    tax_secret = secrets.token_urlsafe(24)
    async with contextlib.AsyncExitStack() as cleanup:  # whatever fails, what was started is stopped
        tax: EInvoiceSimulator | RestTaxSimulator
        tax = EInvoiceSimulator() if tax_choice == "soap" else RestTaxSimulator(DEMO_APP_KEY, tax_secret)
        sms, valves = SmsGatewaySimulator(), ValvePlatformSimulator()
        wechat = DemoWeChat.create()
        app_key = await asyncio.to_thread(new_key)
        alipay = AlipayGatewaySimulator(app_id=DEMO_ALIPAY_APP_ID, app_public_key=public_pem(app_key))
        for simulator in (sms, valves, tax, wechat.platform, alipay):
            await simulator.start()
            cleanup.push_async_callback(simulator.aclose)
        http_port = port if port is not None else int(os.environ.get("GASHUB_HTTP_PORT", "8080"))
        base = f"http://127.0.0.1:{http_port}"
        if fleet is not None:
            cleanup.push_async_callback(fleet.stop)
            await fleet.start_platform(f"{base}/partners/ctwing/push")
        vendor_token = secrets.token_urlsafe(16)
        ops_token = os.environ.get("GASHUB_OPS__TOKEN") or secrets.token_urlsafe(18)
        settings = demo_settings(database_url=db_url, http_port=http_port, ops_token=ops_token,
                                 vendor_token=vendor_token, routes_dir=routes_dir, sms_url=sms.url,
                                 valves_url=valves.url, tax=tax_choice, tax_secret=tax_secret,
                                 tax_url=tax.endpoint, wechatpay=wechat.base_url_settings(),
                                 alipay=alipay_connector(alipay, private_pem(app_key)), fleet=fleet)
        hub = Hub.build(settings)
        await hub.start()
        cleanup.push_async_callback(hub.stop)
        assert hub.privacy is not None  # the demo configures a key
        stop = stop_on_signals()
        console.print(f"[bold green]gashub {'demo' if story else 'simulate fleet'}[/] running on the embedded default "
                      f"(SQLite {db_url.split('///')[-1]}, in-memory transport)")
        console.print(f"  health    {base}/health")
        console.print(f"  dashboard {base}/ops#token={ops_token}")
        console.print(f"            (or open {base}/ops and paste the token [bold]{ops_token}[/])")
        console.print(f"  metrics   {base}/metrics")
        console.print("  Ctrl-C stops it" + (f"; stopping by itself after {duration:g} s" if duration else ""))

        seeded = await _seed(hub, hub.privacy, city)
        console.print(report.city_table(seeded))
        console.print(f"  {seeded.readings:,} monthly readings loaded as a backfill (12 months up to "
                      f"{today:%Y-%m}-01); holders' names, phones and ID numbers stored encrypted with the demo's key")

        vendor = VendorCloudSimulator(f"{base}/partners/vendor-demo/push", vendor_token, meters=accounts,
                                      valves=valves.valves)
        vendor.start_from({home.meter_id: home.register_now for home in city[:accounts]})
        cleanup.push_async_callback(vendor.aclose)
        wechat_connector = hub.connectors["wechatpay"]
        assert isinstance(wechat_connector, WeChatPayConnector)
        payer = PaymentChannelSimulator(hub.publisher.publish,
                                        deliver={"alipay": alipay_deliver(alipay, f"{base}/partners/alipay/notify")})
        wechat_payer = WeChatPayer(wechat.platform, wechat_connector.client, f"{base}/partners/wechatpay/notify")
        payer.wechat = wechat_payer.pay
        tasks = [asyncio.create_task(_report(hub, vendor, sms, valves, payer, tax, stop, fleet), name="demo:report")]
        if accounts:
            tasks += [asyncio.create_task(vendor.run(rate, stop=stop), name="demo:readings"),
                      asyncio.create_task(_incidents(vendor, stop), name="demo:incidents")]
        if story:
            tasks.append(asyncio.create_task(_story(hub, hub.privacy, sms, payer, base, tax_choice, stop),
                                             name="demo:story"))
        leaks: list[LeakStory] = []
        if fleet is not None:
            dtu = hub.connectors.get("meters")
            await fleet.start("127.0.0.1", dtu.port if isinstance(dtu, DtuConnector) else None,
                              f"{base}/partners/ctwing/push")
            console.print(f"  fleet: {len(fleet.meters):,} meters report by themselves every "
                          f"{fleet.report_every_s:g} s: {len(fleet.layout.devices):,} through CTWing "
                          f"(/partners/ctwing/push), {len(fleet.meters) - len(fleet.layout.devices):,} on "
                          f"{len(fleet.layout.buses):,} DTUs (CJ/T 188 over TCP, port {fleet.dtu_port})")
            target = fleet.valve_route_split() or (min(fleet.meters) if fleet.layout.buses else None)
            if leak and target is not None and not any(f is Fault.LEAK for f, _, _ in timetable):
                timetable.append((Fault.LEAK, target, None))
            for fault, meter, after in timetable:
                if fault is Fault.LEAK:
                    leaks.append(LeakStory(meter, injected=0.0))
                    tasks.append(asyncio.create_task(_leak(hub, fleet, leaks[-1], after), name="demo:leak"))
                else:
                    tasks.append(asyncio.create_task(_fault(fleet, fault, meter, after), name="demo:fault"))
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
            if fleet is not None:  # the meters fall silent before the books are closed
                await fleet.stop()
        await _drain(hub, within_s=3.0)
        summary = await report.summary(
            hub, await report.tally(hub), sms_sent=len(sms.sent),
            bill_sms=sum(1 for s in sms.sent if s.get("template") == "SMS_BILL"),
            invoice_sms=sum(1 for s in sms.sent if s.get("template") == "SMS_INVOICE"),
            valves_closed=len(valves.commands), notified=len(payer.sent), repeated=len(payer.repeated),
            wechat_accepted=int(wechat_connector.health().extra["accepted"]), tax_issued=len(tax.invoices),
            tax_name=TAX_NAMES[tax_choice])
        if fleet is not None:
            summary += "\n" + report.fleet_lines(fleet, leaks)
    console.print(summary)
    return 0


async def _fault(fleet: MeterFleet, fault: Fault, meter: str, after: float | None) -> None:
    await inject_later(fleet, fault, meter, LEAK_AFTER_S if after is None else after)
    console.print(f"[yellow]fault[/] {fault.value} injected at fleet meter {meter} ({fleet.meters[meter].via})")


async def _leak(hub: Hub, fleet: MeterFleet, story: LeakStory, after: float | None) -> None:
    """One of the fleet's meters springs a leak; tell what follows, step by step."""
    story.injected = await inject_later(fleet, Fault.LEAK, story.meter_id, LEAK_AFTER_S if after is None else after)
    console.rule(f"leak at fleet meter {story.meter_id}")
    console.print(f"[yellow]leak[/] at meter {story.meter_id} ({fleet.meters[story.meter_id].via}): gas flows "
                  "without a pause, the meter raises its leak bit and reports at once")
    await follow_leak(hub, fleet, story, console)


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
    shown = {"first": 0, "twice": 0, "traced": 0}

    def told(n: Notified) -> None:
        first, twice = shown["first"] < 3, n.twice and shown["twice"] < 2
        if not (first or twice):
            return
        shown["first" if first else "twice"] += 1
        tail = " [yellow]notified twice[/]: the core credits it once" if n.twice else ""
        wire = "" if n.envelope is not None else (" (signed notification to the WeChat Pay connector)"
                                                  if n.payment.channel == "wechat" else
                                                  " (signed notification to the Alipay connector)")
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
                  stop: asyncio.Event, fleet: MeterFleet | None = None) -> None:
    while not stop.is_set():
        await asyncio.sleep(5.0)
        settled = {name: rt.pipeline.settled for name, rt in hub.runtimes.items()}
        breaker = hub.breakers.get("sms")
        state = breaker.state if breaker else "-"
        console.print(
            f"[dim]{time.strftime('%H:%M:%S')}[/] pushes {vendor.pushed:,}  readings "
            f"{settled.get('vendor-readings', 0):,}  SMS {len(sms.sent):,} (breaker {state})"
            f"  valves closed {len(valves.commands)}  payments {len(payer.sent):,}  invoices {len(tax.invoices):,}"
            + (f"  fleet reports {fleet.reports:,}" if fleet is not None else ""))


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
