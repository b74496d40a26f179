"""The core's reconciliation tables (issue 5 item 4): channels' daily statements and what did not match.

* ``core_recon_run`` — one imported statement file: channel, its format, the day it covers, the file's
  SHA-256 (unique per channel: importing the same file again finds this run and writes nothing), who
  imported it and when, and its counts and totals.
* ``core_recon_discrepancy`` — each thing that did not match (``kind``: missing_in_core,
  missing_in_statement, duplicated, amount_mismatch, status_mismatch), with the transaction (and refund)
  id, both amounts and both states; open until an operator resolves it with a note (who, when).

Two indexes on the payment tables serve the "what did the core record that day" side of the match.
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    UniqueConstraint,
)

from core.db.tables import metadata
from core.db.tables_payments import payment, refund
from core.db.types import UTCDateTime

DISCREPANCY_KINDS = ("missing_in_core", "missing_in_statement", "duplicated", "amount_mismatch", "status_mismatch")
DISCREPANCY_STATUSES = ("open", "resolved")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


recon_run = Table(
    "core_recon_run",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("channel", String(16), nullable=False),
    Column("format", String(16), nullable=False),
    Column("statement_date", Date(), nullable=False),
    Column("file_sha256", String(64), nullable=False),
    Column("file_name", String(200), nullable=False),
    Column("imported_at", UTCDateTime(), nullable=False),
    Column("imported_by", String(64), nullable=False),
    Column("lines", Integer(), nullable=False),
    Column("payments", Integer(), nullable=False),
    Column("refunds", Integer(), nullable=False),
    Column("matched", Integer(), nullable=False),
    Column("discrepancies", Integer(), nullable=False),
    Column("statement_total", Numeric(16, 2), nullable=False),
    Column("refund_total", Numeric(16, 2), nullable=False),
    UniqueConstraint("channel", "file_sha256", name="uq_core_recon_run_channel_file"),
    Index("ix_core_recon_run_channel_date", "channel", "statement_date"),
)

recon_discrepancy = Table(
    "core_recon_discrepancy",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("run_id", String(32), ForeignKey("core_recon_run.id"), nullable=False),
    Column("kind", String(24), nullable=False),
    Column("transaction_id", String(64), nullable=False),
    Column("refund_id", String(64), nullable=False),
    Column("out_trade_no", String(64), nullable=False),
    Column("payment_id", String(32)),
    Column("line_no", Integer()),
    Column("statement_amount", Numeric(14, 2)),
    Column("core_amount", Numeric(14, 2)),
    Column("statement_status", String(16)),
    Column("core_status", String(16)),
    Column("detail", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("resolved_by", String(64)),
    Column("resolved_at", UTCDateTime()),
    Column("resolution_note", String(500)),
    CheckConstraint(_in("kind", DISCREPANCY_KINDS), name="kind"),
    CheckConstraint(_in("status", DISCREPANCY_STATUSES), name="status"),
    CheckConstraint("(status = 'resolved') = (resolved_at IS NOT NULL)", name="resolved"),
    Index("ix_core_recon_discrepancy_run", "run_id", "kind", "id"),
    Index("ix_core_recon_discrepancy_open", "status", "run_id"),
)

Index("ix_core_payment_channel_paid_at", payment.c.channel, payment.c.paid_at)
Index("ix_core_payment_refund_refunded_at", refund.c.refunded_at)
