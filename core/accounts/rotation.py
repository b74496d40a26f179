"""Key rotation for the personal data at rest: re-encrypt every field under the current key and
rebuild the blind indexes with it, table by table, in chunks that commit one by one.

A chunk's rows are read and written in one transaction (rows locked with ``FOR UPDATE`` on
PostgreSQL), so a rotation can be interrupted at any point and started again: rows already under the
current key are skipped. Old keys must stay configured until a rotation reports nothing left to do;
only then may they be removed from ``GASHUB_CORE__KEYS__*``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from sqlalchemy import Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core.accounts.models import Privacy
from core.db.tables_accounts import customer, premises
from core.db.tables_payments import invoice
from core.db.tables_sms import sms_reply
from core.privacy import rotate_rows
from core.privacy.blind import BlindIndex


@dataclass(frozen=True, slots=True)
class EncryptedTable:
    """Where one table keeps personal data: field name → ``*_enc`` column, and the blind indexes
    (field name → ``*_bidx`` column) computed from the plaintext of some fields."""

    table: Table
    fields: Mapping[str, str]
    indexes: Mapping[str, str] = field(default_factory=dict)


ENCRYPTED_TABLES: tuple[EncryptedTable, ...] = (
    EncryptedTable(
        customer,
        {"name": "name_enc", "phone": "phone_enc", "id_number": "id_number_enc", "address": "address_enc"},
        {"phone": "phone_bidx", "id_number": "id_number_bidx"},
    ),
    EncryptedTable(premises, {"address": "address_enc"}),
    EncryptedTable(invoice, {"user_name": "user_name_enc", "user_number": "user_number_enc"}),
    EncryptedTable(sms_reply, {"content": "content_enc"}),
    # core_sms_reply.phone_bidx is made from a number that is not stored: it keeps the index key it was
    # made with (a rotation of the index key leaves old replies unfindable by number, not unreadable).
)
"""Every table with encrypted fields. A module adding one appends it here (the rotation test checks
that no ``*_enc`` column of the schema is missing)."""


@dataclass(slots=True)
class RotationReport:
    table: str
    rows: int = 0
    reencrypted: int = 0
    reindexed: int = 0
    changed: int = 0
    """Rows written (or, in a dry run, that would be)."""


def _reindexers(index: BlindIndex, names: Mapping[str, str]) -> dict[str, Callable[[str], str]]:
    known: dict[str, Callable[[str], str]] = {"phone": index.phone, "id_number": index.id_number}
    return {name: known[name] for name in names}


async def count_rows(conn: AsyncConnection, tables: Sequence[EncryptedTable] = ENCRYPTED_TABLES) -> int:
    total = 0
    for spec in tables:
        total += int(await conn.scalar(select(func.count()).select_from(spec.table)) or 0)
    return total


async def rotate_keys(
    begin: Callable[[], AbstractAsyncContextManager[AsyncConnection]],
    privacy: Privacy,
    *,
    chunk: int = 1000,
    progress: Callable[[int], None] | None = None,
    dry_run: bool = False,
    tables: Sequence[EncryptedTable] = ENCRYPTED_TABLES,
) -> list[RotationReport]:
    """Rotate every encrypted table. ``begin()`` returns an async context manager yielding a
    connection inside a transaction (``Database.begin`` or ``AsyncEngine.begin``)."""
    reports: list[RotationReport] = []
    for spec in tables:
        report = RotationReport(spec.table.name)
        reports.append(report)
        pk = spec.table.primary_key.columns.values()[0]
        enc_columns = [spec.table.c[column] for column in spec.fields.values()]
        index_columns = [spec.table.c[column] for column in spec.indexes.values()]
        reindex = _reindexers(privacy.index, spec.indexes)
        last = ""
        while True:
            async with begin() as conn:
                stmt = select(pk, *enc_columns, *index_columns).where(pk > last).order_by(pk).limit(chunk)
                if conn.dialect.name == "postgresql":
                    stmt = stmt.with_for_update()
                rows = (await conn.execute(stmt)).all()
                if not rows:
                    break
                last = str(rows[-1][0])
                width = len(spec.fields)
                stored = {str(row[0]): dict(zip(spec.indexes.values(), row[1 + width:], strict=True))
                          for row in rows}
                source = (
                    (str(row[0]), {name: row[i + 1] for i, name in enumerate(spec.fields)}) for row in rows
                )
                for result in rotate_rows(source, table=spec.table.name, ring=privacy.cipher.ring,
                                          reindex=reindex):
                    values: dict[str, str] = {spec.fields[name]: token for name, token in result.tokens.items()}
                    stale = {
                        spec.indexes[name]: value
                        for name, value in result.indexes.items()
                        if stored[result.row_id][spec.indexes[name]] != value
                    }
                    values.update(stale)
                    report.rows += 1
                    report.reencrypted += bool(result.tokens)
                    report.reindexed += bool(stale)
                    report.changed += bool(values)
                    if values and not dry_run:
                        await conn.execute(update(spec.table).where(pk == result.row_id).values(**values))
                    if progress is not None:
                        progress(1)
    return reports
