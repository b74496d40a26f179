"""Why a meter's valve was closed, and the on-site confirmations that reopened it.

* ``core_valve_closure`` — one row per close command the core sent for a reason it must check before
  the valve may open again: ``prepaid`` (the balance reached zero; ``reference`` is the reading that
  took it there), ``safety`` (a leak or similar alarm; ``reference`` is the alarm id) or ``operator``.
  ``id`` is the close command's id, so a command is recorded once. A closure stays open
  (``reopen_id IS NULL``) until a field engineer's confirmed reopen resolves it.
  ``correlation_id`` and ``message_id`` are the business flow and the outbox message of the close
  command: the reopen command joins that flow, so one trace shows the valve closed and reopened.
* ``core_valve_reopen`` — a field engineer's on-site confirmation and the open command it sent
  (``command_id``), unique per ``client_request_id`` (a retried request is the same reopen). Who
  checked, when, and the engineer's notes; ``user_id`` is the API user who sent it.
"""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, ForeignKey, Index, String, Table, Text

from core.db.tables import metadata
from core.db.types import UTCDateTime

CLOSURE_REASONS = ("prepaid", "safety", "operator")

valve_reopen = Table(
    "core_valve_reopen",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("client_request_id", String(64), nullable=False, unique=True),
    Column("meter_id", String(32), nullable=False, index=True),
    Column("command_id", String(64), nullable=False, unique=True),
    Column("checked_by", String(64), nullable=False),
    Column("checked_at", UTCDateTime(), nullable=False),
    Column("notes", Text, nullable=False),
    Column("user_id", String(32), nullable=False),
    Column("requested_at", UTCDateTime(), nullable=False),
)

valve_closure = Table(
    "core_valve_closure",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("meter_id", String(32), nullable=False),
    Column("reason", String(16), nullable=False),
    Column("reference", String(64), nullable=False),
    Column("closed_at", UTCDateTime(), nullable=False),
    Column("correlation_id", String(64), nullable=False),
    Column("message_id", String(32)),
    Column("reopen_id", String(32), ForeignKey("core_valve_reopen.id")),
    Index("ix_core_valve_closure_meter", "meter_id", "reopen_id"),
    CheckConstraint(f"reason IN ({', '.join(repr(r) for r in CLOSURE_REASONS)})", name="reason"),
)
