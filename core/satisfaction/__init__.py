"""Users' SMS replies and the satisfaction records they make (P6.1, U6; satisfaction evaluation).

``sms.replied`` → one ``core_sms_reply`` row per reply id (a reply delivered twice is one): the text
encrypted, the number kept as a blind index, linked to the account whose holder has that number (an
active one first, then the latest opened) and to the notification it answers, when the connector knew
it. A reply that is a rating (``1``–``5``, full-width digits and a trailing 分/星 accepted) also makes a
``core_satisfaction`` record for the account's latest work order, the visit the rating is asked about.
Other replies are stored (and readable by staff in the audit of that table), never acted on here.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, select
from sqlalchemy.ext.asyncio import AsyncConnection

from core.accounts import Privacy
from core.catalogue.messages import SmsReplied
from core.config import CoreConfig
from core.db.bulk import insert_many
from core.db.tables_accounts import account, customer
from core.db.tables_sms import satisfaction, sms_reply
from core.db.tables_workorders import work_order
from core.messages import Incoming
from core.payments import KeysMissing
from core.privacy import field_context

RATING = re.compile(r"^([1-5])\s*[分星]?$")


def rating_of(text: str) -> int | None:
    """The rating a reply gives, or ``None`` when it is not one."""
    match = RATING.fullmatch(unicodedata.normalize("NFKC", text).strip())
    return int(match.group(1)) if match else None


async def _account_of(conn: AsyncConnection, privacy: Privacy, phone: str) -> str | None:
    candidates = privacy.index.candidates(phone, purpose="phone")
    return await conn.scalar(
        select(account.c.id).join(customer, customer.c.id == account.c.customer_id)
        .where(customer.c.phone_bidx.in_(candidates))
        .order_by(case((account.c.status == "active", 0), else_=1), account.c.opened_at.desc(), account.c.id)
        .limit(1))


async def _latest_work_order(conn: AsyncConnection, account_id: str | None) -> str | None:
    if account_id is None:
        return None
    return await conn.scalar(select(work_order.c.id).where(work_order.c.account_id == account_id)
                             .order_by(work_order.c.opened_at.desc(), work_order.c.id.desc()).limit(1))


class SmsReplies:
    def __init__(self, config: CoreConfig, *, clock: Any = None) -> None:
        self.privacy = config.privacy
        self.clock = clock or (lambda: datetime.now(UTC))

    async def record_sms_reply(self, conn: AsyncConnection,
                               items: Sequence[Incoming]) -> Sequence[Mapping[str, Any] | None]:
        if self.privacy is None:
            raise KeysMissing("an SMS reply is stored encrypted and matched to its account by a blind index, and "
                              "personal-data keys are not configured: set GASHUB_CORE__KEYS__<id> (and "
                              "GASHUB_CORE__CURRENT_KEY), restart, then replay this message")
        privacy = self.privacy
        ids = [item.data.reply_id for item in items if isinstance(item.data, SmsReplied)]
        seen = set((await conn.scalars(select(sms_reply.c.id).where(sms_reply.c.id.in_(ids)))).all())
        now = self.clock()
        for item in items:
            reply = item.data
            assert isinstance(reply, SmsReplied)
            if reply.reply_id in seen:
                continue
            seen.add(reply.reply_id)
            account_id = await _account_of(conn, privacy, reply.phone)
            rating = rating_of(reply.content)
            await insert_many(conn, sms_reply, [{
                "id": reply.reply_id, "phone_bidx": privacy.index.phone(reply.phone),
                "content_enc": privacy.cipher.encrypt(reply.content,
                                                      context=field_context(sms_reply.name, "content", reply.reply_id)),
                "account_id": account_id, "notification_id": reply.in_reply_to, "rating": rating,
                "received_at": reply.received_at.astimezone(UTC), "recorded_at": now, "message_id": item.message_id,
            }], ignore_conflicts=True)
            if rating is not None:
                await insert_many(conn, satisfaction, [{
                    "id": reply.reply_id, "rating": rating, "channel": "sms", "account_id": account_id,
                    "work_order_id": await _latest_work_order(conn, account_id),
                    "notification_id": reply.in_reply_to, "received_at": reply.received_at.astimezone(UTC),
                    "recorded_at": now,
                }], ignore_conflicts=True)
        return [None] * len(items)


__all__ = ["SmsReplies", "rating_of"]
