"""The core use cases that routes can target as ``core:<name>``.

``HANDLERS`` is a plain, immutable table built from the modules below; the hub looks a route's
target up in it when it loads routes, so a misspelt name fails at start-up, not at runtime.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from core.handlers.alarms import record_alarm
from core.handlers.bills import notify_bill
from core.handlers.notifications import record_notification_delivery
from core.handlers.readings import record_reading
from core.handlers.valves import record_valve_state
from core.messages import CoreHandler

HANDLERS: Mapping[str, CoreHandler] = MappingProxyType(
    {
        h.name: h
        for h in (
            CoreHandler("record_reading", "meter.reading", record_reading, "Store a meter reading."),
            CoreHandler(
                "record_alarm",
                "alarm.raised",
                record_alarm,
                "Record an alarm; close the valve for leaks and abnormal flow.",
                emits=("valve.command",),
            ),
            CoreHandler.with_services(
                "notify_bill",
                "bill.issued",
                notify_bill,
                "Tell the account holder about a new bill by SMS.",
                emits=("notification.requested",),
            ),
            CoreHandler("record_valve_state", "valve.state", record_valve_state, "Store a valve report."),
            CoreHandler(
                "record_notification_delivery",
                "notification.delivered",
                record_notification_delivery,
                "Track what happened to a notification.",
            ),
        )
    }
)

__all__ = ["HANDLERS"]
