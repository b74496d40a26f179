"""The core's tables. Only the core writes them; the hub reads the outbox through ``core.outbox``."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from core.db.types import UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

outbox = Table(
    "core_outbox",
    metadata,
    Column("seq", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("id", String(32), nullable=False, unique=True),
    Column("type", String(100), nullable=False),
    Column("version", Integer, nullable=False, default=1),
    Column("subject", String(64)),
    Column("correlation_id", String(64), nullable=False),
    Column("causation_id", String(64)),
    Column("lane", String(16), nullable=False),
    Column("data", Text, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("published_us", BigInteger),
    Index("ix_core_outbox_pending", "published_us", "seq"),
)

reading = Table(
    "core_reading",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("meter_id", String(32), nullable=False),
    Column("read_at", UTCDateTime(), nullable=False),
    Column("volume_m3", Numeric(14, 3), nullable=False),
    Column("source", String(16), nullable=False),
    Column("quality", String(200), nullable=False, default=""),
    Column("message_id", String(64), nullable=False),
    # The flow the reading came in (its ops trace): a bill it closes is issued in the same flow.
    Column("correlation_id", String(64)),
    UniqueConstraint("meter_id", "read_at", name="uq_core_reading_meter_time"),
)

reading_exception = Table(
    "core_reading_exception",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("meter_id", String(32), nullable=False, index=True),
    Column("account_id", String(32), index=True),
    Column("read_at", UTCDateTime(), nullable=False),
    Column("volume_m3", Numeric(14, 3)),
    Column("consumption_m3", Numeric(14, 3)),
    Column("rules", String(200), nullable=False),
    Column("billable", Boolean, nullable=False),
    Column("findings", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("message_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False, server_default="reading"),
    Column("severity", String(16), nullable=False, server_default="error"),
    Column("resolved_at", UTCDateTime()),
    Column("resolved_by", String(64)),
    Column("resolution", String(16)),
    Column("resolution_note", String(500)),
    Column("corrected_m3", Numeric(14, 3)),
    CheckConstraint("status IN ('open', 'resolved')", name="status"),
    CheckConstraint("kind IN ('reading', 'check')", name="kind"),
    CheckConstraint("resolution IS NULL OR resolution IN ('accepted', 'corrected', 'estimated')", name="resolution"),
    Index("ix_core_reading_exception_status_read_at", "status", "read_at"),
)
"""The exceptions list: findings open until an operator resolves them. ``kind = 'reading'``: a
reading that broke validation rules, ``id`` the reading's id (its message id), ``volume_m3`` its
register. ``kind = 'check'``: a finding of the daily checks (stale, zero use, prolonged
estimation), ``id`` = ``<rule>-<subject>-<day>``, ``read_at`` when it was found, no register.
``rules`` the rule ids, ``severity`` the highest of the findings, ``findings`` the findings as JSON;
``resolution`` (``accepted`` / ``corrected`` with ``corrected_m3`` / ``estimated``), who and when once
resolved."""

alarm = Table(
    "core_alarm",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("meter_id", String(32), nullable=False, index=True),
    Column("severity", Integer, nullable=False),
    Column("detected_at", UTCDateTime(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("detail", Text, nullable=False, default=""),
    Column("message_id", String(64), nullable=False),
    # Added by 0013: the flow the alarm came in (its response joins it) and who acknowledged and
    # closed it, when, and why.
    Column("correlation_id", String(64)),
    Column("acknowledged_by", String(64)),
    Column("acknowledged_at", UTCDateTime()),
    Column("closed_by", String(64)),
    Column("closed_at", UTCDateTime()),
    Column("note", Text),
)

valve_event = Table(
    "core_valve_event",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("meter_id", String(32), nullable=False, index=True),
    Column("state", String(16), nullable=False),
    Column("command_id", String(64)),
    Column("observed_at", UTCDateTime(), nullable=False),
    Column("message_id", String(64), nullable=False, unique=True),
)

notification_status = Table(
    "core_notification_status",
    metadata,
    Column("notification_id", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("provider_ref", String(64)),
    Column("error", Text),
    Column("updated_at", UTCDateTime(), nullable=False),
)
