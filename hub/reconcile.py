"""Channel statements from the hub's side: ``gashub reconcile import`` reads a file (or downloads it
from the channel's download URL, such as the short-lived address Alipay's
``alipay.data.dataservice.bill.downloadurl.query`` answers) with the channel's parser and has the core
match it (``core.reconciliation``).

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

import aiohttp

from core.api.users import AuditEntry, record_audit
from core.errors import CoreError
from core.reconciliation import Imported, Statement, import_statement
from hub.errors import ConfigError, TransientError
from hub.store.db import Database

PARSERS_PATH = "connectors.payments.statements:PARSERS"
COMMAND = "gashub reconcile import"
FORMATS = ("wechatpay", "alipay", "unionpay", "ecny")
"""What ``--channel`` takes: the statement formats of ``connectors.payments.statements``."""

MAX_FILE_BYTES = 512 * 1024 * 1024
"""A statement file larger than this is refused before it is read (a day of a large city is tens of MB)."""

DOWNLOAD_TIMEOUT_S = 120.0


class DownloadFailed(TransientError):
    """The statement could not be downloaded (unreachable, refused, expired link, too large)."""


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


async def download(url: str, *, max_bytes: int = MAX_FILE_BYTES, timeout_s: float = DOWNLOAD_TIMEOUT_S
                   ) -> tuple[bytes, str]:
    """GET the statement at ``url`` (read at most ``max_bytes``); its bytes and a file name for the run."""
    if not url.startswith(("https://", "http://")):
        raise DownloadFailed(f"{url[:80]!r} is not an http(s) URL")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http, \
                http.get(url) as resp:
            if resp.status != 200:
                raise DownloadFailed(f"the download answered {resp.status} (an expired link answers so too: "
                                     "ask the channel for a new one)")
            data = await resp.content.read(max_bytes + 1)
            if len(data) > max_bytes:
                raise DownloadFailed(f"the download is larger than {max_bytes // (1024 * 1024)} MiB")
            name = resp.url.query.get("downloadFileName") or resp.url.name or "download"
    except TimeoutError:
        raise DownloadFailed(f"the download did not finish within {timeout_s:.0f} s") from None
    except aiohttp.ClientError as exc:
        raise DownloadFailed(f"the download failed: {type(exc).__name__}: {exc}") from None
    return data, name


async def import_file(
    db: Database, fmt: str, day: date, path: Path, *, by: str, now: datetime | None = None,
    on_lines: Callable[[int], None] | None = None, on_stage: Callable[[str], None] | None = None,
) -> Imported:
    """Read ``path`` and :func:`import_bytes` it; a file that cannot be read is a ``ConfigError``
    (audited like any refusal)."""
    reason = ""
    try:
        if (await asyncio.to_thread(path.stat)).st_size > MAX_FILE_BYTES:
            reason = f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; not a daily statement"
        else:
            data = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
    if reason:
        await _audit(db, fmt, day, path.name, by, now or datetime.now(UTC), 400, f"unreadable: {reason}")
        raise ConfigError(f"{path}: {reason}") from None
    return await import_bytes(db, fmt, day, data, path.name, by=by, now=now, on_lines=on_lines, on_stage=on_stage)


async def import_bytes(
    db: Database, fmt: str, day: date, data: bytes, file_name: str, *, by: str, now: datetime | None = None,
    on_lines: Callable[[int], None] | None = None, on_stage: Callable[[str], None] | None = None,
) -> Imported:
    """Parse ``data`` as a ``fmt`` statement of ``day`` and import it (idempotent by its SHA-256).
    Raises ``StatementError`` for a file that is not such a statement, ``ConfigError`` for an unknown
    format. The attempt is audited whatever its outcome."""
    now = now or datetime.now(UTC)
    status, detail = 500, "failed"
    try:
        statement = parse_file(fmt, data, day, on_lines)  # CPU-bound: the command has nothing else to do
        async with db.begin() as conn:
            done = await import_statement(conn, statement, statement_date=day,
                                          file_sha256=hashlib.sha256(data).hexdigest(), file_name=file_name,
                                          by=by, now=now, progress=on_stage)
        status = 201 if done.fresh else 200
        detail = (f"run {done.run_id}: {done.lines} lines, {done.matched} matched, "
                  f"{sum(done.discrepancies.values())} discrepancies" if done.fresh else
                  f"already imported as run {done.run_id}")
        return done
    except ConfigError as exc:
        status, detail = 400, f"refused: {exc}"
        raise
    except CoreError as exc:  # StatementError among them
        status, detail = 422, f"refused: {exc}"
        raise
    finally:
        await _audit(db, fmt, day, file_name, by, now, status, detail)


async def _audit(db: Database, fmt: str, day: date, file_name: str, by: str, now: datetime, status: int,
                 detail: str) -> None:
    await record_audit(db.engine, AuditEntry(method="CLI", path=f"{COMMAND} {fmt} {day} {file_name}"[:200],
                                             resource="reconciliation", status=status, at=now, username=by,
                                             detail=detail[:200]))


def summary(done: Imported, fmt: str, day: date) -> list[str]:
    """The import's outcome in words, for the terminal."""
    if not done.fresh:
        return [f"this file was imported before (run {done.run_id}); nothing new was written"]
    out = [f"{fmt} statement of {day}: {done.lines} lines, {done.matched} matched — run {done.run_id}"]
    out += [f"  note: {note}" for note in done.notes]
    if not done.discrepancies:
        out.append("no discrepancies")
    for kind, n in sorted(done.discrepancies.items()):
        out.append(f"  {kind.replace('_', ' ')}: {n}")
    if done.discrepancies:
        out.append(f"see GET /api/v1/reconciliation/runs/{done.run_id} or the ops page")
    return out
