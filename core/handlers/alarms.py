"""Record alarms and start the safety response (U3).

Policy per alarm kind: leaks and abnormal flow close the valve at once; every alarm is stored as
open until an operator clears it. The user's SMS and the emergency work order arrive with the
meters and domain issues; the valve command goes out through the outbox on the safety lane.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from core.catalogue import Lane
from core.catalogue.messages import AlarmKind, AlarmRaised, ValveAction, ValveCommand
from core.db.bulk import insert_many
from core.db.tables import alarm
from core.messages import Event, Incoming
from core.outbox import emit

CLOSE_VALVE_FOR = frozenset({AlarmKind.LEAK, AlarmKind.ABNORMAL_FLOW, AlarmKind.GAS_DETECTOR})


async def record_alarm(conn: AsyncConnection, items: Sequence[Incoming]) -> Sequence[Mapping[str, Any] | None]:
    rows = []
    by_id: dict[str, Incoming] = {}
    for item in items:
        a = item.data
        assert isinstance(a, AlarmRaised)
        by_id[a.alarm_id] = item
        rows.append(
            {
                "id": a.alarm_id,
                "kind": a.kind.value,
                "meter_id": a.meter_id,
                "severity": a.severity,
                "detected_at": a.detected_at.astimezone(UTC),
                "status": "open",
                "detail": a.detail,
                "message_id": item.message_id,
            }
        )
    new_ids = {r[0] for r in await insert_many(conn, alarm, rows, ignore_conflicts=True, returning=("id",))}
    events = []
    for alarm_id in sorted(new_ids):
        item = by_id[alarm_id]
        a = item.data
        assert isinstance(a, AlarmRaised)
        if a.kind in CLOSE_VALVE_FOR:
            command = ValveCommand(
                command_id=f"close-{a.alarm_id}",
                meter_id=a.meter_id,
                action=ValveAction.CLOSE,
                reason=f"{a.kind.value} alarm {a.alarm_id}",
                requested_by="core.safety",
            )
            events.append((Event("valve.command", command, subject=a.meter_id, lane=Lane.SAFETY), item))
    await emit(conn, events)
    return [None] * len(items)
