"""Tables of the REST API (``core.api``): API users, their bearer tokens (hashed) and the write audit.

They live in the core's ``metadata``; importing this module registers them.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, ForeignKey, Index, Integer, String, Table

from core.db.tables import metadata
from core.db.types import UTCDateTime

api_user = Table(
    "core_api_user",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("role", String(32), nullable=False),
    Column("password_salt", String(64), nullable=False),
    Column("password_hash", String(128), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("first_failed_at", UTCDateTime()),
    Column("locked_until", UTCDateTime()),
    Column("created_at", UTCDateTime(), nullable=False),
)

api_token = Table(
    "core_api_token",
    metadata,
    # sha256 (hex) of the bearer token; the token itself is never stored.
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", String(32), ForeignKey("core_api_user.id"), nullable=False, index=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("last_used_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime()),
)

api_audit = Table(
    "core_api_audit",
    metadata,
    Column("seq", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("user_id", String(32)),
    Column("username", String(64)),
    Column("role", String(32)),
    Column("method", String(8), nullable=False),
    Column("path", String(500), nullable=False),
    Column("resource", String(32), nullable=False),
    Column("resource_id", String(64)),
    Column("remote", String(64)),
    Column("status", Integer, nullable=False),
    Column("detail", String(200), nullable=False, default=""),
    Index("ix_core_api_audit_at", "at"),
    Index("ix_core_api_audit_user", "user_id", "seq"),
)
