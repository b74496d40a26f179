"""The core's payment and invoice tables (domain issue item 6).

Money is yuan (0.01), signed where a table is a ledger. Rows of the ledgers (allocations, credit,
prepaid entries) are never updated: a refund writes reversing rows, so every yuan of a payment can be
followed from the payment to the bill, the credit or the meter that holds it.

* ``core_payment`` — one row per ``(channel, transaction_id)``: that key makes crediting idempotent.
* ``core_payment_allocation`` — money of a payment on a bill (``payment``: straight from the payment;
  ``credit``: from its overpayment, applied later; ``reversal``: taken back by a refund, negative).
  A bill's paid amount is the sum of its rows.
* ``core_account_credit`` — the account's credit ledger: ``overpayment`` (+), ``applied`` to a bill (−),
  ``refund`` (−). Each row names the payment whose money it is; the balance is the sum.
* ``core_prepaid_entry`` — top-ups and refunds (naming their payment) and deductions for gas read
  (naming their reading, at most once each: ``reading_id`` is unique; with the volume priced and its
  tier lines in ``detail``) of a prepaid meter's ``core_meter.prepaid_balance``, with the balance
  after each one. ``reading_id`` has no foreign key: readings are never deleted, and the check would
  cost every charged reading an index probe on the hot path.
* ``core_payment_refund`` — refunds and reversals (冲正), one per ``(payment, refund_id)``.
* ``core_invoice`` / ``core_invoice_line`` — e-invoice requests and what the tax system answered.
  The user name and user number are personal: stored only as ``FieldCipher`` tokens bound to the
  invoice row (``core_invoice.user_name:<id>``), plus the masked name for listings. ``message_id`` is
  the message that caused the request (``NULL`` when a billing run applied credit).
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from core.db.tables import metadata
from core.db.types import UTCDateTime

PAYMENT_STATUSES = ("received", "partly_refunded", "refunded", "reversed")
ALLOCATION_KINDS = ("payment", "credit", "reversal")
CREDIT_KINDS = ("overpayment", "applied", "refund")
PREPAID_KINDS = ("top_up", "refund", "deduction")
REFUND_KINDS = ("refund", "reversal")
INVOICE_STATUSES = ("requested", "issued", "failed", "reversed")
INVOICE_KINDS = ("blue", "red")
INVOICE_SCOPES = ("payment", "bill")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


payment = Table(
    "core_payment",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("channel", String(16), nullable=False),
    Column("transaction_id", String(64), nullable=False),
    Column("out_trade_no", String(64), nullable=False),
    Column("account_id", String(32), ForeignKey("core_account.id"), nullable=False, index=True),
    Column("amount", Numeric(14, 2), nullable=False),
    Column("refunded", Numeric(14, 2), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("paid_at", UTCDateTime(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("message_id", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("channel", "transaction_id", name="uq_core_payment_channel_transaction"),
    CheckConstraint("amount > 0", name="amount"),
    CheckConstraint("refunded >= 0 AND refunded <= amount", name="refunded"),
    CheckConstraint(_in("status", PAYMENT_STATUSES), name="status"),
)

refund = Table(
    "core_payment_refund",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("payment_id", String(32), ForeignKey("core_payment.id"), nullable=False),
    Column("refund_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("amount", Numeric(14, 2), nullable=False),
    Column("from_credit", Numeric(14, 2), nullable=False),
    Column("from_bills", Numeric(14, 2), nullable=False),
    Column("from_prepaid", Numeric(14, 2), nullable=False),
    Column("refunded_at", UTCDateTime(), nullable=False),
    Column("red_serial", String(64)),
    Column("message_id", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("payment_id", "refund_id", name="uq_core_payment_refund_payment_refund"),
    CheckConstraint("amount > 0", name="amount"),
    CheckConstraint(_in("kind", REFUND_KINDS), name="kind"),
)

allocation = Table(
    "core_payment_allocation",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("payment_id", String(32), ForeignKey("core_payment.id"), nullable=False, index=True),
    Column("bill_id", String(32), ForeignKey("core_bill.id"), nullable=False, index=True),
    Column("account_id", String(32), ForeignKey("core_account.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("amount", Numeric(14, 2), nullable=False),
    Column("refund_row_id", String(32), ForeignKey("core_payment_refund.id")),
    Column("created_at", UTCDateTime(), nullable=False),
    CheckConstraint(_in("kind", ALLOCATION_KINDS), name="kind"),
    CheckConstraint("(kind = 'reversal') = (amount < 0)", name="sign"),
)

credit = Table(
    "core_account_credit",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("account_id", String(32), ForeignKey("core_account.id"), nullable=False, index=True),
    Column("payment_id", String(32), ForeignKey("core_payment.id"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("amount", Numeric(14, 2), nullable=False),
    Column("bill_id", String(32), ForeignKey("core_bill.id")),
    Column("refund_row_id", String(32), ForeignKey("core_payment_refund.id")),
    Column("created_at", UTCDateTime(), nullable=False),
    CheckConstraint(_in("kind", CREDIT_KINDS), name="kind"),
    CheckConstraint("(kind = 'overpayment') = (amount > 0)", name="sign"),
)

prepaid_entry = Table(
    "core_prepaid_entry",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("meter_id", String(32), ForeignKey("core_meter.id"), nullable=False, index=True),
    Column("account_id", String(32), ForeignKey("core_account.id"), nullable=False),
    Column("payment_id", String(32), ForeignKey("core_payment.id"), index=True),
    Column("refund_row_id", String(32), ForeignKey("core_payment_refund.id")),
    Column("reading_id", String(32), unique=True),
    Column("kind", String(16), nullable=False),
    Column("amount", Numeric(14, 2), nullable=False),
    Column("balance_after", Numeric(14, 2), nullable=False),
    Column("volume_m3", Numeric(14, 3)),
    Column("detail", String(200)),
    Column("created_at", UTCDateTime(), nullable=False),
    CheckConstraint(_in("kind", PREPAID_KINDS), name="kind"),
    CheckConstraint("(kind = 'top_up') = (amount > 0)", name="sign"),
    CheckConstraint("(kind = 'deduction') = (payment_id IS NULL)", name="payment"),
    CheckConstraint("(kind = 'deduction') = (reading_id IS NOT NULL)", name="reading"),
)

invoice = Table(
    "core_invoice",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("request_serial", String(64), nullable=False, unique=True),
    Column("kind", String(8), nullable=False),
    Column("scope", String(8), nullable=False),
    Column("reference_id", String(32), nullable=False),
    Column("account_id", String(32), ForeignKey("core_account.id"), nullable=False, index=True),
    Column("original_invoice_id", String(32), ForeignKey("core_invoice.id")),
    Column("refund_row_id", String(32), ForeignKey("core_payment_refund.id")),
    Column("status", String(16), nullable=False),
    Column("user_name_enc", Text, nullable=False),
    Column("user_name_masked", String(100), nullable=False),
    Column("user_number_enc", Text),
    Column("invoice_type", String(32)),
    Column("invoice_number", String(20), unique=True),
    Column("total", Numeric(14, 2), nullable=False),
    Column("total_tax", Numeric(14, 2), nullable=False),
    Column("failure_reason", Text),
    Column("pdf_url", String(500)),
    Column("message_id", String(64)),
    Column("requested_at", UTCDateTime(), nullable=False),
    Column("issued_at", UTCDateTime()),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index("ix_core_invoice_reference", "scope", "reference_id"),
    # The requests the tax system has not answered (the ops panel's backlog, read at every refresh): a
    # few rows among millions of issued invoices.
    Index("ix_core_invoice_waiting", "requested_at", postgresql_where=text("status = 'requested'"),
          sqlite_where=text("status = 'requested'")),
    CheckConstraint(_in("kind", INVOICE_KINDS), name="kind"),
    CheckConstraint(_in("scope", INVOICE_SCOPES), name="scope"),
    CheckConstraint(_in("status", INVOICE_STATUSES), name="status"),
    CheckConstraint("(kind = 'red') = (original_invoice_id IS NOT NULL)", name="red_has_original"),
)

invoice_line = Table(
    "core_invoice_line",
    metadata,
    Column("invoice_id", String(32), ForeignKey("core_invoice.id"), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("name", String(100), nullable=False),
    Column("tax_code", String(19), nullable=False),
    Column("unit", String(10), nullable=False),
    Column("quantity", Numeric(14, 3), nullable=False),
    Column("unit_price", Numeric(14, 6), nullable=False),
    Column("amount", Numeric(14, 2), nullable=False),
    Column("tax_rate", Numeric(5, 4), nullable=False),
    Column("tax", Numeric(14, 2), nullable=False),
    PrimaryKeyConstraint("invoice_id", "line_no", name="pk_core_invoice_line"),
)
