"""A channel statement of 100,000 lines against 100,000 recorded payments: seconds to read the file and
to match and record it (target: seconds, not minutes).

    .venv/bin/python bench/reconcile.py [--lines 100000] [--database-url postgresql+asyncpg://…] [--sqlite]

It makes a fresh database (PostgreSQL by default, dropped afterwards; ``--sqlite`` for a file in a
temporary folder), records ``--lines`` WeChat payments paid on 26 November 2026 (plus a thousand refunds)
straight into ``core_payment``/``core_payment_refund`` (one account: the match does not look at accounts),
writes the day's trade bill with the simulator's writer (every 1,000th payment with another amount, 100
payments the core lacks, 100 recorded payments left out of the file), then times:

1. reading the file with the WeChat Pay parser;
2. ``core.reconciliation.import_statement`` in one transaction: the look-ups by transaction id, the
   day's payments and refunds, the match, the run and its discrepancies written (commit included);
3. the same file imported again (found by its hash: nothing written).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import asyncpg  # noqa: E402
from sqlalchemy import insert  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from connectors.payments.statements import PARSERS  # noqa: E402
from connectors.payments.statements.simulator import Trade, wechatpay_bill  # noqa: E402
from core.db.bulk import insert_many  # noqa: E402
from core.db.tables_accounts import account, customer, premises  # noqa: E402
from core.db.tables_payments import payment, refund  # noqa: E402
from core.reconciliation import STATEMENT_TZ, LineKind, import_statement  # noqa: E402
from hub.migrations import upgrade  # noqa: E402

DAY = date(2026, 11, 26)
T0 = datetime(2026, 11, 26, 0, 0, 1, tzinfo=STATEMENT_TZ)
NOW = datetime(2026, 11, 27, 1, tzinfo=UTC)
CHUNK = 20_000


async def seed(url: str, n: int) -> list[Trade]:
    engine = create_async_engine(url)
    trades: list[Trade] = []
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(customer).values(id="C1", name_enc="x", phone_enc="x", id_number_enc="x",
                                                       phone_bidx="p", id_number_bidx="i", created_at=NOW))
            await conn.execute(insert(premises).values(id="P1", address_enc="x", district="yuecheng", lat=30.0,
                                                       lon=120.58, created_at=NOW))
            await conn.execute(insert(account).values(
                id="ACC1", account_number="SX100000000001", category="residential", billing="postpaid",
                status="active", premises_id="P1", customer_id="C1", opened_at=NOW))
            rows = []
            for i in range(n):
                tx = f"42000{i:023d}"
                at = T0 + timedelta(seconds=(i * 86398) // n)
                amount = Decimal(100 + i % 9000) / 100
                rows.append({"id": f"P{i:031d}", "channel": "wechat", "transaction_id": tx, "out_trade_no": f"ACC1-{i}",
                             "account_id": "ACC1", "amount": amount, "refunded": Decimal("0.00"), "currency": "CNY",
                             "paid_at": at.astimezone(UTC), "status": "received", "message_id": f"m{i}",
                             "created_at": NOW})
                if i % 1000 == 500:  # left out of the statement
                    continue
                listed = amount + Decimal("0.01") if i % 1000 == 0 else amount
                trades.append(Trade(LineKind.PAYMENT, tx, listed, at, f"ACC1-{i}"))
            for start in range(0, n, CHUNK):
                await insert_many(conn, payment, rows[start:start + CHUNK])
            refunds = [{"id": f"R{i:031d}", "payment_id": f"P{i:031d}", "refund_id": f"503{i:020d}", "kind": "refund",
                        "amount": Decimal("0.50"), "from_credit": Decimal("0.50"), "from_bills": Decimal("0.00"),
                        "from_prepaid": Decimal("0.00"), "refunded_at": (T0 + timedelta(hours=20)).astimezone(UTC),
                        "red_serial": None, "message_id": f"r{i}", "created_at": NOW} for i in range(1, n, n // 1000)]
            await insert_many(conn, refund, refunds)
            trades += [Trade(LineKind.REFUND, f"42000{int(r['payment_id'][1:]):023d}", r["amount"],
                             T0 + timedelta(hours=20), "", r["refund_id"]) for r in refunds]
            trades += [Trade(LineKind.PAYMENT, f"43000{i:023d}", Decimal("9.99"), T0, f"X-{i}") for i in range(100)]
    finally:
        await engine.dispose()
    return trades


async def measure(url: str, n: int) -> None:
    await asyncio.to_thread(upgrade, url)
    started = time.perf_counter()
    trades = await seed(url, n)
    print(f"seeded {n:,} payments and {sum(t.kind is LineKind.REFUND for t in trades):,} refunds "
          f"in {time.perf_counter() - started:.1f} s")
    data = wechatpay_bill(trades)
    print(f"trade bill: {len(trades):,} lines, {len(data) / 1e6:.1f} MB")
    started = time.perf_counter()
    statement = PARSERS["wechatpay"](data, DAY, None)
    parsed = time.perf_counter() - started
    print(f"read:   {parsed:6.2f} s  ({len(statement.lines) / parsed:,.0f} lines/s)")
    engine = create_async_engine(url)
    try:
        digest = hashlib.sha256(data).hexdigest()
        started = time.perf_counter()
        async with engine.begin() as conn:
            done = await import_statement(conn, statement, statement_date=DAY, file_sha256=digest,
                                          file_name="bench.csv", by="bench", now=NOW)
        matched = time.perf_counter() - started
        print(f"import: {matched:6.2f} s  ({len(statement.lines) / matched:,.0f} lines/s): {done.matched:,} matched, "
              f"{done.discrepancies}")
        started = time.perf_counter()
        async with engine.begin() as conn:
            again = await import_statement(conn, statement, statement_date=DAY, file_sha256=digest,
                                           file_name="bench.csv", by="bench", now=NOW)
        assert not again.fresh
        print(f"again:  {time.perf_counter() - started:6.2f} s  (found by hash, nothing written)")
        print(f"total (read + import): {parsed + matched:.2f} s for {len(statement.lines):,} lines")
    finally:
        await engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--database-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres",
                        help="a PostgreSQL server to make the fresh database on")
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file instead")
    args = parser.parse_args()
    if args.sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            await measure(f"sqlite+aiosqlite:///{tmp}/bench.db", args.lines)
        return
    name = f"gh_recon_bench_{uuid.uuid4().hex[:8]}"
    admin = args.database_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    try:
        await measure(args.database_url.rsplit("/", 1)[0] + "/" + name, args.lines)
    finally:
        conn = await asyncpg.connect(admin)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
