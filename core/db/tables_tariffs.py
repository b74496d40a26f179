"""The tariff book in the database: one row per tariff version, a category's prices from a date.

Append-only. A price change is a new row from a later date; no row is ever updated or deleted
(``core.tariffs`` refuses it, and the migration's triggers refuse an ``UPDATE`` or ``DELETE`` on both
PostgreSQL and SQLite, whoever sends it). ``id`` rises with every row added, so the highest id names
the book's content: readers that cache the book reload it when it changes.

``content`` is the version as one JSON document (the dump of :data:`core.billing.Tariff`: tiers,
prices, VAT rate, uplift, cycle start or flat price), not normalised tier rows, because

* the same pydantic model validates it whether it comes from the TOML seed, the API or the table,
  so there is one definition of a valid tariff and no second one in SQL to keep in step;
* a version is read and written whole (the book is a handful of rows, loaded at once), never
  queried by tier or price;
* residential and flat versions have different shapes; normalised, they would need tier and uplift
  tables whose reassembly is code that can disagree with the model.

What the database must enforce stays in columns: ``category``, ``version`` (the label printed on
bill lines) and ``effective_from``, unique per category like :class:`core.billing.TariffBook`'s own
rules. ``created_at``/``created_by``/``note`` say who added the version and why.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, Column, Date, Integer, String, Table, Text, UniqueConstraint

from core.db.tables import metadata
from core.db.tables_billing import BILL_CATEGORIES
from core.db.types import UTCDateTime

tariff_version = Table(
    "core_tariff_version",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("category", String(16), nullable=False),
    Column("version", String(64), nullable=False),
    Column("effective_from", Date, nullable=False),
    Column("content", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("note", String(500), nullable=False, default=""),
    UniqueConstraint("category", "effective_from", name="uq_core_tariff_version_category_date"),
    UniqueConstraint("category", "version", name="uq_core_tariff_version_category_label"),
    CheckConstraint(f"category IN ({', '.join(repr(c) for c in BILL_CATEGORIES)})", name="category"),
)
