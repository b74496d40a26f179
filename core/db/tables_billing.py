"""The core's billing tables: meters, bills and bill lines.

``core_meter.id`` is the meter serial that readings carry in ``core_reading.meter_id``. A bill is
unique per ``(account_id, period_start, period_end)``: that key makes a billing run idempotent.
Periods are half-open ``[period_start, period_end)`` dates, as in :mod:`core.billing`; money is
yuan (0.01), volumes m³ (0.001).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
    false,
    text,
)

from core.db.tables import metadata
from core.db.types import UTCDateTime

VALVE_STATES = ("open", "closed", "abnormal", "unknown")
BILL_STATUSES = ("issued", "cancelled")
BILL_CATEGORIES = ("residential", "industrial", "commercial", "heating")
BILL_QUALITIES = ("actual", "estimated")
"""``estimated``: the closing register was held (a spike) and the volume is an estimate."""


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


meter = Table(
    "core_meter",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("account_id", String(32), ForeignKey("core_account.id"), index=True),
    Column("model", String(64), nullable=False),
    Column("installed_at", Date, nullable=False),
    Column("replace_by", Date),
    Column("valve_state", String(16), nullable=False, default="unknown"),
    # How the meter is reached and when it was last verified (CJ/T 188 address; NB-IoT module IMEI).
    Column("protocol_address", String(14)),
    Column("imei", String(15), unique=True),
    Column("verified_on", Date),
    Column("prepaid_balance", Numeric(14, 2), nullable=False, default=0),
    Column("prepaid_read_at", UTCDateTime()),
    Column("prepaid_read_m3", Numeric(14, 3)),
    Column("prepaid_cycle_start", Date),
    Column("prepaid_cycle_m3", Numeric(14, 3), nullable=False, default=0, server_default="0"),
    Column("prepaid_residue", Numeric(14, 9), nullable=False, default=0, server_default="0"),
    Column("prepaid_low_notified", Boolean, nullable=False, default=False, server_default=false()),
    CheckConstraint(_in("valve_state", VALVE_STATES), name="valve_state"),
)
"""A prepaid meter's pricing state (:mod:`core.prepaid`): the last reading priced (``prepaid_read_at``,
``prepaid_read_m3``; the next reading is priced from there), the tier cumulative of the annual cycle
(``prepaid_cycle_start``, ``prepaid_cycle_m3``), the exact cost not yet deducted because deductions
are whole fen (``prepaid_residue``, under half a fen either way), and whether the holder was told the
balance is low since the last top-up (``prepaid_low_notified``; a top-up clears it)."""

bill = Table(
    "core_bill",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("account_id", String(32), ForeignKey("core_account.id"), nullable=False),
    Column("meter_id", String(32), nullable=False),
    Column("period_start", Date, nullable=False),
    Column("period_end", Date, nullable=False),
    Column("reading_start_m3", Numeric(14, 3), nullable=False),
    Column("reading_end_m3", Numeric(14, 3), nullable=False),
    Column("volume_m3", Numeric(14, 3), nullable=False),
    Column("total", Numeric(14, 2), nullable=False),
    Column("net_total", Numeric(14, 2), nullable=False),
    Column("tax_total", Numeric(14, 2), nullable=False),
    Column("cumulative_before", Numeric(14, 3), nullable=False),
    Column("cumulative_after", Numeric(14, 3)),
    Column("category", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("quality", String(16), nullable=False, server_default="actual"),
    UniqueConstraint("account_id", "period_start", "period_end", name="uq_core_bill_account_period"),
    CheckConstraint(_in("quality", BILL_QUALITIES), name="quality"),
    Index("ix_core_bill_estimated", "account_id", "period_end", postgresql_where=text("quality = 'estimated'"),
          sqlite_where=text("quality = 'estimated'")),
    CheckConstraint("period_end > period_start", name="period"),
    CheckConstraint(_in("status", BILL_STATUSES), name="status"),
    CheckConstraint(_in("category", BILL_CATEGORIES), name="category"),
)

bill_line = Table(
    "core_bill_line",
    metadata,
    Column("bill_id", String(32), ForeignKey("core_bill.id"), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("tier", Integer, nullable=False),
    Column("tariff_version", String(64), nullable=False),
    Column("cycle_start", Date),
    Column("start", Date, nullable=False),
    Column("end", Date, nullable=False),
    Column("volume_m3", Numeric(14, 3), nullable=False),
    Column("unit_price", Numeric(14, 6), nullable=False),
    Column("amount", Numeric(14, 2), nullable=False),
    Column("vat_rate", Numeric(5, 4), nullable=False),
    PrimaryKeyConstraint("bill_id", "line_no", name="pk_core_bill_line"),
)

bill_meter = Table(
    "core_bill_meter",
    metadata,
    Column("bill_id", String(32), ForeignKey("core_bill.id"), nullable=False),
    Column("meter_id", String(32), nullable=False),
    Column("reading_start_m3", Numeric(14, 3), nullable=False),
    Column("reading_end_m3", Numeric(14, 3), nullable=False),
    Column("volume_m3", Numeric(14, 3), nullable=False),
    Column("estimated", Boolean, nullable=False),
    PrimaryKeyConstraint("bill_id", "meter_id", name="pk_core_bill_meter"),
)
"""Each meter's registers on the bill of an account with several meters (:mod:`core.billing_run.several`):
the bill has the meters' volumes summed, its ``meter_id`` is the first meter and its registers the sums.
A bill for a one-meter account has no rows here (its own row says it all)."""
