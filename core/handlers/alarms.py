"""Record alarms and start the safety response (U3).

Policy per alarm kind: leaks, abnormal flow and gas detectors close the valve at once
(``core.valves.CLOSE_VALVE_FOR``); every alarm is stored as open until an operator acknowledges or
closes it. The valve command goes out through the outbox on the safety lane, and the closure is
recorded (``core_valve_closure``, reason ``safety``): the valve reopens only through a field
engineer's on-site confirmation, once the alarm is no longer open.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from core.catalogue import Lane
from core.catalogue.messages import AlarmRaised, ValveAction, ValveCommand
from core.db.bulk import insert_many
from core.db.tables import alarm
from core.messages import Event, Incoming
from core.outbox import emit
from core.valves import CLOSE_VALVE_FOR, ClosedBy, Closure, record_closures


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
    closing: list[tuple[ValveCommand, AlarmRaised, Incoming]] = []
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
            closing.append((command, a, item))
    ids = await emit(conn, events)
    now = datetime.now(UTC)
    await record_closures(conn, [
        Closure(command.command_id, a.meter_id, ClosedBy.SAFETY, a.alarm_id, now, item.correlation_id, message_id)
        for (command, a, item), message_id in zip(closing, ids, strict=True)
    ])
    return [None] * len(items)
