"""Channel statements from the hub's side: ``gashub reconcile import`` reads a file with the channel's
parser and has the core match it (``core.reconciliation``).

The parsers live in ``connectors/payments/statements/`` and are found by import path (the hub never
imports a connector statically). The import is one transaction; the attempt, whatever its outcome, goes
to the write-audit log like ``gashub tariffs import``.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path

from core.api.users import AuditEntry, record_audit
from core.errors import CoreError
from core.reconciliation import Imported, Statement, import_statement
from hub.errors import ConfigError
from hub.store.db import Database

PARSERS_PATH = "connectors.payments.statements:PARSERS"
FORMATS = ("wechatpay", "alipay", "unionpay")
"""What ``--channel`` takes: the statement formats of ``connectors.payments.statements``."""

MAX_FILE_BYTES = 512 * 1024 * 1024
"""A statement file larger than this is refused before it is read (a day of a large city is tens of MB)."""

Parser = Callable[[bytes, date, Callable[[int], None] | None], Statement]


def parsers() -> Mapping[str, Parser]:
    module_name, _, attr = PARSERS_PATH.partition(":")
    try:
        found: Mapping[str, Parser] = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"the statement parsers ({PARSERS_PATH}) cannot be imported: {exc}") from None
    return found


def parse_file(fmt: str, data: bytes, day: date, on_lines: Callable[[int], None] | None = None) -> Statement:
    parser = parsers().get(fmt)
    if parser is None:
        raise ConfigError(f"unknown statement format {fmt!r}; known: {', '.join(sorted(parsers()))}")
    return parser(data, day, on_lines)


async def import_file(
    db: Database, fmt: str, day: date, path: Path, *, by: str, now: datetime | None = None,
    on_lines: Callable[[int], None] | None = None, on_stage: Callable[[str], None] | None = None,
    command: str = "gashub reconcile import",
) -> Imported:
    """Read ``path`` as a ``fmt`` statement of ``day`` and import it (idempotent by the file's SHA-256).
    Raises ``StatementError`` for a file that is not such a statement, ``ConfigError`` for an unknown
    format or an unreadable file."""
    now = now or datetime.now(UTC)
    status, detail = 500, "failed"
    try:
        try:
            if (await asyncio.to_thread(path.stat)).st_size > MAX_FILE_BYTES:
                status, detail = 413, "file too large"
                raise ConfigError(f"{path}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; not a daily statement")
            data = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            status, detail = 400, f"unreadable: {exc.strerror}"
            raise ConfigError(f"{path}: {exc.strerror}") from None
        statement = parse_file(fmt, data, day, on_lines)  # CPU-bound: the command has nothing else to do
        async with db.begin() as conn:
            done = await import_statement(conn, statement, statement_date=day,
                                          file_sha256=hashlib.sha256(data).hexdigest(), file_name=path.name,
                                          by=by, now=now, progress=on_stage)
        status = 201 if done.fresh else 200
        detail = (f"run {done.run_id}: {done.lines} lines, {done.matched} matched, "
                  f"{sum(done.discrepancies.values())} discrepancies" if done.fresh else
                  f"already imported as run {done.run_id}")
        return done
    except CoreError as exc:  # StatementError among them
        status, detail = 422, f"refused: {exc}"
        raise
    finally:
        await record_audit(db.engine, AuditEntry(method="CLI", path=f"{command} {fmt} {day} {path.name}"[:200],
                                                 resource="reconciliation", status=status, at=now, username=by,
                                                 detail=detail[:200]))


def summary(done: Imported, fmt: str, day: date) -> list[str]:
    """The import's outcome in words, for the terminal."""
    if not done.fresh:
        return [f"this file was imported before (run {done.run_id}); nothing new was written"]
    out = [f"{fmt} statement of {day}: {done.lines} lines, {done.matched} matched — run {done.run_id}"]
    if not done.discrepancies:
        out.append("no discrepancies")
    for kind, n in sorted(done.discrepancies.items()):
        out.append(f"  {kind.replace('_', ' ')}: {n}")
    if done.discrepancies:
        out.append(f"see GET /api/v1/reconciliation/runs/{done.run_id} or the ops page")
    return out
