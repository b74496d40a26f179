"""The tariff book from the hub's side: the database holds it (``core.tariffs``), the TOML file
(``billing.tariffs_file``, parsed by :func:`hub.billing.load_tariffs`, checked by ``gashub check``)
is its shipped seed.

* :func:`import_tariffs` — ``gashub tariffs import FILE``: the file's versions that are not stored yet
  are added; the ones stored already with the same content add nothing (importing a file twice is a
  no-op); a version stored with other content refuses the whole import, naming the version. Audited.
* :func:`seed_tariffs` — ``gashub db upgrade`` and the hub's start-up: the shipped file is imported
  into a database that has no tariff version yet, so a fresh database has the tariffs; after that the
  database is the book, changed with ``gashub tariffs import`` or ``POST /api/v1/tariffs``.
* :func:`current_book` — what billing runs price with.
"""

from __future__ import annotations

import getpass
import logging
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from core.api.users import AuditEntry, record_audit
from core.billing import TariffBook
from core.db.tables_tariffs import tariff_version
from core.errors import CoreError
from core.tariffs import Added, VersionConflict, add_versions, load_book
from hub.billing import load_tariffs, tariff_path
from hub.errors import ConfigError
from hub.store.db import Database

log = logging.getLogger(__name__)


async def current_book(db: Database) -> TariffBook:
    """Every stored version (the book answers which one is in force on a day)."""
    async with db.read() as conn:
        return await load_book(conn)


def cli_actor() -> str:
    """Who runs a command: ``cli:<login>``, as far as the operating system knows."""
    try:
        return f"cli:{getpass.getuser()}"[:64]
    except (KeyError, OSError):  # no user name for the uid (containers)
        return "cli"


async def import_tariffs(db: Database, path: Path, *, by: str, now: datetime | None = None,
                         command: str = "gashub tariffs import") -> Added:
    """Add the versions of ``path`` that are not stored yet, all or none (module notes); the attempt,
    whatever its outcome, goes to the write-audit log. Raises ``ConfigError`` for a file that does not
    parse or validate, ``VersionConflict``/``VersionRefused`` naming the versions refused."""
    now = now or datetime.now(UTC)
    status, detail = 500, "failed"
    try:
        book = load_tariffs(path)
        async with db.begin() as conn:
            added = await add_versions(conn, book.versions, by=by, now=now, note=f"imported from {path.name}")
        status = 201 if added.added else 200
        detail = (f"added {', '.join(v.name for v in added.added)}" if added.added else
                  f"nothing new: {len(added.unchanged)} versions stored already")
        return added
    except ConfigError as exc:
        status, detail = 400, f"invalid file: {exc}"
        raise
    except CoreError as exc:
        status, detail = (409 if isinstance(exc, VersionConflict) else 422), f"refused: {exc}"
        raise
    finally:
        await record_audit(db.engine, AuditEntry(method="CLI", path=f"{command} {path}", resource="tariffs",
                                                 status=status, at=now, username=by, detail=detail))


async def seed_tariffs(db: Database, path: Path) -> Added | None:
    """Import ``path`` when no tariff version is stored yet (a fresh database); ``None`` otherwise, or
    when there is no such file (the hub then starts without tariffs and says so where they are needed)."""
    async with db.read() as conn:
        if await conn.scalar(select(func.count()).select_from(tariff_version)):
            return None
    if not tariff_path(path).is_file():
        log.warning("tariffs.no_seed", extra={"file": str(path)})
        return None
    try:
        added = await import_tariffs(db, path, by="seed", command="seed")
    except IntegrityError:
        # Another process seeded the same file meanwhile (SQLite: PostgreSQL serialises the adders).
        async with db.read() as conn:
            if not await conn.scalar(select(func.count()).select_from(tariff_version)):
                raise
        log.info("tariffs.seeded_elsewhere", extra={"file": str(path)})
        return None
    log.info("tariffs.seeded", extra={"file": str(path), "versions": len(added.added)})
    return added
