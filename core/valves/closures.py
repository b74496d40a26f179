"""Why a valve is closed: one ``core_valve_closure`` row per close command sent for a reason that
must be checked before the valve opens again (see :mod:`core.db.tables_valves`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncConnection

from core.catalogue.messages import AlarmKind
from core.db.bulk import insert_many
from core.db.tables_valves import valve_closure

CLOSE_VALVE_FOR = frozenset({AlarmKind.LEAK, AlarmKind.ABNORMAL_FLOW, AlarmKind.GAS_DETECTOR})
"""Alarm kinds that keep a valve closed while one of them is open, whatever closed it; the alarm policy
(``core.alarms``) decides which kinds close it (these by default), and an open alarm of any kind that
closed it keeps it closed too."""


class ClosedBy(StrEnum):
    PREPAID = "prepaid"
    """The prepaid balance reached zero."""
    SAFETY = "safety"
    """An alarm whose kind the alarm policy closes for (leak, abnormal flow, gas detector by default)."""
    OPERATOR = "operator"
    """An operator's decision (no use case sends one yet)."""


@dataclass(frozen=True, slots=True)
class Closure:
    id: str
    """The close command's id."""
    meter_id: str
    reason: ClosedBy
    reference: str
    """The reading (prepaid) or alarm (safety) that caused it."""
    closed_at: datetime
    correlation_id: str
    message_id: str | None
    """The close command's message id in the outbox."""


async def record_closures(conn: AsyncConnection, closures: Sequence[Closure]) -> None:
    """Store closures; one already stored (the same command) is left as it is."""
    await insert_many(conn, valve_closure, [
        {"id": c.id, "meter_id": c.meter_id, "reason": c.reason.value, "reference": c.reference,
         "closed_at": c.closed_at, "correlation_id": c.correlation_id, "message_id": c.message_id,
         "reopen_id": None}
        for c in closures
    ], ignore_conflicts=True)


async def open_closures(conn: AsyncConnection, meter_ids: Iterable[str]) -> dict[str, list[Closure]]:
    """Per meter, its closures no reopen has resolved yet, oldest first."""
    ids = sorted(set(meter_ids))
    if not ids:
        return {}
    stmt = (select(valve_closure).where(valve_closure.c.meter_id.in_(ids), valve_closure.c.reopen_id.is_(None))
            .order_by(valve_closure.c.meter_id, valve_closure.c.closed_at, valve_closure.c.id))
    found: dict[str, list[Closure]] = {}
    for r in await conn.execute(stmt):
        found.setdefault(r.meter_id, []).append(closure_of(r))
    return found


def closure_of(r: Row[Any]) -> Closure:
    """A ``core_valve_closure`` row as a :class:`Closure`."""
    return Closure(id=r.id, meter_id=r.meter_id, reason=ClosedBy(r.reason), reference=r.reference,
                   closed_at=r.closed_at, correlation_id=r.correlation_id, message_id=r.message_id)
