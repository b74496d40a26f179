"""Record alarms and start the safety response (U3), by the alarm policy (``[core.alarms]``).

Each alarm is stored once (``core_alarm``, by its id) as ``open``, with the flow it came in; only an
alarm stored now acts, so an alarm delivered twice acts once. Per its kind's
:class:`~core.alarms.AlarmAction`, in one transaction with the alarm:

* the valve closes: ``valve.command`` close on the safety lane, written first so the relay publishes it
  before anything else, and the closure recorded (``core_valve_closure``, reason ``safety``): the valve
  reopens only through a field engineer's on-site confirmation, once the alarm is no longer open;
* the holder is told: ``notification.requested`` (``alarm-<alarm id>``, the policy's template kind),
  when the meter is on an account and the personal-data keys can read the phone (skipped and logged
  otherwise: the valve and the order must not wait for an SMS), unless the alarm says the holder was
  told already (``user_notified``: the core's reading validation tells of a leak it finds itself);
* a work order opens (``alarm:<alarm id>``), its deadline from the category's SLA commitment.

Everything emitted joins the alarm's flow (its correlation id, caused by the alarm's message), and the
order keeps that correlation id: the ops trace of the alarm shows the whole response.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from core.accounts import Privacy
from core.alarms import DEFAULT_ALARMS, AlarmAction, AlarmPolicy
from core.catalogue import Lane
from core.catalogue.messages import AlarmRaised, NotificationRequested, ValveAction, ValveCommand
from core.db.bulk import insert_many
from core.db.tables import alarm
from core.db.tables_accounts import customer
from core.db.tables_billing import meter
from core.handlers.reading_context import holders
from core.messages import Event, Incoming, derived_id
from core.outbox import emit
from core.privacy import DecryptionError, field_context
from core.valves import ClosedBy, Closure, record_closures
from core.workorders import DEFAULT_WORK_ORDERS, NewWorkOrder, WorkOrderSettings, open_work_orders

log = logging.getLogger(__name__)

SAFETY_ACTOR = "core.safety"


@dataclass(frozen=True, slots=True)
class _New:
    item: Incoming
    alarm: AlarmRaised
    action: AlarmAction
    severity: int


class AlarmHandler:
    """``core:record_alarm`` bound to the deployment's policy, work-order calendar and keys."""

    def __init__(self, policy: AlarmPolicy, work_orders: WorkOrderSettings, privacy: Privacy | None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.policy = policy.check(work_orders)
        self.work_orders = work_orders
        self.privacy = privacy
        self.clock = clock or (lambda: datetime.now(UTC))

    async def record_alarm(self, conn: AsyncConnection,
                           items: Sequence[Incoming]) -> Sequence[Mapping[str, Any] | None]:
        rows = []
        by_id: dict[str, _New] = {}
        for item in items:
            a = item.data
            assert isinstance(a, AlarmRaised)
            action = self.policy.action(a.kind)
            severity = max(a.severity, action.severity)
            by_id.setdefault(a.alarm_id, _New(item, a, action, severity))
            rows.append({"id": a.alarm_id, "kind": a.kind.value, "meter_id": a.meter_id, "severity": severity,
                         "detected_at": a.detected_at.astimezone(UTC), "status": "open", "detail": a.detail,
                         "message_id": item.message_id, "correlation_id": item.correlation_id})
        inserted = await insert_many(conn, alarm, rows, ignore_conflicts=True, returning=("id",))
        new = [by_id[r[0]] for r in sorted(inserted)]
        if new:
            await self._respond(conn, new)
        return [None] * len(items)

    async def _respond(self, conn: AsyncConnection, new: list[_New]) -> None:
        now = self.clock()
        accounts = await _accounts(conn, {n.alarm.meter_id for n in new})
        phones = await self._phones(conn, {n.alarm.meter_id for n in new
                                           if n.action.notify_user is not None and not n.alarm.user_notified})
        closing = [n for n in new if n.action.close_valve]
        events: list[tuple[Event, Incoming]] = []
        for n in closing:
            command = ValveCommand(command_id=derived_id("close", n.alarm.alarm_id), meter_id=n.alarm.meter_id,
                                   action=ValveAction.CLOSE, reason=f"{n.alarm.kind.value} alarm {n.alarm.alarm_id}",
                                   requested_by=SAFETY_ACTOR)
            events.append((Event("valve.command", command, subject=n.alarm.meter_id, lane=Lane.SAFETY), n.item))
        for n in new:
            if n.action.notify_user is None or n.alarm.user_notified:
                continue
            phone = phones.get(n.alarm.meter_id)
            if phone is None:
                log.info("alarms.notification_skipped", extra={
                    "alarm_id": n.alarm.alarm_id, "meter_id": n.alarm.meter_id,
                    "reason": "no holder's phone (meter on no account, or no personal-data keys)"})
                continue
            note = NotificationRequested(
                notification_id=derived_id("alarm", n.alarm.alarm_id), kind=n.action.notify_user,
                account_id=n.alarm.account_id or accounts.get(n.alarm.meter_id), phone=phone,
                params={"alarm_id": n.alarm.alarm_id, "kind": n.alarm.kind.value, "meter_id": n.alarm.meter_id,
                        "detected_at": n.alarm.detected_at.isoformat(),
                        "valve": "closing" if n.action.close_valve else "unchanged"},
                safety=n.action.close_valve or n.severity >= 4)
            events.append((Event("notification.requested", note, subject=n.alarm.meter_id), n.item))
        ids = await emit(conn, events)
        await record_closures(conn, [
            Closure(derived_id("close", n.alarm.alarm_id), n.alarm.meter_id, ClosedBy.SAFETY, n.alarm.alarm_id, now,
                    n.item.correlation_id, message_id)
            for n, message_id in zip(closing, ids[:len(closing)], strict=True)
        ])
        orders = [
            NewWorkOrder(source=f"alarm:{n.alarm.alarm_id}", category=n.action.work_order.category,
                         priority=n.action.work_order.priority, correlation_id=n.item.correlation_id,
                         account_id=n.alarm.account_id or accounts.get(n.alarm.meter_id),
                         meter_id=n.alarm.meter_id, alarm_id=n.alarm.alarm_id,
                         summary=f"{n.alarm.kind.value} alarm (severity {n.severity}) at meter {n.alarm.meter_id}")
            for n in new if n.action.work_order is not None
        ]
        await open_work_orders(conn, orders, self.work_orders, by=SAFETY_ACTOR, now=now)

    async def _phones(self, conn: AsyncConnection, meter_ids: set[str]) -> dict[str, str]:
        if not meter_ids or self.privacy is None:
            return {}
        out = {}
        for meter_id, holder in (await holders(conn, meter_ids)).items():
            try:
                out[meter_id] = self.privacy.cipher.decrypt(
                    holder.phone_enc, context=field_context(customer.name, "phone", holder.customer_id))
            except DecryptionError:
                log.warning("alarms.phone_unreadable", extra={"meter_id": meter_id, "account_id": holder.account_id})
        return out


async def _accounts(conn: AsyncConnection, meter_ids: set[str]) -> dict[str, str]:
    stmt = select(meter.c.id, meter.c.account_id).where(meter.c.id.in_(sorted(meter_ids)),
                                                        meter.c.account_id.is_not(None))
    return {r.id: r.account_id for r in await conn.execute(stmt)}


async def record_alarm(conn: AsyncConnection, items: Sequence[Incoming]) -> Sequence[Mapping[str, Any] | None]:
    """``core:record_alarm`` with the default policy and calendar and no personal-data keys (no SMS)."""
    return await AlarmHandler(DEFAULT_ALARMS, DEFAULT_WORK_ORDERS, None).record_alarm(conn, items)
