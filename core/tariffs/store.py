"""The tariff book kept in the database (``core_tariff_version``), append-only.

* :func:`load_book` reads every stored version into the :class:`~core.billing.TariffBook` that
  billing runs and prepaid charging already take, so neither changes; :class:`TariffShelf` keeps the
  last book read and reloads it only when a version was added.
* :func:`add_versions` adds versions, each validated by the same pydantic model as the TOML seed
  (:data:`core.billing.Tariff`) and then as a whole book. It is idempotent (a version stored already
  with the same content adds nothing) and it never edits: a version stored with other content under
  the same category and date (or label) is refused, naming it. A new version may not take effect on
  a day that a stored version of its category already prices, unless that day is still to come: the
  days before today were billed or charged with the prices stored then. Days that no stored version
  prices yet (a category's first version) may be filled in: bills and prepaid charges wait for them.
* :func:`list_versions` lists them with what each is today: past, current or future.

Every function works in the caller's transaction. Who added a version and why is on its row; the API
and the command line also write it to the write-audit log (``core_api_audit``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from enum import StrEnum

import orjson
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from core.billing import FlatTariff, ResidentialTariff, Tariff, TariffBook, TariffCategory, TariffNotFound
from core.db import locks
from core.db.tables_tariffs import tariff_version
from core.errors import Conflict, DomainRejected

CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
"""Tariffs take effect at local midnight: "today" is the company's day."""

_TARIFF: TypeAdapter[ResidentialTariff | FlatTariff] = TypeAdapter(Tariff)


class VersionState(StrEnum):
    PAST = "past"
    """Replaced by a later version that is in force now."""
    CURRENT = "current"
    """In force today."""
    FUTURE = "future"
    """Takes effect after today."""


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """A tariff version as stored: the tariff itself and who added it, when and why."""

    id: int
    tariff: ResidentialTariff | FlatTariff
    created_at: datetime
    created_by: str
    note: str

    @property
    def name(self) -> str:
        """How messages name it, e.g. ``RES-2025 (residential from 2025-01-01, #3)``."""
        t = self.tariff
        return f"{t.version} ({t.category} from {t.effective_from.isoformat()}, #{self.id})"


@dataclass(frozen=True, slots=True)
class ListedVersion:
    stored: StoredVersion
    state: VersionState


@dataclass(frozen=True, slots=True)
class Added:
    """What :func:`add_versions` did: the versions it stored and those stored already, unchanged."""

    added: tuple[StoredVersion, ...]
    unchanged: tuple[StoredVersion, ...]


class VersionConflict(Conflict):
    """A version is stored already with other content: versions are never edited."""

    def __init__(self, reasons: Sequence[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = tuple(reasons)


class VersionRefused(DomainRejected):
    """The versions are well-formed but cannot be added (a priced day, an inconsistent book)."""

    def __init__(self, reasons: Sequence[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = tuple(reasons)


def company_today(now: datetime) -> date:
    if now.tzinfo is None:
        raise ValueError("naive datetime: give 'now' a timezone")
    return now.astimezone(CHINA_TZ).date()


def _stored(row: dict[str, object]) -> StoredVersion:
    content = row["content"]
    assert isinstance(content, str)
    try:
        tariff = _TARIFF.validate_json(content)
    except ValidationError as exc:  # only a hand-made row can get here: the table is written through add_versions
        raise ValueError(f"tariff version #{row['id']} in the database is invalid: {exc}") from None
    created_at = row["created_at"]
    assert isinstance(created_at, datetime)
    return StoredVersion(id=int(str(row["id"])), tariff=tariff, created_at=created_at,
                         created_by=str(row["created_by"]), note=str(row["note"]))


async def stored_versions(conn: AsyncConnection, *, known_at: datetime | None = None) -> list[StoredVersion]:
    """Every version in the order added; with ``known_at``, only those added by then."""
    stmt = select(tariff_version).order_by(tariff_version.c.id)
    if known_at is not None:
        stmt = stmt.where(tariff_version.c.created_at <= known_at)
    return [_stored(dict(row)) for row in (await conn.execute(stmt)).mappings()]


async def load_book(conn: AsyncConnection, *, known_at: datetime | None = None) -> TariffBook:
    """The tariff book: every stored version, past, current and future (the book answers which is in
    force on a day). ``known_at`` gives the book as it was known then, to explain an old bill.
    An empty table gives an empty book: every price asked of it is ``TariffNotFound``."""
    return TariffBook(versions=tuple(v.tariff for v in await stored_versions(conn, known_at=known_at)))


async def book_revision(conn: AsyncConnection) -> tuple[int, int]:
    """How many versions there are and the highest id: the table is append-only, so this changes exactly
    when a version is added (the count, too, for a transaction that commits a lower id after a higher)."""
    count, highest = (await conn.execute(
        select(func.count(), func.coalesce(func.max(tariff_version.c.id), 0)).select_from(tariff_version))).one()
    return int(count), int(highest)


class TariffShelf:
    """The book from the database for a long-running process: one small query per use, a reload only
    after a version was added, so a version added through the API or the command line applies from its
    date without a restart."""

    def __init__(self) -> None:
        self._revision = (-1, -1)
        self._book = TariffBook(versions=())

    async def book(self, conn: AsyncConnection) -> TariffBook:
        revision = await book_revision(conn)
        if revision != self._revision:
            book = await load_book(conn)
            self._book, self._revision = book, revision
        return self._book


def prices_in_words(tariff: ResidentialTariff | FlatTariff) -> str:
    """E.g. ``2.40 / 2.88 / 3.60 yuan/m³ (tiers up to 480, 960 m³ a year)`` or ``3.85 yuan/m³``."""
    if isinstance(tariff, FlatTariff):
        return f"{tariff.price} yuan/m³"
    tiers = ", ".join(str(x) for x in tariff.thresholds_m3)
    return f"{' / '.join(str(p) for p in tariff.prices)} yuan/m³ (tiers up to {tiers} m³ a year)"


def state_on(book: TariffBook, tariff: ResidentialTariff | FlatTariff, today: date) -> VersionState:
    if tariff.effective_from > today:
        return VersionState.FUTURE
    try:
        current = book.in_force(tariff.category, today)
    except TariffNotFound:  # pragma: no cover - a version dated today or earlier is in force or replaced
        return VersionState.PAST
    return VersionState.CURRENT if current.version == tariff.version else VersionState.PAST


async def list_versions(conn: AsyncConnection, *, now: datetime) -> list[ListedVersion]:
    """Every version by category and date, each marked past, current (in force today) or future."""
    stored = await stored_versions(conn)
    book = TariffBook(versions=tuple(v.tariff for v in stored))
    today = company_today(now)
    ordered = sorted(stored, key=lambda v: (list(TariffCategory).index(v.tariff.category), v.tariff.effective_from))
    return [ListedVersion(v, state_on(book, v.tariff, today)) for v in ordered]


def _edit_refused(old: StoredVersion, new: ResidentialTariff | FlatTariff, today: date) -> str:
    clash = ("date" if old.tariff.effective_from == new.effective_from else "label")
    since = (f"it has been in force since {old.tariff.effective_from.isoformat()} and is immutable"
             if old.tariff.effective_from <= today else "versions are never edited")
    return (f"tariff {new.version} ({new.category} from {new.effective_from.isoformat()}) has the {clash} of "
            f"{old.name}, stored {old.created_at:%Y-%m-%d} by {old.created_by} with other content: {since}; "
            "a price change is a new version from a later date with its own label")


def _backdated(new: ResidentialTariff | FlatTariff, covering: StoredVersion, today: date) -> str:
    return (f"tariff {new.version} ({new.category} from {new.effective_from.isoformat()}) would change prices "
            f"from {new.effective_from.isoformat()} to {today.isoformat()}, days {covering.name} already prices "
            f"(billed or charged with it): give it a date after {today.isoformat()}")


def _check(stored: Sequence[StoredVersion], new: ResidentialTariff | FlatTariff, today: date
           ) -> tuple[StoredVersion | None, str | None, str | None]:
    """(the same version stored already, a conflict, a refusal) for one new version."""
    same_category = [v for v in stored if v.tariff.category == new.category]
    for old in same_category:
        if old.tariff.effective_from == new.effective_from or old.tariff.version == new.version:
            if old.tariff == new:
                return old, None, None
            return None, _edit_refused(old, new, today), None
    if new.effective_from <= today:
        covering = [v for v in same_category if v.tariff.effective_from <= new.effective_from]
        if covering:
            return None, None, _backdated(new, covering[-1], today)
    return None, None, None


async def add_versions(
    conn: AsyncConnection,
    tariffs: Sequence[ResidentialTariff | FlatTariff],
    *,
    by: str,
    now: datetime,
    note: str = "",
) -> Added:
    """Add ``tariffs`` all together or none (module notes). Raises :class:`VersionConflict` when one is
    stored already with other content, :class:`VersionRefused` when one would reprice a past day or the
    book they make is inconsistent (two versions on one date, residential cycle starts that disagree);
    each names the versions concerned."""
    by = by.strip()[:64]
    if not by:
        raise DomainRejected("say who adds the tariff versions ('by')")
    today = company_today(now)
    # One adder at a time (held to the commit): otherwise two processes — workers starting at once, each
    # seeding a fresh database, or an import from the CLI beside one through the API — both read the book
    # without the other's versions and the second insert fails on the unique date.
    await locks.hold_until_commit(conn, locks.ADD_TARIFF_VERSIONS)
    stored = sorted(await stored_versions(conn), key=lambda v: v.tariff.effective_from)
    unchanged: list[StoredVersion] = []
    fresh: list[ResidentialTariff | FlatTariff] = []
    conflicts: list[str] = []
    refusals: list[str] = []
    for new in tariffs:
        same, conflict, refusal = _check(stored, new, today)
        if same is not None:
            unchanged.append(same)
        elif conflict is not None:
            conflicts.append(conflict)
        elif refusal is not None:
            refusals.append(refusal)
        else:
            fresh.append(new)
    if conflicts:
        raise VersionConflict(conflicts)
    if refusals:
        raise VersionRefused(refusals)
    try:
        TariffBook(versions=(*(v.tariff for v in stored), *fresh))
    except ValidationError as exc:
        raise VersionRefused([str(e["msg"]).removeprefix("Value error, ") for e in exc.errors()]) from None
    added: list[StoredVersion] = []
    for tariff in sorted(fresh, key=lambda t: (t.effective_from, list(TariffCategory).index(t.category))):
        row = {"category": str(tariff.category), "version": tariff.version, "effective_from": tariff.effective_from,
               "content": orjson.dumps(tariff.model_dump(mode="json")).decode(), "created_at": now,
               "created_by": by, "note": note[:500]}
        key = (await conn.execute(insert(tariff_version).values(row))).inserted_primary_key
        assert key is not None
        new_id = key[0]
        added.append(StoredVersion(id=int(new_id), tariff=tariff, created_at=now, created_by=by, note=note[:500]))
    return Added(added=tuple(added), unchanged=tuple(unchanged))
