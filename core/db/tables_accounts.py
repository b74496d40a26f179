"""The core's account tables (requirement U1): customers, premises, accounts and their history.

Personal fields are stored only as ``FieldCipher`` tokens (``*_enc``) bound to table, column and
row; exact lookup goes through the blind indexes (``*_bidx``). Times are ``UTCDateTime``.
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    Text,
)

from core.db.tables import metadata
from core.db.types import UTCDateTime

DISTRICTS = ("yuecheng", "keqiao", "shangyu", "zhuji", "shengzhou", "xinchang")
"""The six districts of Shaoxing: 越城区 柯桥区 上虞区 诸暨市 嵊州市 新昌县."""

LAT_RANGE = (29.2, 30.3)
LON_RANGE = (119.9, 121.2)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


customer = Table(
    "core_customer",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name_enc", Text, nullable=False),
    Column("phone_enc", Text, nullable=False),
    Column("id_number_enc", Text, nullable=False),
    Column("address_enc", Text),
    Column("phone_bidx", String(64), nullable=False, index=True),
    Column("id_number_bidx", String(64), nullable=False, index=True),
    Column("created_at", UTCDateTime(), nullable=False),
)

premises = Table(
    "core_premises",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("address_enc", Text, nullable=False),
    Column("district", String(16), nullable=False),
    Column("lat", Float, nullable=False),
    Column("lon", Float, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    CheckConstraint(_in("district", DISTRICTS), name="district"),
    CheckConstraint(f"lat BETWEEN {LAT_RANGE[0]} AND {LAT_RANGE[1]}", name="lat"),
    CheckConstraint(f"lon BETWEEN {LON_RANGE[0]} AND {LON_RANGE[1]}", name="lon"),
)

account = Table(
    "core_account",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("account_number", String(20), nullable=False, unique=True),
    Column("category", String(16), nullable=False),
    Column("subcategory", String(16)),
    Column("billing", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("premises_id", String(32), ForeignKey("core_premises.id"), nullable=False, index=True),
    Column("customer_id", String(32), ForeignKey("core_customer.id"), nullable=False, index=True),
    Column("opened_at", UTCDateTime(), nullable=False),
    Column("closed_at", UTCDateTime()),
    Column("final_reading_m3", Numeric(14, 3)),
    # The bill the close issued for the use up to the final reading (core.lifecycle); no foreign key,
    # since core_bill refers to the account.
    Column("final_bill_id", String(32)),
    CheckConstraint(_in("category", ("residential", "non_residential")), name="category"),
    CheckConstraint(
        "(category = 'residential' AND subcategory IS NULL) OR "
        "(category = 'non_residential' AND subcategory IN ('industrial', 'commercial', 'heating'))",
        name="subcategory",
    ),
    CheckConstraint(_in("billing", ("prepaid", "postpaid")), name="billing"),
    CheckConstraint(_in("status", ("active", "suspended", "closed")), name="status"),
)

account_holder_history = Table(
    "core_account_holder_history",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("account_id", String(32), ForeignKey("core_account.id"), nullable=False),
    Column("customer_id", String(32), ForeignKey("core_customer.id"), nullable=False),
    Column("valid_from", UTCDateTime(), nullable=False),
    Column("valid_to", UTCDateTime()),
    Column("arrears_policy", String(16)),
    # What the holder took over at a transfer: the debt carried (``carry``), 0 once settled (``settle``).
    Column("arrears_carried", Numeric(14, 2)),
    Index("ix_core_account_holder_history_account", "account_id", "valid_from"),
    Index("ix_core_account_holder_history_customer", "customer_id"),
    CheckConstraint("arrears_policy IS NULL OR arrears_policy IN ('settle', 'carry')", name="arrears_policy"),
)

account_status_history = Table(
    "core_account_status_history",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("account_id", String(32), ForeignKey("core_account.id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("effective_from", UTCDateTime(), nullable=False),
    Column("reason", Text, nullable=False),
    Index("ix_core_account_status_history_account", "account_id", "effective_from"),
)

account_household = Table(
    "core_account_household",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("account_id", String(32), ForeignKey("core_account.id"), nullable=False),
    Column("effective_from", Date, nullable=False),
    Column("residents", Integer, nullable=False),
    Column("approval_reference", String(64)),
    Column("approval_valid_from", Date),
    Column("approval_valid_until", Date),
    Column("recorded_at", UTCDateTime(), nullable=False),
    Column("recorded_by", String(64), nullable=False),
    Column("client_request_id", String(64), nullable=False),
    CheckConstraint("residents BETWEEN 1 AND 99", name="residents"),
    CheckConstraint(
        "(approval_reference IS NULL AND approval_valid_from IS NULL AND approval_valid_until IS NULL) OR "
        "(approval_reference IS NOT NULL AND approval_valid_from IS NOT NULL AND "
        "(approval_valid_until IS NULL OR approval_valid_until > approval_valid_from))",
        name="approval",
    ),
    Index("ix_core_account_household_account", "account_id", "recorded_at"),
)
"""An account's household (rule 4 of domain.md: the large-household uplift), one row per change.

History is kept as an append-only list of whole households rather than one row updated in place
(or a separate approvals table): a ``Household`` has exactly one approval, a change of residents
and a new approval are usually one decision, and a bill must be reproducible later. A row says
"from ``effective_from`` on, the household is this"; the household of a billing period
``[start, end)`` is the latest *recorded* row whose ``effective_from`` is before ``end``
(:func:`core.accounts.household.household_for_period`), and its approval's own
``[valid_from, valid_until)`` bounds the uplift inside the period. ``recorded_by``/``recorded_at``/
``client_request_id`` say who made the change and when (the change is idempotent by that id)."""

request = Table(
    "core_request",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("client_request_id", String(64), nullable=False, unique=True),
    Column("operation", String(32), nullable=False),
    Column("fingerprint", String(96), nullable=False),
    Column("account_id", String(32)),
    Column("result", Text),
    Column("created_at", UTCDateTime(), nullable=False),
)
