"""Fill a PostgreSQL database with a synthetic Shaoxing: N accounts (default 1,000,000), each with its
customer, premises, holder and status history, one meter and a year of monthly readings.

    export GASHUB_CORE__KEYS__BENCH=$(python -c "import secrets,base64;print(base64.b64encode(secrets.token_bytes(32)).decode())")
    export GASHUB_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/gashub_bench
    .venv/bin/python bench/gen_accounts.py -n 1000000 --seed 1 --recreate

The data (``bench/city.py``) depends only on the seed. Personal fields are encrypted with the core's
``FieldCipher`` under the key the hub would use (``GASHUB_CORE__KEYS__*`` / ``GASHUB_CORE__CURRENT_KEY``,
read through the hub's settings) and bound to the same table, column and row as the accounts
service binds them, with the same blind indexes; keep the key, or nothing can be read back. The
ciphertexts differ from run to run (a fresh random nonce per field, as it must be).

Rows go in with ``COPY``, one transaction per chunk of accounts, in the order of their
(time-ordered) ids, on a database migrated by the project's Alembic migrations; the tables are
analysed and vacuumed at the end so that the planner and index-only scans see them as they are.
Foreign keys are checked by PostgreSQL as usual unless ``--no-fk-checks`` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from rich.progress import ProgressColumn, Task
from rich.text import Text

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.city import CHUNK, IMPORT_AT, SeedAccount, chunk_accounts  # noqa: E402
from core.accounts import Privacy  # noqa: E402
from core.privacy import BlindIndex, FieldCipher, KeyRing, field_context  # noqa: E402

CUSTOMER, PREMISES = "core_customer", "core_premises"

TABLES: dict[str, tuple[str, ...]] = {
    "core_customer": ("id", "name_enc", "phone_enc", "id_number_enc", "address_enc", "phone_bidx",
                      "id_number_bidx", "created_at"),
    "core_premises": ("id", "address_enc", "district", "lat", "lon", "created_at"),
    "core_account": ("id", "account_number", "category", "subcategory", "billing", "status", "premises_id",
                     "customer_id", "opened_at"),
    "core_account_holder_history": ("id", "account_id", "customer_id", "valid_from"),
    "core_account_status_history": ("id", "account_id", "status", "effective_from", "reason"),
    "core_meter": ("id", "account_id", "model", "installed_at", "replace_by", "valve_state", "prepaid_balance"),
    "core_reading": ("id", "meter_id", "read_at", "volume_m3", "source", "quality", "message_id"),
}
"""What is loaded, in foreign-key order."""


@dataclass
class LoadStats:
    accounts: int = 0
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    seconds: float = 0.0
    generate_s: float = 0.0
    """CPU time the worker processes spent making and encrypting rows (beside the COPY)."""
    finish_s: float = 0.0
    """VACUUM ANALYZE at the end."""

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


SECOND_METER_SHARE = 4
"""A second meter's register is the first's divided by this (a water heater beside the kitchen)."""


def rows_for(accounts: Sequence[SeedAccount], privacy: Privacy, second_every: int = 0) -> dict[str, list[tuple[Any, ...]]]:
    """The table rows of ``accounts``, personal fields encrypted and indexed as ``core.accounts`` does.

    ``second_every = k`` gives every k-th account (index ``k-1``, ``2k-1``, …) a second meter (``W`` and the
    first meter's digits, model G1.6), read at the same times, its register a quarter of the first's: the
    billing run bills such an account on the two meters' sum."""
    enc = privacy.cipher.encrypt
    index = privacy.index
    out: dict[str, list[tuple[Any, ...]]] = {name: [] for name in TABLES}
    customers, places, accs = out["core_customer"], out["core_premises"], out["core_account"]
    holders, statuses, meters, readings = (out["core_account_holder_history"], out["core_account_status_history"],
                                           out["core_meter"], out["core_reading"])
    for a in accounts:
        cid, pid, p = a.customer_id, a.premises_id, a.person
        customers.append((
            cid,
            enc(p.name, context=field_context(CUSTOMER, "name", cid)),
            enc(p.phone, context=field_context(CUSTOMER, "phone", cid)),
            enc(p.id_number, context=field_context(CUSTOMER, "id_number", cid)),
            None if p.address is None else enc(p.address, context=field_context(CUSTOMER, "address", cid)),
            index.phone(p.phone),
            index.id_number(p.id_number),
            IMPORT_AT,
        ))
        places.append((pid, enc(a.premises_address, context=field_context(PREMISES, "address", pid)), a.district,
                       a.lat, a.lon, IMPORT_AT))
        accs.append((a.account_id, a.account_number, a.category, a.subcategory, a.billing, "active", pid, cid,
                     a.opened_at))
        holders.append((a.holder_row_id, a.account_id, cid, a.opened_at))
        statuses.append((a.status_row_id, a.account_id, "active", a.opened_at, "opened"))
        meters.append((a.meter_id, a.account_id, a.meter_model, a.installed_at, a.replace_by, "open",
                       a.prepaid_balance))
        mid = a.meter_id
        readings.extend((r.id, mid, r.read_at, r.volume_m3, r.source, "", r.id) for r in a.readings)
        if second_every and a.index % second_every == second_every - 1:
            wid = "W" + mid[1:]
            meters.append((wid, a.account_id, "G1.6", a.installed_at, a.replace_by, "open", Decimal("0.00")))
            readings.extend((r.id + "W", wid, r.read_at, Decimal(r.volume_milli // SECOND_METER_SHARE).scaleb(-3),
                             r.source, "", r.id + "W") for r in a.readings)
    return out


def asyncpg_dsn(url: str) -> str:
    """A ``postgresql+asyncpg://`` URL as asyncpg takes it."""
    if not url.startswith("postgresql"):
        raise SystemExit(f"the generator needs PostgreSQL (COPY); got {url.split('://')[0]}://…")
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def recreate_database(url: str) -> None:
    """Drop and create the database ``url`` names (connecting to the server's ``postgres`` database)."""
    base, name = url.rsplit("/", 1)
    name = name.split("?")[0]
    if not name.replace("_", "").isalnum():
        raise SystemExit(f"refusing to recreate database {name!r}: use a plain name such as gashub_bench")
    conn = await asyncpg.connect(asyncpg_dsn(base + "/postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


_WORKER_PRIVACY: list[Privacy] = []
"""In a generator process: the privacy bundle its initializer rebuilt from the key rings."""


def _init_worker(cipher_ring: KeyRing, index_ring: KeyRing) -> None:
    _WORKER_PRIVACY.append(Privacy(FieldCipher(cipher_ring), BlindIndex(index_ring)))


def _make_chunk(seed: int, chunk: int, n: int, second_every: int = 0) -> tuple[dict[str, list[tuple[Any, ...]]], float]:
    started = time.process_time()
    rows = rows_for(chunk_accounts(seed, chunk, 0, n), _WORKER_PRIVACY[0], second_every)
    return rows, time.process_time() - started


async def load(url: str, privacy: Privacy, n: int, seed: int, *, workers: int = 2, fk_checks: bool = True,
               progress: Callable[[int], None] | None = None, second_every: int = 0) -> LoadStats:
    """Make accounts ``0 … n-1`` in ``workers`` processes and COPY them into the (migrated, empty) database
    at ``url``, one transaction per chunk, in order; ``second_every``: see :func:`rows_for`."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    stats = LoadStats()
    started = time.perf_counter()
    try:
        existing = await conn.fetchval("SELECT count(*) FROM core_account")
        if existing:
            raise SystemExit(f"the database already has {existing:,} accounts: use --recreate for a fresh one")
        await conn.execute("SET synchronous_commit = off")  # a lost tail after a crash is re-generated
        if not fk_checks:
            await conn.execute("SET session_replication_role = replica")
        chunks = (n + CHUNK - 1) // CHUNK
        loop = asyncio.get_running_loop()
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker, initargs=(privacy.cipher.ring, privacy.index.ring)) as pool:
            # Chunks are made ahead in the worker processes while PostgreSQL takes the current one.
            ahead: deque[asyncio.Future[tuple[dict[str, list[tuple[Any, ...]]], float]]] = deque()
            submitted = 0
            for _ in range(chunks):
                while submitted < chunks and len(ahead) < workers + 1:
                    ahead.append(loop.run_in_executor(pool, _make_chunk, seed, submitted, n, second_every))
                    submitted += 1
                rows, spent = await ahead.popleft()
                stats.generate_s += spent
                async with conn.transaction():
                    for table, columns in TABLES.items():
                        await conn.copy_records_to_table(table, records=rows[table], columns=list(columns))
                        stats.rows[table] += len(rows[table])
                done = len(rows["core_account"])
                stats.accounts += done
                if progress is not None:
                    progress(done)
        stats.seconds = time.perf_counter() - started
        t0 = time.perf_counter()
        await conn.execute("VACUUM (ANALYZE) " + ", ".join(TABLES))
        stats.finish_s = time.perf_counter() - t0
    finally:
        await conn.close()
    return stats


class RateColumn(ProgressColumn):
    """Accounts per second so far."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f}/s", style="progress.data.speed")


def privacy_from_settings() -> Privacy:
    from hub.app import privacy_from
    from hub.settings import load_settings

    privacy = privacy_from(load_settings())
    if privacy is None:
        raise SystemExit(
            "no personal-data key: set GASHUB_CORE__KEYS__<id> to a base64 32-byte key, e.g.\n"
            "  export GASHUB_CORE__KEYS__BENCH=$(python -c \"import secrets,base64;"
            "print(base64.b64encode(secrets.token_bytes(32)).decode())\")\n"
            "and keep it set for bench/account_query.py (the data can only be read with it)")
    return privacy


def default_database_url() -> str | None:
    import os

    return os.environ.get("GASHUB_DATABASE_URL")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--accounts", type=int, default=1_000_000, help="accounts to make (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=1, help="the same seed makes the same city (default 1)")
    parser.add_argument("--database-url", default=default_database_url(),
                        help="postgresql+asyncpg://… (default: GASHUB_DATABASE_URL)")
    parser.add_argument("--recreate", action="store_true",
                        help="drop and create the database first (it must not be one you need)")
    parser.add_argument("--workers", type=int, default=2,
                        help="processes making and encrypting rows while this one copies (default 2)")
    parser.add_argument("--no-fk-checks", action="store_true",
                        help="load with session_replication_role=replica: PostgreSQL skips the foreign-key "
                             "triggers (the rows are consistent by construction); faster, needs a superuser")
    parser.add_argument("--second-meter-every", type=int, default=50, metavar="K",
                        help="every K-th account has a second meter (a water heater's; default 50, i.e. 2 %%; "
                             "0 for none): billed with the first on their sum")
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("give --database-url or set GASHUB_DATABASE_URL")
    if args.second_meter_every < 0:
        parser.error("--second-meter-every must be 0 (none) or more")
    if args.accounts < 1:
        parser.error("-n must be at least 1")
    privacy = privacy_from_settings()

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from hub.migrations import upgrade

    url = args.database_url
    if args.recreate:
        asyncio.run(recreate_database(url))
    upgrade(url)
    print(f"generating {args.accounts:,} accounts (seed {args.seed}) into {url.rsplit('@', 1)[-1]}")
    columns = (TextColumn("accounts"), BarColumn(), MofNCompleteColumn(), RateColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns) as bar:
        task = bar.add_task("accounts", total=args.accounts)
        stats = asyncio.run(load(url, privacy, args.accounts, args.seed, workers=args.workers, fk_checks=not args.no_fk_checks,
                                 progress=lambda k: bar.advance(task, k), second_every=args.second_meter_every))
    for table, count in stats.rows.items():
        print(f"  {table:<30} {count:>12,} rows")
    print(f"loaded {stats.total_rows:,} rows in {stats.seconds:.1f} s: {stats.total_rows / stats.seconds:,.0f} rows/s, "
          f"{stats.accounts / stats.seconds:,.0f} accounts/s")
    print(f"  making and encrypting rows: {stats.generate_s:.1f} s CPU in {args.workers} worker process(es), "
          f"{stats.generate_s / stats.accounts * 1e6:.0f} µs per account")
    print(f"  VACUUM ANALYZE: {stats.finish_s:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
