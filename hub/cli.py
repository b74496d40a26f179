"""``gashub``: run, scale, check and operate the hub from the command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hub import __version__
from hub.errors import ConfigError, HubError
from hub.process import run_fast, tune_gc
from hub.settings import Settings, load_settings
from hub.signals import stop_on_signals, stop_when_orphaned, wait_until_stopped

if TYPE_CHECKING:
    from hub.store.db import Database

EPILOG = """\
Settings come from GASHUB_* environment variables over config/gashub.toml (GASHUB_CONFIG names
another file). The common ones:
  GASHUB_DATABASE_URL   sqlite+aiosqlite:///var/gashub.db (default) or postgresql+asyncpg://…
  GASHUB_AMQP_URL       amqp://user:pass@host:5672/ ; unset = the in-memory transport
  GASHUB_HTTP_PORT      8080 by default
  GASHUB_OPS__TOKEN     bearer token for /ops (required to use the ops API)
"""


def _settings() -> Settings:
    return load_settings()


async def _require_migrated(db: object) -> None:
    """Stop with a clear message when the database has no gashub tables yet."""
    from sqlalchemy import inspect

    from hub.store.db import Database

    assert isinstance(db, Database)
    async with db.read() as conn:
        tables = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    if "hub_hop" not in tables:
        raise ConfigError(f"the database {db.url.split('@')[-1]} has no gashub tables: run `gashub db upgrade` first")


@contextlib.asynccontextmanager
async def _migrated_database(settings: Settings) -> AsyncIterator[Database]:
    """The hub's database for a command, checked to be migrated, closed on the way out."""
    from hub.store.db import Database

    db = Database(settings.database_url, pool_size=settings.database_pool_size)
    try:
        await _require_migrated(db)
        yield db
    finally:
        await db.aclose()


async def _serve(settings: Settings, role: str, duration: float | None = None, *, reuse_port: bool = False,
                 parent: int | None = None) -> int:
    """Run a hub process of ``role`` until a signal or ``duration`` (or, with ``parent``, until that
    process is gone). ``run`` and ``worker`` migrate the database at start; ``api`` only checks it is
    migrated (several API processes start at once)."""
    from hub.app import Hub, Role
    from hub.logs import configure

    configure(settings.log_level, json=settings.log_json)
    hub = Hub.build(settings)
    api = Role(role) is Role.API
    if api:
        await _require_migrated(hub.db)
    stop = stop_on_signals()
    await hub.start(Role(role), migrate=not api, reuse_port=reuse_port)
    tune_gc()
    orphaned = asyncio.get_running_loop().create_task(stop_when_orphaned(stop, parent)) if parent else None
    try:
        await wait_until_stopped(stop, duration)
    finally:
        if orphaned is not None:
            orphaned.cancel()
        await hub.stop()
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    return run_fast(_serve(_settings(), "run", args.duration))


def cmd_worker(args: argparse.Namespace) -> int:
    return run_fast(_serve(_settings(), "worker", args.duration))


def _api_process(duration: float | None, parent: int) -> None:
    """One of ``gashub api --processes N``'s children (spawned: a fresh interpreter, its own loop); it stops
    when the parent ``parent`` does, however the parent ended."""
    sys.exit(run_fast(_serve(_settings(), "api", duration, reuse_port=True, parent=parent)))


def cmd_api(args: argparse.Namespace) -> int:
    """Serve /api/v1 in ``--processes`` processes sharing the port (SO_REUSEPORT: the kernel spreads the
    connections). The parent checks the settings and the database once, starts the children, and stops
    them all on Ctrl-C / SIGTERM or when one of them dies (a supervisor — systemd, Kubernetes — restarts
    the whole group). A child whose parent is gone, even killed with SIGKILL, stops within a second or
    two: no orphan keeps a share of the port.

    Metrics: the children share their Prometheus metrics through a private directory the parent makes
    (0700) and names in ``PROMETHEUS_MULTIPROC_DIR`` before starting them, so that ``/metrics`` of any one
    answers for the group; the parent removes it when the group stops."""
    if args.processes < 1:
        raise ConfigError("--processes must be at least 1")
    if args.processes == 1:
        return run_fast(_serve(_settings(), "api", args.duration))
    import shutil
    import tempfile

    from hub.app import Hub

    async def check() -> None:  # fail here, once, rather than in every child
        hub = Hub.build(_settings())
        try:
            await _require_migrated(hub.db)
        finally:
            await hub.db.aclose()

    asyncio.run(check())
    metrics_dir = tempfile.mkdtemp(prefix="gashub-api-metrics-")  # mode 0700, fresh: no other run's values
    try:
        return _supervise_api(args, metrics_dir)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _supervise_api(args: argparse.Namespace, metrics_dir: str) -> int:
    import multiprocessing
    import signal

    from prometheus_client.multiprocess import mark_process_dead

    from hub.metrics import MULTIPROC_DIR_ENV

    ctx = multiprocessing.get_context("spawn")
    children = [ctx.Process(target=_api_process, args=(args.duration, os.getpid()), name=f"gashub-api-{n}",
                            daemon=False) for n in range(args.processes)]
    # Spawned children are fresh interpreters started with this environment: prometheus_client reads the
    # variable when a child first imports it, before any metric exists. This process keeps its own.
    previous = os.environ.get(MULTIPROC_DIR_ENV)
    os.environ[MULTIPROC_DIR_ENV] = metrics_dir
    try:
        for child in children:
            child.start()
    finally:
        if previous is None:
            del os.environ[MULTIPROC_DIR_ENV]
        else:
            os.environ[MULTIPROC_DIR_ENV] = previous
    stopping = False
    dead: set[int] = set()

    def stop_all(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.is_alive() and child.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    print(f"gashub api: {args.processes} processes on port {_settings().http.port}", file=sys.stderr)
    while any(child.is_alive() for child in children):
        for child in children:
            child.join(0.5)
            if not child.is_alive() and child.pid is not None and child.pid not in dead:
                dead.add(child.pid)
                mark_process_dead(child.pid, metrics_dir)  # type: ignore[no-untyped-call]  # drops its live gauges
            if not child.is_alive() and not stopping:
                print(f"gashub api: {child.name} exited with code {child.exitcode}; stopping the others",
                      file=sys.stderr)
                stop_all(signal.SIGTERM, None)
    failed = [c.exitcode for c in children if c.exitcode not in (0, -signal.SIGTERM)]
    return 1 if failed else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from hub.demo import run_demo

    return asyncio.run(run_demo(duration=args.duration, port=args.port, rate=args.rate, accounts=args.accounts,
                                meters=args.meters, dtus=args.dtus, ctwing=args.ctwing, faults=args.fault,
                                seed=args.seed))


def cmd_simulate_fleet(args: argparse.Namespace) -> int:
    from hub.demo import run_demo

    return asyncio.run(run_demo(duration=args.duration, port=args.port, accounts=0, meters=args.meters,
                                dtus=args.dtus, ctwing=args.ctwing, faults=args.fault, seed=args.seed,
                                leak=False, story=False))


def _fleet_size(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of meters") from None
    if not 0 <= n <= 200_000:
        raise argparse.ArgumentTypeError(f"{n} meters: the fleet has 0-200000")
    return n


def _fleet_options(p: argparse.ArgumentParser, *, meters: int) -> None:
    p.add_argument("--meters", type=_fleet_size, default=meters, metavar="N",
                   help=f"meters in the simulated fleet, each also an account in the seeded city (default {meters:,})")
    p.add_argument("--dtus", type=int, default=50, metavar="N",
                   help="DTUs the fleet's non-CTWing meters hang behind, several to a bus (default 50)")
    p.add_argument("--ctwing", type=int, default=500, metavar="N",
                   help="fleet meters reporting through the simulated CTWing platform (default 500)")
    p.add_argument("--fault", action="append", default=[], metavar="KIND:METER[@SECONDS]",
                   help="inject a fault into a fleet meter (repeatable): KIND is leak, low_battery, tamper, garble "
                        "or silence; METER a 14-digit meter id, M123 or 123; SECONDS after the fleet starts "
                        "(default 1.5), e.g. --fault leak:M1200@10")
    p.add_argument("--seed", type=int, default=7, help="seed of the fleet's use and phases (default 7)")


def _city_size(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of accounts") from None
    if not 1 <= n <= 10_000:
        raise argparse.ArgumentTypeError(f"{n} accounts: the demo city has 1-10000")
    return n


def cmd_check(args: argparse.Namespace) -> int:
    from hub.app import check_configuration

    settings = _settings()
    problems = check_configuration(settings)
    if problems:
        print(f"gashub check: {len(problems)} problem(s)\n", file=sys.stderr)
        for p in problems:
            print(f"  ✗ {p}", file=sys.stderr)
        print("\nFix these in routes/, mappings/ or config/ and run `gashub check` again.", file=sys.stderr)
        return 1
    from core.catalogue import CATALOGUE
    from hub.mapping import load_mappings
    from hub.routing.loader import read_specs

    specs, _ = read_specs(settings.routes_dir)
    mappings = load_mappings(settings.mappings_dir)
    print(f"gashub check: OK — {len(specs)} routes, {len(list(mappings))} mappings, "
          f"{len(CATALOGUE)} message types, {len(settings.connectors)} connectors")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from hub.migrations import upgrade
    from hub.store.db import Database
    from hub.tariffs import seed_tariffs

    settings = _settings()
    upgrade(settings.database_url, args.revision)
    print(f"database {settings.redacted_database_url()} is at revision {args.revision}")
    if args.revision != "head":
        return 0

    async def seed() -> None:
        db = Database(settings.database_url)
        try:
            added = await seed_tariffs(db, settings.billing.tariffs_file)
        finally:
            await db.aclose()
        if added is not None:
            print(f"tariffs: {len(added.added)} versions imported from {settings.billing.tariffs_file} "
                  "(the database had none)")

    asyncio.run(seed())
    return 0


def cmd_tariffs_import(args: argparse.Namespace) -> int:
    """Add the file's tariff versions that the database does not have yet."""
    from core.errors import CoreError
    from hub.tariffs import cli_actor, import_tariffs

    settings = _settings()
    path = Path(args.file) if args.file else settings.billing.tariffs_file

    async def main() -> int:
        try:
            async with _migrated_database(settings) as db:
                added = await import_tariffs(db, path, by=cli_actor())
        except CoreError as exc:
            print(f"{path}: nothing imported: {exc}", file=sys.stderr)
            return 1
        for v in added.added:
            print(f"added {v.name}")
        print(f"{path}: {len(added.added)} versions added, {len(added.unchanged)} stored already")
        return 0

    return asyncio.run(main())


def cmd_tariffs_list(args: argparse.Namespace) -> int:
    """The stored tariff versions, the one in force today marked."""
    from datetime import UTC, datetime

    from core.tariffs import list_versions, prices_in_words

    settings = _settings()

    async def main() -> int:
        async with _migrated_database(settings) as db, db.read() as conn:
            listed = await list_versions(conn, now=datetime.now(UTC))
        if not listed:
            print("no tariff versions: import some with `gashub tariffs import FILE`")
            return 0
        for item in listed:
            v, t = item.stored, item.stored.tariff
            print(f"{item.state.value:<8} {t.category:<12} {t.effective_from}  {t.version:<16} #{v.id:<4} "
                  f"{prices_in_words(t)}; added {v.created_at:%Y-%m-%d %H:%M} UTC by {v.created_by}"
                  + (f" — {v.note}" if v.note else ""))
        return 0

    return asyncio.run(main())


def cmd_reconcile_import(args: argparse.Namespace) -> int:
    """Import a channel's daily statement (a file, or downloaded) and report what does not match the core."""
    from datetime import date

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from core.errors import CoreError
    from hub.reconcile import MAX_FILE_BYTES, download, import_bytes, summary
    from hub.tariffs import cli_actor

    try:
        day = date.fromisoformat(args.date)
    except ValueError:
        print(f"--date must be a day like 2026-11-26, got {args.date!r}", file=sys.stderr)
        return 2
    if (args.file is None) == (args.url is None):
        print("give the statement FILE or --url to download it from (one of the two)", file=sys.stderr)
        return 2
    settings = _settings()

    async def main() -> int:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        source = args.file or args.url
        try:
            async with _migrated_database(settings) as db:
                if args.url:
                    data, name = await download(args.url)
                else:
                    path = Path(args.file)
                    if (await asyncio.to_thread(path.stat)).st_size > MAX_FILE_BYTES:
                        print(f"{path}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; not a daily statement",
                              file=sys.stderr)
                        return 1
                    data, name = await asyncio.to_thread(path.read_bytes), path.name
                total = data.count(b"\n")
                with Progress(*columns, transient=True, disable=args.quiet or not sys.stderr.isatty()) as bar:
                    task = bar.add_task("reading", total=max(total, 1))
                    done = await import_bytes(
                        db, args.channel, day, data, name, by=cli_actor(),
                        on_lines=lambda n: bar.update(task, completed=n),
                        on_stage=lambda text: bar.update(task, description=text, completed=total))
        except OSError as exc:
            print(f"{source}: {exc.strerror}", file=sys.stderr)
            return 1
        except CoreError as exc:
            print(f"{source}: nothing imported: {exc}", file=sys.stderr)
            return 1
        print("\n".join(summary(done, args.channel, day)))
        return 0

    return asyncio.run(main())


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from sqlalchemy import func, select

    from hub.store.audit import verify_chain
    from hub.store.tables import hop

    settings = _settings()

    async def main() -> int:
        async with _migrated_database(settings) as db, db.read() as conn:
            total = int(await conn.scalar(select(func.count()).select_from(hop)) or 0)
            with Progress(TextColumn("verifying audit chain"), BarColumn(), MofNCompleteColumn(),
                          TimeRemainingColumn(), transient=True, disable=not sys.stderr.isatty()) as bar:
                task = bar.add_task("verify", total=total)
                result = await verify_chain(conn, progress=lambda n: bar.advance(task, n))
        if result.ok:
            print(f"audit chain intact: {result.checked:,} hops verified")
            return 0
        print(f"audit chain BROKEN at hop {result.first_bad_seq}: {result.problem} "
              f"({result.checked:,} hops verified before it)", file=sys.stderr)
        return 2

    return asyncio.run(main())


def cmd_replay(args: argparse.Namespace) -> int:
    from hub.app import Hub
    from hub.ops.replay import ReplayRefused, ReplayRequest, replay

    settings = _settings()
    if not settings.uses_broker and not args.dry_run:
        print("cannot replay from the command line on the in-memory transport: the running hub's queues live "
              "inside its own process. Use the dashboard or POST /ops/dead-letters/<id>/replay on the running "
              "hub (or set GASHUB_AMQP_URL when the hub runs on RabbitMQ).", file=sys.stderr)
        return 1

    async def main() -> int:
        hub = Hub.build(settings)
        transport = next(iter(hub.transports.values()))
        try:
            await _require_migrated(hub.db)
            await transport.connect()
            await transport.declare(hub.topology())
            result = await replay(
                ReplayRequest(args.dead_letter_id, args.mapping_version, args.dry_run, actor="cli"),
                db=hub.db, routes={r.name: r for r in hub.routes}, transport=transport, mappings=hub.mappings,
                exchange=settings.exchange)
        except ReplayRefused as exc:
            print(f"cannot replay: {exc}", file=sys.stderr)
            return 1
        finally:
            await transport.aclose()
            await hub.db.aclose()
        print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
        return 0

    return asyncio.run(main())


def cmd_users_add(args: argparse.Namespace) -> int:
    """Create an API user and print a generated password once."""
    import secrets

    from sqlalchemy import select

    from core.api.permissions import Role
    from core.api.users import create_user
    from core.db.tables_api import api_user

    settings = _settings()
    password = secrets.token_urlsafe(18)

    async def main() -> int:
        async with _migrated_database(settings) as db:
            async with db.read() as conn:
                taken = await conn.scalar(select(api_user.c.id).where(api_user.c.username == args.username))
            if taken is not None:
                print(f"a user named {args.username!r} exists already: choose another name", file=sys.stderr)
                return 1
            user_id = await create_user(db.engine, args.username, password, Role(args.role))
        print(f"user {args.username} ({args.role}) created with id {user_id}")
        print(f"password (shown once, store it now): {password}")
        print("get a token: POST /api/v1/auth/token with {\"username\": …, \"password\": …}")
        return 0

    return asyncio.run(main())


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    """Re-encrypt personal data under the current key and rebuild blind indexes with it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from core.accounts.rotation import count_rows, rotate_keys
    from hub.app import privacy_from

    settings = _settings()
    privacy = privacy_from(settings)
    if privacy is None:
        print("no key configured: set GASHUB_CORE__KEYS__<id> for every key in use and "
              "GASHUB_CORE__CURRENT_KEY to the new one (see docs/operations.md, 'Rotating keys')", file=sys.stderr)
        return 1

    async def main() -> int:
        async with _migrated_database(settings) as db:
            async with db.read() as conn:
                total = await count_rows(conn)
            with Progress(TextColumn("rotating to key " + privacy.cipher.ring.current), BarColumn(),
                          MofNCompleteColumn(), TimeRemainingColumn(), transient=True,
                          disable=not sys.stderr.isatty()) as bar:
                task = bar.add_task("rotate", total=total)
                reports = await rotate_keys(db.begin, privacy, chunk=args.chunk, dry_run=args.dry_run,
                                            progress=lambda n: bar.advance(task, n))
        verb = "would re-encrypt" if args.dry_run else "re-encrypted"
        for r in reports:
            print(f"{r.table}: {r.rows:,} rows, {verb} {r.reencrypted:,}, blind indexes rebuilt {r.reindexed:,}")
        left = sum(r.changed for r in reports)
        if args.dry_run:
            print(f"dry run: {left:,} rows would change; nothing was written")
        elif left == 0:
            print(f"every row is under key {privacy.cipher.ring.current}: older keys may now be removed")
        else:
            print("done; run it once more to confirm nothing is left before removing older keys")
        return 0

    return asyncio.run(main())


def cmd_billing_run(args: argparse.Namespace) -> int:
    """Bill every active metered account for one month."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from sqlalchemy import func, select

    from core.db.tables_accounts import account
    from hub.billing import bill_in_parallel, month_period, summary
    from hub.tariffs import current_book

    settings = _settings()
    try:
        start, end = month_period(args.month)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2

    async def main() -> int:
        async with _migrated_database(settings) as db:
            book = await current_book(db)
            if not book.versions:
                print("the database has no tariffs: import them with `gashub tariffs import FILE`", file=sys.stderr)
                return 1
            async with db.read() as conn:
                total = int(await conn.scalar(
                    select(func.count()).select_from(account).where(account.c.status == "active")) or 0)
            with Progress(TextColumn(f"billing {start:%Y-%m}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), transient=True, disable=not sys.stderr.isatty()) as bar:
                task = bar.add_task("bill", total=total)
                result = await bill_in_parallel(db, book, start, end, workers=args.workers,
                                                progress=lambda seen: bar.update(task, completed=seen))
        print("\n".join(summary(result)))
        if result.bills_issued:
            print("bill.issued events are in the outbox: a running hub sends them on (bill-notify → SMS)")
        return 0

    return run_fast(main())


def cmd_readings_check(args: argparse.Namespace) -> int:
    """Run the daily reading checks now (stale meters, zero use, prolonged estimation)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hub.readings import CHECKS, check_readings, summary

    settings = _settings()

    async def main() -> int:
        async with _migrated_database(settings) as db:
            with Progress(TextColumn("reading checks"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("{task.description}"), TimeElapsedColumn(), transient=True,
                          disable=not sys.stderr.isatty()) as bar:
                task = bar.add_task(CHECKS[0].value, total=len(CHECKS))
                done: list[str] = []

                def progress(rule: object, _result: object) -> None:
                    done.append(str(rule))
                    following = CHECKS[len(done)].value if len(done) < len(CHECKS) else "done"
                    bar.update(task, completed=len(done), description=following)

                result = await check_readings(db, settings.core.readings, progress=progress)
        print("\n".join(summary(result)))
        if result.total_recorded and settings.core.readings.request_work_orders:
            print("work_order.requested events are in the outbox: a running hub sends them on")
        return 0

    return asyncio.run(main())


def cmd_schema(args: argparse.Namespace) -> int:
    from core.catalogue import CATALOGUE
    from hub.schema import asyncapi, json_schemas

    if args.list:
        for entry in sorted(CATALOGUE.values(), key=lambda e: (e.type, e.version)):
            print(f"{entry.type:<26} v{entry.version}  {entry.lane:<7} {entry.summary}")
        return 0
    docs: dict[str, object] = {"asyncapi.json": asyncapi(CATALOGUE)} if args.asyncapi else {}
    if not args.asyncapi or args.out:
        docs.update(json_schemas(CATALOGUE))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name, doc in docs.items():
            (out / name).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {len(docs)} files to {out}/")
        return 0
    if args.asyncapi:
        print(json.dumps(docs["asyncapi.json"], indent=2, ensure_ascii=False))
        return 0
    if args.type:
        matches = {k: v for k, v in docs.items() if k.startswith(args.type + ".v")}
        if not matches:
            print(f"no message type {args.type!r}; `gashub schema --list` shows them", file=sys.stderr)
            return 1
        docs = matches
    print(json.dumps(docs, indent=2, ensure_ascii=False))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import runpy

    script = Path("bench") / "hub_vs_raw.py"
    if not script.is_file():
        print("bench/hub_vs_raw.py not found: run `gashub bench` from the project folder", file=sys.stderr)
        return 1
    sys.argv = [str(script), *args.bench_args]
    runpy.run_path(str(script), run_name="__main__")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gashub", description="Integration hub for piped-gas companies.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"gashub {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(fn=fn)
        return p

    p = add("run", cmd_run, "Run the hub: HTTP (ops, partners), route consumers, outbox relay, scheduler.")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this many seconds")
    p = add("worker", cmd_worker, "Run route consumers only (scale out beside RabbitMQ and PostgreSQL).")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this many seconds")
    p = add("api", cmd_api, "Serve the REST API (/api/v1, /health, /ready, /metrics) only, in one or more processes "
            "sharing the port; no broker, no consumers (run it beside `gashub run`, on another GASHUB_HTTP__PORT).")
    p.add_argument("--processes", type=int, default=1, metavar="N",
                   help="processes sharing the port (SO_REUSEPORT); about one per core (default 1)")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this many seconds")
    p = add("demo", cmd_demo, "Run the hub on the embedded default with a seeded city, partner simulators and sample "
            "traffic.")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this many seconds (default: Ctrl-C)")
    p.add_argument("--port", type=int, default=None, help="HTTP port (default 8080 or GASHUB_HTTP_PORT)")
    p.add_argument("--rate", type=float, default=20.0, help="meter readings per second to simulate (default 20)")
    p.add_argument("--accounts", type=_city_size, default=200, metavar="N",
                   help="accounts whose readings the vendor's cloud pushes, 1-10000 (default 200)")
    _fleet_options(p, meters=1000)
    p = add("simulate", lambda a: 2, "Simulate partners against a hub of their own.")
    simsub = p.add_subparsers(dest="simulate_command", required=True, metavar="WHAT")
    fl = simsub.add_parser(
        "fleet", help="A fleet of smart meters behind DTUs and CTWing reporting to the hub, with faults.",
        description="Seed a city whose meters are the fleet's (accounts, holders, a year of readings; a progress "
                    "bar while it takes), start the hub on the embedded default with its DTU server and CTWing "
                    "endpoint, and let the meters report by themselves: realistic household use (morning and "
                    "evening peaks, seasons, days away), CJ/T 188 over TCP through the DTUs, pushes through a "
                    "simulated CTWing. Faults are injected on a timetable and the hub's answer shows in /ops. "
                    "Meter ids are 30 followed by the meter's number in 12 digits (M123 = 30000000000123).",
        epilog="example: gashub simulate fleet --meters 1000 --dtus 50 --ctwing 500 --fault leak:M123@10 "
               "--fault garble:M700 --duration 60")
    fl.set_defaults(fn=cmd_simulate_fleet)
    fl.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this many seconds (default: Ctrl-C)")
    fl.add_argument("--port", type=int, default=None, help="HTTP port (default 8080 or GASHUB_HTTP_PORT)")
    _fleet_options(fl, meters=1000)
    add("check", cmd_check, "Validate settings, routes and mappings without connecting to anything.")
    p = add("db", lambda a: 2, "Database tasks.")
    dbsub = p.add_subparsers(dest="db_command", required=True, metavar="TASK")
    up = dbsub.add_parser("upgrade", help="Apply migrations (idempotent).",
                          description="Apply the migrations: bring the database (GASHUB_DATABASE_URL) to "
                          "the latest schema, and import the tariff file (billing.tariffs_file) into a database "
                          "that has no tariff yet. Safe to run again: it does nothing when the database is up to "
                          "date.",
                          epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(fn=cmd_db_upgrade)
    p = add("audit", lambda a: 2, "Audit trail tasks.")
    asub = p.add_subparsers(dest="audit_command", required=True, metavar="TASK")
    asub.add_parser(
        "verify", help="Check the hop hash chain; exit 0 if intact, 2 naming the first bad hop.",
        description="Recompute the audit hash chain of every hop in GASHUB_DATABASE_URL. Exits 0 when it is "
        "intact and 2 naming the first hop that was edited, is missing, or was deleted at the end.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    ).set_defaults(fn=cmd_audit_verify)
    p = add("replay", cmd_replay, "Replay a dead letter into its route (once).")
    p.add_argument("dead_letter_id")
    p.add_argument("--mapping-version", type=int, help="run it through this version of the route's mapping")
    p.add_argument("--dry-run", action="store_true", help="show the field-by-field difference; publish nothing")
    p = add("users", lambda a: 2, "API users (/api/v1).")
    usub = p.add_subparsers(dest="users_command", required=True, metavar="TASK")
    ua = usub.add_parser("add", help="Create an API user with a role; prints a generated password once.",
                         description="Create a user of the normalised API (/api/v1) with one role "
                         "(see docs/permissions.md). The password is generated and shown once.",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ua.add_argument("username")
    ua.add_argument("--role", required=True, choices=["admin", "customer_service", "dispatcher", "field_engineer",
                                                      "auditor", "government"])
    ua.set_defaults(fn=cmd_users_add)
    p = add("keys", lambda a: 2, "Keys of the personal data at rest.")
    ksub = p.add_subparsers(dest="keys_command", required=True, metavar="TASK")
    kr = ksub.add_parser(
        "rotate", help="Re-encrypt personal data under the current key; rebuild blind indexes.",
        description="Re-encrypt every encrypted field (customers, premises, invoices) under "
        "GASHUB_CORE__CURRENT_KEY and rebuild the phone and ID-number blind indexes with it, in chunks that "
        "commit one by one (safe to stop "
        "and run again). Keep the old key in GASHUB_CORE__KEYS__<id> until a run reports nothing left.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    kr.add_argument("--dry-run", action="store_true", help="count what would change; write nothing")
    kr.add_argument("--chunk", type=int, default=1000, help="rows per transaction (default 1000)")
    kr.set_defaults(fn=cmd_keys_rotate)
    p = add("tariffs", lambda a: 2, "The tariff book in the database (versions by effective date, append-only).")
    tsub = p.add_subparsers(dest="tariffs_command", required=True, metavar="TASK")
    ti = tsub.add_parser(
        "import", help="Add a tariff file's versions that the database does not have (idempotent).",
        description="Read a tariff file (TOML, as config/tariffs.toml) and add its versions that are not stored "
        "yet. Versions stored already with the same content add nothing, so importing a file twice is safe. A "
        "version stored with other content, or a new one dated on a day a stored version already prices, refuses "
        "the whole import, naming the version: a price change is a new version from a later date.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ti.add_argument("file", nargs="?", help="the tariff file (default billing.tariffs_file)")
    ti.set_defaults(fn=cmd_tariffs_import)
    tsub.add_parser("list", help="List the stored tariff versions; the one in force today is 'current'.",
                    description="List every stored tariff version by category and date: past, current (in force "
                    "today, Asia/Shanghai) or future, with who added it.", epilog=EPILOG,
                    formatter_class=argparse.RawDescriptionHelpFormatter).set_defaults(fn=cmd_tariffs_list)
    p = add("reconcile", lambda a: 2, "Reconcile the payment channels' daily statements with the core's payments.")
    rsub = p.add_subparsers(dest="reconcile_command", required=True, metavar="TASK")
    ri = rsub.add_parser(
        "import", help="Import a channel's daily statement file and list what does not match (idempotent).",
        description="Read one payment channel's statement of one day and match it against the payments and "
        "refunds the core recorded: payments the core lacks (missing_in_core), payments of that day the statement "
        "lacks (missing_in_statement), lines listed twice (duplicated), other amounts (amount_mismatch) and "
        "refunds or reversals on one side only (status_mismatch). The run and its discrepancies are stored; "
        "operators resolve them through /api/v1/reconciliation or see them on the ops page. Importing the same "
        "file again (same SHA-256) writes nothing.\n\nFormats: wechatpay = WeChat Pay's trade bill (CSV, "
        "bill_type=ALL, plain or gzip); alipay = Alipay's trade details (业务明细, the zip or its GBK CSV); "
        "unionpay = UnionPay's ZM file (INN…ZM_<merId>, or the zip); ecny = the e-CNY bank adapter's "
        "reconciliation file (CSV with a checked footer; each bank has its own, see "
        "connectors/payments/statements/ecny.py).",
        epilog="examples:\n  gashub reconcile import --channel wechatpay --date 2026-11-26 tradebill-20261126.csv\n"
        "  gashub reconcile import --channel alipay --date 2026-11-26 --url 'https://dwbillcenter.alipay.com/…'\n\n"
        + EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ri.add_argument("--channel", required=True, choices=["wechatpay", "alipay", "unionpay", "ecny"],
                    help="the statement's format (its channel)")
    ri.add_argument("--date", required=True, metavar="YYYY-MM-DD", help="the day the statement covers (Beijing)")
    ri.add_argument("--quiet", action="store_true", help="no progress bar")
    ri.add_argument("--url", help="download the statement from this address instead of reading FILE (e.g. the "
                    "short-lived bill_download_url Alipay answers; read at most 512 MiB)")
    ri.add_argument("file", nargs="?", help="the statement file as downloaded")
    ri.set_defaults(fn=cmd_reconcile_import)
    p = add("billing", lambda a: 2, "Billing runs (with the tariff book in the database).")
    bsub = p.add_subparsers(dest="billing_command", required=True, metavar="TASK")
    br = bsub.add_parser(
        "run", help="Bill every active metered account for a month (idempotent).",
        description="Bill every active metered account for one calendar month, from each meter's last "
        "readings at or before the month's start and end (local midnight), with the tariffs in force. "
        "Safe to run again: accounts billed already are left alone, accounts skipped for a missing reading are "
        "billed once it arrives. The hub "
        "runs this every day for the month before (billing.daily_at).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    br.add_argument("month", nargs="?", help="YYYY-MM (default: the month before today, Asia/Shanghai)")
    br.add_argument("--workers", type=int, default=2,
                    help="processes on PostgreSQL, each billing a share of the accounts in its own transaction "
                         "(default 2; SQLite always uses one)")
    br.set_defaults(fn=cmd_billing_run)
    p = add("readings", lambda a: 2, "Meter readings (validation rules in [core.readings]).")
    rsub = p.add_subparsers(dest="readings_command", required=True, metavar="TASK")
    rc = rsub.add_parser(
        "check", help="Run the daily reading checks now: stale IoT meters, zero use, prolonged estimation.",
        description="Record each new finding once on the exceptions list with a work-order request (idempotent per "
        "rule, subject and day; a subject whose finding is still open is left alone). A running hub runs this "
        "every day at core.readings.daily_check_at.")
    rc.set_defaults(fn=cmd_readings_check)
    p = add("schema", cmd_schema, "Export the message catalogue as JSON Schema or AsyncAPI 3.0.")
    p.add_argument("--list", action="store_true", help="list message types")
    p.add_argument("--type", help="only this message type")
    p.add_argument("--asyncapi", action="store_true", help="the AsyncAPI 3.0 document of the exchange")
    p.add_argument("--out", metavar="DIR", help="write files into DIR instead of printing")
    p = add("bench", cmd_bench, "Run bench/hub_vs_raw.py (raw pika floor vs the hub pipeline).")
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments passed to the benchmark")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    fn: Callable[[argparse.Namespace], int | Awaitable[int]] = args.fn
    try:
        result = fn(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 1
    except HubError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    assert isinstance(result, int)
    return result


if __name__ == "__main__":
    sys.exit(main())
