"""The hub's tables. Only the hub writes them. Times are integer microseconds since the epoch so that
the audit hash covers exactly what is stored, on every database."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, MetaData, String, Table, Text

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

message = Table(
    "hub_message",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("type", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("source", String(64), nullable=False),
    Column("subject", String(64)),
    Column("correlation_id", String(64), nullable=False),
    Column("causation_id", String(64)),
    Column("time_us", BigInteger, nullable=False),
    Column("stored_us", BigInteger, nullable=False),
    Column("headers", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    Index("ix_hub_message_correlation", "correlation_id"),
    Index("ix_hub_message_type_time", "type", "time_us"),
)

hop = Table(
    "hub_hop",
    metadata,
    Column("seq", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False),
    Column("message_id", String(64), nullable=False),
    Column("correlation_id", String(64), nullable=False),
    Column("route", String(100), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("duration_us", BigInteger, nullable=False),
    Column("error", Text, nullable=False),
    Column("mapping_version", String(100), nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_hub_hop_message", "message_id"),
    Index("ix_hub_hop_correlation", "correlation_id"),
)

audit_head = Table(
    "hub_audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

dead_letter = Table(
    "hub_dead_letter",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("message_id", String(64), nullable=False),
    Column("correlation_id", String(64)),
    Column("type", String(100)),
    Column("route", String(100), nullable=False),
    Column("reason", Text, nullable=False),
    Column("error_class", String(100), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("dead_us", BigInteger, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("body_truncated", Integer, nullable=False, default=0),
    Column("sha256", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("replayed_us", BigInteger),
    Column("replay_mapping_version", Integer),
    Index("ix_hub_dead_letter_status", "status", "dead_us"),
    Index("ix_hub_dead_letter_message", "message_id"),
)

inbox = Table(
    "hub_inbox",
    metadata,
    Column("source", String(64), primary_key=True),
    Column("partner_key", String(200), primary_key=True),
    Column("message_id", String(64), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("received_us", BigInteger, nullable=False),
    Column("published_us", BigInteger),
)

processed = Table(
    "hub_processed",
    metadata,
    Column("route", String(100), primary_key=True),
    Column("message_id", String(64), primary_key=True),
    Column("processed_us", BigInteger, nullable=False),
    Column("reply", LargeBinary),
)
