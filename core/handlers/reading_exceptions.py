"""Keep flagged readings on the exceptions list (E1): the work queue of meter-data operators.

``reading.flagged`` comes from ``record_reading`` through the outbox and a route. One row per
reading (its id is the reading's id), open until an operator resolves it; a redelivered event
changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from core.catalogue.messages import ReadingFlagged
from core.db.bulk import insert_many
from core.db.tables import reading_exception
from core.messages import Incoming
from core.readings import Severity

_RANK = {s.value: n for n, s in enumerate(Severity)}


def highest_severity(severities: Iterable[str]) -> str:
    """The most severe of the findings' severities (``info`` < ``warning`` < ``error`` < ``critical``)."""
    return max(severities, key=lambda s: _RANK.get(s, -1), default=Severity.INFO.value)


async def record_reading_exception(
    conn: AsyncConnection, items: Sequence[Incoming]
) -> Sequence[Mapping[str, Any] | None]:
    now = datetime.now(UTC)
    rows = []
    for item in items:
        f = item.data
        assert isinstance(f, ReadingFlagged)
        rows.append({
            "id": f.reading_id,
            "meter_id": f.meter_id,
            "account_id": f.account_id,
            "read_at": f.read_at.astimezone(UTC),
            "volume_m3": f.volume_m3,
            "consumption_m3": f.consumption_m3,
            "rules": ",".join(sorted({x.rule for x in f.findings}))[:200],
            "billable": f.billable,
            "findings": orjson.dumps([x.model_dump(mode="json", exclude_none=True) for x in f.findings]).decode(),
            "status": "open",
            "kind": "reading",
            "severity": highest_severity(x.severity for x in f.findings),
            "created_at": now,
            "message_id": item.message_id,
        })
    await insert_many(conn, reading_exception, rows, ignore_conflicts=True)
    return [None] * len(items)
