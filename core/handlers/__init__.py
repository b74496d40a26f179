"""The core use cases that routes can target as ``core:<name>``.

``build_handlers(config)`` makes the table, with the handlers that need the deployment's settings
(reading validation, prepaid deductions and tariffs, payments' invoice policy, the alarm policy and
work-order calendar, the personal-data keys) bound to ``config``; the
composition root calls it once at start-up. ``HANDLERS`` is the table with the default
configuration (no keys), enough to check routes by name. The hub looks a route's target up in the
table when it loads routes, so a misspelt name fails at start-up, not at runtime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from core.config import CoreConfig
from core.handlers.alarms import AlarmHandler
from core.handlers.bills import BillNotifier
from core.handlers.notifications import record_notification_delivery
from core.handlers.payments import PaymentHandlers
from core.handlers.reading_exceptions import record_reading_exception
from core.handlers.readings import record_reading
from core.handlers.valves import record_valve_state
from core.handlers.work_orders import WorkOrderRequests
from core.messages import CoreHandler, HandlerFn, Incoming
from core.prepaid import PrepaidMeters
from core.satisfaction import SmsReplies
from core.tariffs import TariffShelf


def _reading_handler(config: CoreConfig) -> HandlerFn:
    fixed: PrepaidMeters | None = None
    shelf: TariffShelf | None = None
    if config.prepaid_active:
        assert config.tariffs is not None
        if isinstance(config.tariffs, TariffShelf):
            shelf = config.tariffs
        else:
            fixed = PrepaidMeters(config.prepaid, config.tariffs, config.readings.rules)
    made: list[PrepaidMeters] = []  # for the shelf's current book: a new one only when a version was added

    async def prepaid_for(conn: AsyncConnection) -> PrepaidMeters | None:
        if shelf is None:
            return fixed
        book = await shelf.book(conn)
        if not made or made[0].pricer.book is not book:
            made[:] = [PrepaidMeters(config.prepaid, book, config.readings.rules)]
        return made[0]

    async def handle(conn: AsyncConnection, items: Sequence[Incoming]) -> Sequence[Mapping[str, Any] | None]:
        return await record_reading(conn, items, settings=config.readings, privacy=config.privacy,
                                    prepaid=await prepaid_for(conn))

    return handle


def _reading_emits(config: CoreConfig) -> tuple[str, ...]:
    prepaid = config.prepaid.emits() if config.prepaid_active else ()
    return tuple(dict.fromkeys((*config.readings.emits(), *prepaid)))


def build_handlers(config: CoreConfig | None = None) -> Mapping[str, CoreHandler]:
    """Every core handler, the configurable ones bound to ``config`` (defaults when ``None``)."""
    config = config or CoreConfig()
    payments = PaymentHandlers(config)
    bills = BillNotifier(config)
    alarms = AlarmHandler(config.alarms, config.work_orders, config.privacy)
    requests = WorkOrderRequests(config.work_orders)
    replies = SmsReplies(config)
    return MappingProxyType(
        {
            h.name: h
            for h in (
                CoreHandler(
                    "record_reading",
                    "meter.reading",
                    _reading_handler(config),
                    "Validate and store meter readings; flag, alarm and notify on what the rules find; "
                    "charge prepaid meters, warn of a low balance and close the valve at zero.",
                    emits=_reading_emits(config),
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
                    alarms.record_alarm,
                    "Record an alarm once and act by the alarm policy: close the valve, tell the holder, "
                    "open a work order with its SLA deadline.",
                    emits=config.alarms.emits(),
                ),
                CoreHandler(
                    "open_work_order",
                    "work_order.requested",
                    requests.open_work_order,
                    "Open the work order a validation rule asks for, once per request, with its SLA deadline.",
                ),
                CoreHandler(
                    "notify_bill",
                    "bill.issued",
                    bills.notify_bill,
                    "Tell the account holder about a new bill by SMS.",
                    emits=("notification.requested",),
                    personal_data=True,
                ),
                CoreHandler("record_valve_state", "valve.state", record_valve_state, "Store a valve report."),
                CoreHandler(
                    "record_notification_delivery",
                    "notification.delivered",
                    record_notification_delivery,
                    "Track what happened to a notification.",
                ),
                CoreHandler(
                    "record_sms_reply",
                    "sms.replied",
                    replies.record_sms_reply,
                    "Store a user's SMS reply once, with its account; a rating 1-5 becomes a satisfaction record "
                    "for the account's latest work order.",
                    personal_data=True,
                ),
                CoreHandler(
                    "record_payment",
                    "payment.received",
                    payments.record_payment,
                    "Credit a payment once; settle bills oldest first (or top up a prepaid meter), keep the "
                    "rest as credit; request its invoice.",
                    emits=("invoice.requested",),
                    personal_data=True,
                ),
                CoreHandler(
                    "record_refund",
                    "payment.refunded",
                    payments.record_refund,
                    "Take a refund back from credit and bills once; request a red invoice if one was issued.",
                    emits=("invoice.requested",),
                    personal_data=True,
                ),
                CoreHandler(
                    "record_invoice_issued",
                    "invoice.issued",
                    payments.record_invoice_issued,
                    "Store an issued invoice (number, type, user name and number); request waiting red ones; "
                    "SMS the holder its number.",
                    emits=("invoice.requested", "notification.requested"),
                    personal_data=True,
                ),
                CoreHandler(
                    "record_invoice_failed",
                    "invoice.failed",
                    payments.record_invoice_failed,
                    "Mark an invoice request failed with the tax system's reason.",
                ),
            )
        }
    )


HANDLERS: Mapping[str, CoreHandler] = build_handlers()

__all__ = ["HANDLERS", "CoreConfig", "build_handlers"]
