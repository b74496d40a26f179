"""The canonical message types and their ``data`` models.

Names are ``noun.past-tense-verb`` for events (``meter.reading`` is the exception the field uses)
and ``noun.command`` for requests. Money is ``Decimal`` yuan; volumes are ``Decimal`` m³; times are
timezone-aware. Each model is versioned: a breaking change adds ``v2`` beside ``v1``.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, Field

from core.catalogue.base import CanonicalModel, Catalogue, CatalogueEntry, Lane, Personal

MeterId = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[0-9A-Za-z_-]+$")]
AccountId = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[0-9A-Za-z_-]+$")]
Money = Annotated[Decimal, Field(max_digits=14, decimal_places=2)]
Volume = Annotated[Decimal, Field(max_digits=14, decimal_places=3)]


class MessageType(StrEnum):
    METER_READING = "meter.reading"
    ALARM_RAISED = "alarm.raised"
    ALARM_CLEARED = "alarm.cleared"
    VALVE_COMMAND = "valve.command"
    VALVE_STATE = "valve.state"
    PAYMENT_RECEIVED = "payment.received"
    PAYMENT_REFUNDED = "payment.refunded"
    INVOICE_REQUESTED = "invoice.requested"
    INVOICE_ISSUED = "invoice.issued"
    INVOICE_FAILED = "invoice.failed"
    NOTIFICATION_REQUESTED = "notification.requested"
    NOTIFICATION_DELIVERED = "notification.delivered"
    READING_RECORDED = "reading.recorded"
    READING_FLAGGED = "reading.flagged"
    BILL_ISSUED = "bill.issued"
    WORK_ORDER_REQUESTED = "work_order.requested"
    SMS_REPLIED = "sms.replied"


class ReadingSource(StrEnum):
    DTU = "dtu"
    CTWING = "ctwing"
    ONENET = "onenet"
    MANUAL = "manual"
    ESTIMATE = "estimate"
    VENDOR = "vendor"
    FINAL = "final"
    """Read at the counter or on site when an account is closed or transferred (core.lifecycle)."""


class ValveState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    ABNORMAL = "abnormal"
    UNKNOWN = "unknown"


class DeviceEvent(StrEnum):
    """Events a meter reports alongside (or instead of) a reading (CJ/T 188 status bits, NB-IoT
    platform events)."""

    TAMPER = "tamper"
    MAGNETIC = "magnetic"
    COVER_OPEN = "cover_open"
    LOW_BATTERY = "low_battery"
    VALVE_ALARM = "valve_alarm"


class MeterReading(CanonicalModel):
    """A cumulative register reading from a meter (E1, P3).

    ``received_at`` and ``events`` were added to v1 as optional fields (a sender that does not know
    them leaves them out, and a reading without them means what it always meant)."""

    meter_id: MeterId
    read_at: AwareDatetime
    """When the register was read: the meter's own clock where the meter stamps its readings."""
    volume_m3: Volume = Field(ge=0)
    source: ReadingSource
    valve: ValveState | None = None
    battery_low: bool | None = None
    battery_v: Decimal | None = Field(default=None, ge=0, le=10)
    signal_rsrp: int | None = Field(default=None, ge=-200, le=0)
    received_at: AwareDatetime | None = None
    """When the platform (NB-IoT platform, DTU front end, the hub's connector) received the reading;
    given only when ``read_at`` comes from the meter's own clock, so that the clock rule can compare
    the two (drift beyond ``clock_max_drift`` is an exception)."""
    events: list[DeviceEvent] = Field(default_factory=list, max_length=16)
    """Device events reported with the reading: tamper, magnet and cover-open open an inspection
    order; ``battery_low = true`` counts as a ``low_battery`` event."""

    @property
    def device_events(self) -> frozenset[DeviceEvent]:
        """``events`` with the battery flag folded in."""
        found = set(self.events)
        if self.battery_low:
            found.add(DeviceEvent.LOW_BATTERY)
        return frozenset(found)


class ReadingRecorded(CanonicalModel):
    """The core stored a reading (with its quality flags)."""

    reading_id: str
    meter_id: MeterId
    read_at: AwareDatetime
    volume_m3: Volume
    quality: list[str] = []


class AlarmKind(StrEnum):
    LEAK = "leak"
    ABNORMAL_FLOW = "abnormal_flow"
    LOW_BATTERY = "low_battery"
    TAMPER = "tamper"
    MAGNETIC = "magnetic"
    VALVE_FAULT = "valve_fault"
    OFFLINE = "offline"
    GAS_DETECTOR = "gas_detector"


class AlarmRaised(CanonicalModel):
    """A safety or device alarm (U3). ``cim_code`` is the IEC 61968-9 event type where one exists."""

    alarm_id: str = Field(min_length=1, max_length=64)
    kind: AlarmKind
    meter_id: MeterId
    account_id: AccountId | None = None
    detected_at: AwareDatetime
    severity: int = Field(ge=1, le=5)
    detail: str = Field(default="", max_length=500)
    cim_code: str | None = Field(default=None, pattern=r"^\d+\.\d+\.\d+\.\d+$")
    user_notified: bool = False
    """The holder has been told already (the core's reading validation tells them of a leak it finds,
    ``[core.readings] notify``): the alarm policy asks for no second SMS."""


RuleName = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z_]*$")]
"""A word of the reading-validation vocabulary (``core.readings``: rule ids, severities, actions,
work-order kinds, quality flags), lower case with underscores."""


class ReadingFinding(CanonicalModel):
    """One validation rule that fired on a reading: what it saw and what the domain should do."""

    rule: RuleName
    """``negative``, ``rollover``, ``spike``, ``zero_use``, ``use_while_closed``, ``over_capacity``,
    ``leak``, ``stale``, ``duplicate``, ``clock``, ``prolonged_estimation``, ``tamper`` or
    ``estimate_above_actual``."""
    severity: RuleName
    """``info``, ``warning``, ``error`` or ``critical``."""
    action: RuleName
    """``accept``, ``hold_billing``, ``estimate``, ``open_work_order``, ``raise_alarm``,
    ``drop_duplicate``, ``flag_conflict`` or ``reverse_and_rebill``."""
    message: str = Field(min_length=1, max_length=500)
    work_order: RuleName | None = None
    alarm: AlarmKind | None = None


class ReadingFlagged(CanonicalModel):
    """The core stored a reading that broke validation rules (E1). ``reading_id`` is the id of the
    ``meter.reading`` message: one reading is flagged once, however often it is delivered."""

    reading_id: str = Field(min_length=1, max_length=64)
    meter_id: MeterId
    account_id: AccountId | None = None
    read_at: AwareDatetime
    volume_m3: Volume = Field(ge=0)
    consumption_m3: Volume | None = None
    """Use since the baseline reading, rollover-corrected; negative when the register went back;
    absent without a baseline."""
    quality: list[RuleName] = Field(min_length=1)
    """The quality flags stored with the reading (``valid`` or ``suspect``, maybe ``derived``,
    ``estimated``)."""
    billable: bool
    """Whether the reading may be billed as it is."""
    findings: list[ReadingFinding] = Field(min_length=1)


class WorkOrderRequested(CanonicalModel):
    """Field work a validation rule calls for (E1): an inspection after a tamper event, a vacancy /
    stuck-meter check, a communication repair, a mandatory actual read, a theft inspection.

    Sent by ``core:record_reading`` for a reading's findings and by the daily reading checks; the
    work-order system (issue 4) opens the order. ``work_order_id`` is derived from what caused it (the
    reading, or the check's subject and day), so a request seen again is the same request."""

    work_order_id: str = Field(min_length=1, max_length=64)
    kind: RuleName
    """``inspection``, ``zero_use_check``, ``communication``, ``actual_read`` or ``theft_inspection``."""
    rule: RuleName
    """The validation rule that found it (``tamper``, ``zero_use``, ``stale``, ...)."""
    severity: RuleName
    meter_id: MeterId | None = None
    account_id: AccountId | None = None
    detected_at: AwareDatetime
    reason: str = Field(min_length=1, max_length=500)
    reading_id: str | None = Field(default=None, max_length=64)
    """The reading whose findings call for it; absent for the daily checks."""


class AlarmCleared(CanonicalModel):
    alarm_id: str = Field(min_length=1, max_length=64)
    cleared_at: AwareDatetime
    by: str = Field(min_length=1, max_length=64)
    note: str = Field(default="", max_length=500)


class ValveAction(StrEnum):
    OPEN = "open"
    CLOSE = "close"


class ValveCommand(CanonicalModel):
    """Open or close a meter's valve. ``command_id`` makes a retry the same command, never a new one."""

    command_id: str = Field(min_length=1, max_length=64)
    meter_id: MeterId
    action: ValveAction
    reason: str = Field(min_length=1, max_length=200)
    requested_by: str = Field(min_length=1, max_length=64)
    on_site_confirmed: bool = False


class ValveStateReported(CanonicalModel):
    meter_id: MeterId
    state: ValveState
    observed_at: AwareDatetime
    command_id: str | None = None
    result: str = Field(default="ok", max_length=64)


class PaymentChannel(StrEnum):
    WECHAT = "wechat"
    ALIPAY = "alipay"
    UNIONPAY = "unionpay"
    ECNY = "ecny"
    BANK = "bank"
    COUNTER = "counter"


class PaymentReceived(CanonicalModel):
    """Money received for an account. Credited once per ``(channel, transaction_id)``."""

    channel: PaymentChannel
    transaction_id: str = Field(min_length=1, max_length=64)
    out_trade_no: str = Field(min_length=1, max_length=64)
    account_id: AccountId
    amount: Money = Field(gt=0)
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    paid_at: AwareDatetime
    payer_ref: str | None = Personal(default=None, max_length=128)


class RefundKind(StrEnum):
    REFUND = "refund"
    """Money given back to the payer (all or part of the payment)."""
    REVERSAL = "reversal"
    """The channel cancelled the transaction (冲正): everything left of the payment, as if never paid."""


class PaymentRefunded(CanonicalModel):
    """Money of a payment given back. Applied once per ``(channel, transaction_id, refund_id)``."""

    channel: PaymentChannel
    transaction_id: str = Field(min_length=1, max_length=64)
    refund_id: str = Field(min_length=1, max_length=64)
    amount: Money = Field(gt=0)
    refunded_at: AwareDatetime
    kind: RefundKind = RefundKind.REFUND


class InvoiceKind(StrEnum):
    BLUE = "blue"
    RED = "red"


class InvoiceLine(CanonicalModel):
    """One invoice line as the invoice prints it: ``amount`` is net (金额, VAT excluded), ``tax`` its VAT
    (税额), so ``amount + tax`` is what was paid for the line; ``unit_price`` is net too. A red request
    carries the reversed lines with negative quantity, amount and tax."""

    name: str = Field(min_length=1, max_length=100)
    tax_code: str = Field(min_length=1, max_length=19)
    unit: str = Field(default="m3", max_length=10)
    quantity: Volume
    unit_price: Decimal = Field(max_digits=14, decimal_places=6)
    amount: Money
    tax_rate: Decimal = Field(ge=0, le=1, decimal_places=4)
    tax: Money


class InvoiceRequested(CanonicalModel):
    """Ask the tax provider for an e-invoice (TAX1). ``request_serial`` makes a retry the same request.

    ``total`` is the gross (价税合计: the sum of the lines' ``amount + tax``) and ``total_tax`` the sum of
    their ``tax``; both negative on a red request, which names the blue one in ``original_invoice_number``.
    """

    request_serial: str = Field(min_length=1, max_length=64)
    kind: InvoiceKind = InvoiceKind.BLUE
    account_id: AccountId
    user_name: str = Personal(min_length=1, max_length=100)
    buyer_tax_id: str | None = Field(default=None, max_length=20)
    payment_ref: str | None = None
    bill_ref: str | None = None
    original_invoice_number: str | None = Field(default=None, pattern=r"^\d{20}$")
    lines: list[InvoiceLine] = Field(min_length=1)
    total: Money
    total_tax: Money


class InvoiceIssued(CanonicalModel):
    request_serial: str = Field(min_length=1, max_length=64)
    account_id: AccountId
    user_name: str = Personal(min_length=1, max_length=100)
    invoice_type: str = Field(min_length=1, max_length=32)
    invoice_number: str = Field(pattern=r"^\d{20}$")
    issued_at: AwareDatetime
    total: Money
    total_tax: Money
    pdf_url: str | None = None


class InvoiceFailed(CanonicalModel):
    request_serial: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=500)


class NotificationKind(StrEnum):
    BILL = "bill"
    PAYMENT = "payment"
    INVOICE = "invoice"
    ALARM = "alarm"
    LOW_BALANCE = "low_balance"
    OUTAGE = "outage"
    REMINDER = "reminder"
    READING = "reading"
    ANNOUNCEMENT = "announcement"


class NotificationRequested(CanonicalModel):
    """Tell a user something (P6.1, U6). Safety notifications bypass quiet hours and rate limits."""

    notification_id: str = Field(min_length=1, max_length=64)
    kind: NotificationKind
    account_id: AccountId | None = None
    phone: str = Personal(pattern=r"^1[3-9]\d{9}$")
    params: dict[str, str] = {}
    safety: bool = False


class DeliveryStatus(StrEnum):
    ACCEPTED = "accepted"
    DELIVERED = "delivered"
    FAILED = "failed"


class NotificationDelivered(CanonicalModel):
    notification_id: str = Field(min_length=1, max_length=64)
    status: DeliveryStatus
    provider_ref: str | None = None
    at: datetime
    error: str | None = Field(default=None, max_length=500)


class SmsReplied(CanonicalModel):
    """A user answered an SMS (P6.1, U6): a rating ``1``–``5`` after a visit or any other text."""

    reply_id: str = Field(min_length=1, max_length=64)
    """The provider's id of the upstream message (``aliyun-<sequence_id>``): the same reply twice is one."""
    phone: str = Personal(pattern=r"^1[3-9]\d{9}$")
    content: str = Personal(max_length=1000)
    received_at: AwareDatetime
    in_reply_to: str | None = Field(default=None, max_length=64)
    """The notification last sent to this number, when the connector knows it."""


class BillMeterUse(CanonicalModel):
    """One meter's part of a bill for an account with several meters."""

    meter_id: MeterId
    reading_start_m3: Volume
    reading_end_m3: Volume
    volume_m3: Volume = Field(ge=0)
    estimated: bool = False


class BillIssued(CanonicalModel):
    """A billing run issued a bill for ``[period_start, period_end)`` (``period_end`` exclusive)."""

    bill_id: str = Field(min_length=1, max_length=32)
    account_id: AccountId
    meter_id: MeterId
    period_start: date
    period_end: date
    category: str = Field(min_length=1, max_length=16)
    volume_m3: Volume = Field(ge=0)
    total: Money
    net_total: Money
    tax_total: Money
    issued_at: AwareDatetime
    estimated: bool = False
    """The volume is an estimate: the period's reading was held from billing (a spike). Added to v1
    as an optional field."""
    meters: list[BillMeterUse] | None = None
    """For an account with several meters: each meter's registers and volume (``volume_m3`` is their
    sum, priced together: the tiers are per household; ``meter_id`` is then the first meter). ``None``
    for a one-meter account. Added to v1 as an optional field."""


CATALOGUE = Catalogue(
    [
        CatalogueEntry("meter.reading", 1, MeterReading, Lane.NORMAL, "A cumulative meter reading."),
        CatalogueEntry("reading.recorded", 1, ReadingRecorded, Lane.NORMAL, "The core stored a reading."),
        CatalogueEntry(
            "reading.flagged", 1, ReadingFlagged, Lane.NORMAL, "The core stored a reading that broke validation rules."
        ),
        CatalogueEntry("alarm.raised", 1, AlarmRaised, Lane.SAFETY, "A leak, flow, battery or tamper alarm."),
        CatalogueEntry("alarm.cleared", 1, AlarmCleared, Lane.SAFETY, "An operator cleared an alarm."),
        CatalogueEntry("valve.command", 1, ValveCommand, Lane.SAFETY, "Open or close a meter valve."),
        CatalogueEntry("valve.state", 1, ValveStateReported, Lane.SAFETY, "A meter reported its valve."),
        CatalogueEntry("payment.received", 1, PaymentReceived, Lane.NORMAL, "A payment was received."),
        CatalogueEntry("payment.refunded", 1, PaymentRefunded, Lane.NORMAL, "A payment was refunded."),
        CatalogueEntry("invoice.requested", 1, InvoiceRequested, Lane.NORMAL, "Issue an e-invoice."),
        CatalogueEntry("invoice.issued", 1, InvoiceIssued, Lane.NORMAL, "The tax system issued an invoice."),
        CatalogueEntry("invoice.failed", 1, InvoiceFailed, Lane.NORMAL, "The tax system refused an invoice."),
        CatalogueEntry(
            "notification.requested", 1, NotificationRequested, Lane.NORMAL, "Send a user a message."
        ),
        CatalogueEntry(
            "notification.delivered", 1, NotificationDelivered, Lane.NORMAL, "A provider reported delivery."
        ),
        CatalogueEntry("sms.replied", 1, SmsReplied, Lane.NORMAL, "A user replied to an SMS."),
        CatalogueEntry("bill.issued", 1, BillIssued, Lane.NORMAL, "A billing run issued a bill."),
        CatalogueEntry(
            "work_order.requested", 1, WorkOrderRequested, Lane.NORMAL, "A validation rule calls for field work."
        ),
    ]
)

assert {e.type for e in CATALOGUE.values()} == {t.value for t in MessageType}
