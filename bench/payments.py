"""WeChat Pay notifications per second end to end, against the raw broker floor, in one run.

    .venv/bin/python bench/payments.py [-n 5000] [--rounds 1] [--concurrency 64]

(a) the raw floor: pika alone (``bench/raw_floor.py``: persistent messages, pipelined publisher
    confirms, a consumer with prefetch and batched acks, both at once), the better of one process and
    two, over the same number of messages;
(b) the payments pipeline: a ``gashub run`` process on RabbitMQ + PostgreSQL with the WeChat Pay
    connector and the production ``payments`` route. The benchmark POSTs genuine v3 notifications
    (each transaction encrypted with AES-256-GCM under the APIv3 key, signed SHA256withRSA with the
    platform key by ``wechatpayv3.utils.rsa_sign``, the platform SDK's own code; all built before the
    clock starts) to ``/partners/wechatpay/notify``, ``--concurrency`` at a time. Each one is verified
    and decrypted, deduplicated by transaction id, published with a broker confirm (only then the
    204), consumed by ``core:record_payment``, which credits the account and writes the invoice
    request (``core_invoice``) and its ``invoice.requested`` in the same transaction.

Timed from the first POST to the last invoice request written (``core_invoice`` counted every
0.1 s). The ``invoice.requested`` events go out through the outbox relay as in production; their
route here filters them out (``where`` never true) so that no tax platform is called: the figure is
payments in, not invoices issued. Prints both rates, ``ratio payments/raw: X.XX`` and the CPU each
process spent per payment. ``--rounds`` interleaves (raw, payments) rounds; the best of each is compared.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.hub_vs_raw import cpu_by_process, delete_topology, run_raw  # noqa: E402
from bench.meter_stack import RunningHub, free_port  # noqa: E402
from bench.pgdb import drop_database, fresh_database  # noqa: E402

MCHID = "1230000109"
APPID = "wxd678efh567hg6787"
API_V3_KEY = "0123456789abcdefABCDEF0123456789"
PUBLIC_KEY_ID = "PUB_KEY_ID_0114232134912410000000000000"
MERCHANT_SERIAL = "444F4864EA9B34415A7D5B8F2F4E5B6C7D8E9F01"
OPS_TOKEN = "bench-ops-token-0123456789"
ROUTES = """
[[route]]
name = "payments"
from = "payment.received"
to = "core:record_payment"
retry = { max_attempts = 5, backoff = ["1s"] }

[[route]]
name = "invoices-held"
description = "The benchmark issues no invoice: every request is filtered out here (no tax platform call)."
from = "invoice.requested"
where = "data.total < 0"
to = "tax:issue"
retry = { max_attempts = 3, backoff = ["1s"] }
"""
CONFIG = f"""# benchmark: the WeChat Pay connector and an (uncalled) tax connector
[connectors.wechatpay]
kind = "wechatpay"
mchid = "{MCHID}"
appid = "{APPID}"
merchant_serial_no = "{MERCHANT_SERIAL}"
timestamp_window_s = 3600

[connectors.tax]
kind = "tax"
provider = "soap"
endpoint = "http://127.0.0.1:9/einvoice"
seller_tax_id = "91330600MA2BENCH00"
"""


def notifications(account_ids: list[str], n: int, platform_key: Any) -> list[tuple[dict[str, str], bytes]]:
    """``n`` distinct paid transactions spread over the accounts, as the platform sends them."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from wechatpayv3.utils import rsa_sign

    aes = AESGCM(API_V3_KEY.encode())
    out = []
    stamp = str(int(time.time()))
    for i in range(n):
        account = account_ids[i % len(account_ids)]
        fen = 1000 + i % 9000
        txn = {"appid": APPID, "mchid": MCHID, "out_trade_no": f"BENCH{i:08d}", "attach": account,
               "transaction_id": f"4200{i:024d}", "trade_type": "NATIVE", "trade_state": "SUCCESS",
               "trade_state_desc": "支付成功", "bank_type": "OTHERS", "success_time": "2026-11-27T09:30:00+08:00",
               "payer": {"openid": f"oUpF8uBench{i:016d}"},
               "amount": {"total": fen, "payer_total": fen, "currency": "CNY", "payer_currency": "CNY"}}
        nonce = secrets.token_hex(6)
        cipher = aes.encrypt(nonce.encode(), json.dumps(txn).encode(), b"transaction")
        body = json.dumps({"id": f"EV-{i:010d}", "create_time": "2026-11-27T09:30:01+08:00",
                           "resource_type": "encrypt-resource", "event_type": "TRANSACTION.SUCCESS", "summary": "支付成功",
                           "resource": {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                                        "ciphertext": base64.b64encode(cipher).decode(),
                                        "associated_data": "transaction", "nonce": nonce}},
                          ensure_ascii=False).encode()
        sig_nonce = secrets.token_hex(16)
        signature = rsa_sign(platform_key, f"{stamp}\n{sig_nonce}\n{body.decode()}\n")
        out.append(({"Wechatpay-Timestamp": stamp, "Wechatpay-Nonce": sig_nonce, "Wechatpay-Signature": signature,
                     "Wechatpay-Serial": PUBLIC_KEY_ID, "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
                     "Content-Type": "application/json"}, body))
    return out


async def seed_accounts(url: str, key: str, count: int) -> list[str]:
    from sqlalchemy.ext.asyncio import create_async_engine

    from core.accounts import CustomerIn, PremisesIn, id_check_digit, open_account
    from hub.app import privacy_from
    from hub.settings import load_settings

    privacy = privacy_from(load_settings(database_url=url, core={"keys": {"bench": key}, "current_key": "bench"}))
    assert privacy is not None
    engine = create_async_engine(url)
    ids = []
    try:
        async with engine.begin() as conn:
            for i in range(count):
                view = await open_account(
                    conn, privacy, f"BENCH{i:06d}",
                    CustomerIn(name="王小明", phone=f"139{i:08d}",
                               id_number="33062119850615004" + id_check_digit("33062119850615004")),
                    PremisesIn(address=f"绍兴市越城区解放北路{i + 1}号", district="yuecheng", lat=30.0, lon=120.58),
                    "residential", "postpaid")
                ids.append(view.account_id)
    finally:
        await engine.dispose()
    return ids


@dataclass(frozen=True, slots=True)
class PaymentsHubConfig:
    """The payments hub as ``bench/meter_stack.py``'s :class:`RunningHub` starts it: its folder (``hub.log``
    goes there), its HTTP port and its environment."""

    workdir: Path
    http_port: int
    environment: dict[str, str]

    def env(self) -> dict[str, str]:
        return self.environment


async def post_all(url: str, requests: list[tuple[dict[str, str], bytes]], concurrency: int,
                   progress: Any) -> dict[int, int]:
    statuses: dict[int, int] = {}
    queue = iter(requests)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        async def worker() -> None:
            for headers, body in queue:
                async with http.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
                progress(1)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


async def run_payments(n: int, amqp: str, pg: str, workdir: Path, concurrency: int, accounts: int) -> dict[str, Any]:
    from connectors.payments.wechatpay.simulator import new_key, private_pem, public_pem
    from hub.migrations import upgrade_async

    url = await fresh_database(pg)
    suffix = uuid.uuid4().hex[:6]
    routes = workdir / "routes"
    routes.mkdir()
    (routes / "bench.toml").write_text(ROUTES)
    config = workdir / "bench.toml"
    config.write_text(CONFIG)
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    platform, merchant = new_key(), new_key()
    port = free_port()
    env = {**os.environ, "GASHUB_CONFIG": str(config), "GASHUB_DATABASE_URL": url, "GASHUB_AMQP_URL": amqp,
           "GASHUB_EXCHANGE": f"bench.{suffix}", "GASHUB_QUEUE_PREFIX": f"bench.{suffix}",
           "GASHUB_ROUTES_DIR": str(routes), "GASHUB_MAPPINGS_DIR": str(REPO / "mappings"),
           "GASHUB_LOG_LEVEL": "WARNING", "GASHUB_HTTP__PORT": str(port), "GASHUB_OPS__TOKEN": OPS_TOKEN,
           "GASHUB_CORE__KEYS__BENCH": key, "GASHUB_CORE__CURRENT_KEY": "bench",
           "GASHUB_CONNECTORS__WECHATPAY__API_V3_KEY": API_V3_KEY,
           "GASHUB_CONNECTORS__WECHATPAY__MERCHANT_PRIVATE_KEY": private_pem(merchant),
           f"GASHUB_CONNECTORS__WECHATPAY__PLATFORM_KEYS__{PUBLIC_KEY_ID}": public_pem(platform)}
    hub = RunningHub(PaymentsHubConfig(workdir, port, env))
    try:
        await upgrade_async(url)
        account_ids = await seed_accounts(url, key, accounts)
        print(f"  signing {n:,} notifications with wechatpayv3's rsa_sign ...", flush=True)
        requests = notifications(account_ids, n, platform)
        await hub.start(within=60.0)
        base = f"http://127.0.0.1:{port}"
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            posted = 0
            last_print = time.monotonic()

            def progress(k: int) -> None:
                nonlocal posted, last_print
                posted += k
                if posted == n or time.monotonic() - last_print >= 2.0:  # every 2 s, and at the end
                    last_print = time.monotonic()
                    print(f"    {posted:,} of {n:,} notifications answered", flush=True)

            pids = hub.pids
            cpu_before = cpu_by_process(pids)
            bench_cpu_before = time.process_time()
            started = time.time()
            statuses = await post_all(f"{base}/partners/wechatpay/notify", requests, concurrency, progress)
            answered = time.time()
            written = 0
            deadline = time.time() + 600
            while written < n:
                if not hub.alive():
                    raise RuntimeError(f"gashub run died; see {hub.log_path}")
                if time.time() > deadline:
                    raise RuntimeError(f"only {written:,} of {n:,} invoice requests after 10 minutes")
                written = int(await conn.fetchval("SELECT count(*) FROM core_invoice"))
                if written < n:
                    await asyncio.sleep(0.1)
            finished = time.time()
            cpu_after = cpu_by_process(pids)
            bench_cpu = time.process_time() - bench_cpu_before
            payments = int(await conn.fetchval("SELECT count(*) FROM core_payment"))
            credited = await conn.fetchval("SELECT coalesce(sum(amount), 0) FROM core_payment")
            stored = int(await conn.fetchval("SELECT count(*) FROM hub_message WHERE type = 'payment.received'"))
            invoices = int(await conn.fetchval("SELECT count(*) FROM core_invoice WHERE status = 'requested'"))
        finally:
            await conn.close()
        cpu_us = {k: (cpu_after[k] - cpu_before.get(k, 0.0)) / n * 1e6 for k in cpu_after}
        cpu_us["sender"] = bench_cpu / n * 1e6
        expected = sum(1000 + i % 9000 for i in range(n)) / 100
        return {"rate": n / (finished - started), "seconds": finished - started,
                "answer_rate": n / (answered - started), "statuses": statuses, "payments": payments,
                "credited_ok": float(credited) == expected, "stored": stored, "invoices": invoices, "cpu_us": cpu_us}
    finally:
        hub.stop()
        await drop_database(pg, url)
        delete_topology(amqp, f"bench.{suffix}", [
            f"bench.{suffix}.route.{name}{tail}" for name in ("payments", "invoices-held")
            for tail in ("", ".dlq", ".delay.1000")])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=5000, help="notifications (and raw messages) per measurement "
                                                           "(default 5,000)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved (raw, payments) rounds (default 1)")
    parser.add_argument("--concurrency", type=int, default=64, help="notifications in flight at once (default 64)")
    parser.add_argument("--accounts", type=int, default=200, help="accounts the payments go to (default 200)")
    parser.add_argument("--amqp", default=os.environ.get("GASHUB_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    parser.add_argument("--pg", default=os.environ.get("GASHUB_BENCH_DATABASE_URL",
                                                       "postgresql+asyncpg://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args(argv)
    n = args.n
    print(f"gashub payments benchmark: {n:,} WeChat Pay notifications per measurement, {args.concurrency} in "
          f"flight, {args.accounts} accounts, {args.rounds} round(s); load average {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPUs", flush=True)
    raws: list[float] = []
    pays: list[float] = []
    for round_no in range(1, args.rounds + 1):
        print(f"round {round_no}:", flush=True)
        raw = 0.0
        for mode in ("one-process", "two-processes"):
            rate, _ = run_raw(n, mode, args.amqp)
            print(f"  raw floor, pika, {mode}: {rate:>9,.0f} msg/s", flush=True)
            raw = max(raw, rate)
        with tempfile.TemporaryDirectory(prefix="gashub-bench-pay-") as tmp:
            result = asyncio.run(run_payments(n, args.amqp, args.pg, Path(tmp), args.concurrency, args.accounts))
        print(f"  payments (POST → verify + decrypt → broker → core credit → invoice request): "
              f"{result['rate']:>9,.0f} payments/s ({result['seconds']:.1f} s; all answered after "
              f"{n / result['answer_rate']:.1f} s)", flush=True)
        print("  CPU per payment (µs): " + ", ".join(f"{k} {v:.0f}" for k, v in result["cpu_us"].items())
              + " (rabbitmq and postgresql: every process of those servers on the machine, other work included)")
        print(f"  answers: {result['statuses']}; checks: {result['payments']:,} payments credited, "
              f"{result['stored']:,} payment.received stored, {result['invoices']:,} invoice requests written, "
              f"amounts {'match' if result['credited_ok'] else 'DO NOT MATCH'}")
        if not (result["statuses"] == {204: n} and result["payments"] == result["stored"] == result["invoices"] == n
                and result["credited_ok"]):
            print("  CHECK FAILED: every notification must be answered 204 and credited and invoiced exactly once")
            return 1
        print(f"  this round: ratio {result['rate'] / raw:.2f}", flush=True)
        raws.append(raw)
        pays.append(result["rate"])
    print(f"raw floor (best of {len(raws)}): {max(raws):,.0f} msg/s")
    print(f"payments (best of {len(pays)}): {max(pays):,.0f} payments/s")
    print(f"load average after the run: {os.getloadavg()[0]:.2f}")
    print(f"payments per 1,000 raw broker messages: {1000 * max(pays) / max(raws):.1f}")
    print(f"ratio payments/raw: {max(pays) / max(raws):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
