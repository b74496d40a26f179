"""What users answer by SMS and what the company announces to many (P6.1, U6).

* ``core_sms_reply`` — every reply, once (``id`` is the provider's message id, ``aliyun-<sequence id>``):
  the text encrypted (``content_enc``), the number as a blind index only, the account it came from
  (the holder with that number) and the notification it answers, when known; ``rating`` when the text
  is a rating.
* ``core_satisfaction`` — satisfaction records: a rating 1–5 with what it rates (the account's latest
  work order and the notification), once per reply (``id`` = the reply's id).
* ``core_announcement`` — a notice sent to the accounts of a district, once per client request id,
  with how many notifications it asked for.
"""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, Integer, String, Table, Text

from core.db.tables import metadata
from core.db.types import UTCDateTime

sms_reply = Table(
    "core_sms_reply",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("phone_bidx", String(64), nullable=False, index=True),
    Column("content_enc", Text, nullable=False),
    Column("account_id", String(32), index=True),
    Column("notification_id", String(64)),
    Column("rating", Integer),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
    Column("message_id", String(64), nullable=False),
)

satisfaction = Table(
    "core_satisfaction",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("rating", Integer, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("account_id", String(32), index=True),
    Column("work_order_id", String(32), index=True),
    Column("notification_id", String(64)),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
    CheckConstraint("rating BETWEEN 1 AND 5", name="rating"),
)

announcement = Table(
    "core_announcement",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("client_request_id", String(64), nullable=False, unique=True),
    Column("district", String(16), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("params", Text, nullable=False),
    Column("recipients", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(64), nullable=False),
)
