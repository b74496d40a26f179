"""The core use cases that routes can target as ``core:<name>``.

``build_handlers(config)`` returns a plain, immutable table of them, configured with what the hub
passes in (``CoreConfig``: reading-validation settings, the personal-data keys). The hub builds it
once at start-up and looks a route's target up in it when it loads routes, so a misspelt name fails
at start-up, not at runtime. ``HANDLERS`` is the table with the default configuration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from core.handlers.alarms import record_alarm
from core.handlers.config import CoreConfig
from core.handlers.notifications import record_notification_delivery
from core.handlers.reading_exceptions import record_reading_exception
from core.handlers.readings import record_reading
from core.handlers.valves import record_valve_state
from core.messages import CoreHandler, HandlerFn, Incoming


def _reading_handler(config: CoreConfig) -> HandlerFn:
    async def handle(conn: AsyncConnection, items: Sequence[Incoming]) -> Sequence[Mapping[str, Any] | None]:
        return await record_reading(conn, items, settings=config.readings, privacy=config.privacy)

    return handle


def build_handlers(config: CoreConfig | None = None) -> Mapping[str, CoreHandler]:
    """The core handlers, configured with ``config`` (defaults when ``None``)."""
    config = config or CoreConfig()
    return MappingProxyType(
        {
            h.name: h
            for h in (
                CoreHandler(
                    "record_reading",
                    "meter.reading",
                    _reading_handler(config),
                    "Validate and store meter readings; flag, alarm and notify on what the rules find.",
                    emits=config.readings.emits(),
                ),
                CoreHandler(
                    "record_reading_exception",
                    "reading.flagged",
                    record_reading_exception,
                    "Keep a flagged reading on the exceptions list until an operator resolves it.",
                ),
                CoreHandler(
                    "record_alarm",
                    "alarm.raised",
                    record_alarm,
                    "Record an alarm; close the valve for leaks and abnormal flow.",
                    emits=("valve.command",),
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


HANDLERS: Mapping[str, CoreHandler] = build_handlers()

__all__ = ["HANDLERS", "CoreConfig", "build_handlers"]
