"""Work orders (the dispatch loop's record) and their history.

* ``core_work_order`` — one per job. ``source`` says what opened it (``alarm:<alarm id>``) and is
  unique, so an alarm delivered twice opens one order. ``status`` is the loop's state
  (:mod:`core.workorders.states`), ``flags`` the side states as a sorted comma-separated list.
  ``due_at`` is when the category's SLA clock runs out; ``clock_until`` the state that stops it
  (``on_site`` or ``handled``) and ``clock_stopped_at`` when it stopped. ``correlation_id`` is the
  business flow that opened it (the alarm's), so the ops trace and the order join up. No personal data:
  the order points at the account and meter.
* ``core_work_order_event`` — its history, append-only: opened, each transition and each side state
  set, with who, when and their note.
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, String, Table, Text

from core.db.tables import metadata
from core.db.types import UTCDateTime

work_order = Table(
    "core_work_order",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("source", String(100), nullable=False, unique=True),
    Column("category", String(32), nullable=False),
    Column("priority", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("flags", String(100), nullable=False, default=""),
    Column("account_id", String(32)),
    Column("meter_id", String(32), index=True),
    Column("alarm_id", String(64), index=True),
    Column("summary", Text, nullable=False, default=""),
    Column("opened_at", UTCDateTime(), nullable=False),
    Column("due_at", UTCDateTime(), nullable=False),
    Column("clock_until", String(16), nullable=False),
    Column("clock_stopped_at", UTCDateTime()),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("correlation_id", String(64), nullable=False),
    Index("ix_core_work_order_clock", "clock_stopped_at", "due_at"),
)

work_order_event = Table(
    "core_work_order_event",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("order_id", String(32), ForeignKey("core_work_order.id"), nullable=False, index=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("by", String(64), nullable=False),
    Column("action", String(16), nullable=False),
    Column("from_status", String(16)),
    Column("to_status", String(16)),
    Column("flag", String(32)),
    Column("note", Text, nullable=False, default=""),
)
