"""The words of reading validation: rule ids, severities, actions, quality flags and event kinds."""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType

from core.catalogue.messages import DeviceEvent as DeviceEvent


class RuleId(StrEnum):
    """One id per rule of the VEE table (domain.md), plus the estimate-reversal check."""

    NEGATIVE = "negative"
    ROLLOVER = "rollover"
    SPIKE = "spike"
    ZERO_USE = "zero_use"
    USE_WHILE_CLOSED = "use_while_closed"
    OVER_CAPACITY = "over_capacity"
    LEAK = "leak"
    STALE = "stale"
    DUPLICATE = "duplicate"
    CLOCK = "clock"
    PROLONGED_ESTIMATION = "prolonged_estimation"
    TAMPER = "tamper"
    ESTIMATE_ABOVE_ACTUAL = "estimate_above_actual"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class Action(StrEnum):
    """What the domain should do about a finding. Exactly one per finding."""

    ACCEPT = "accept"
    """Informational: store and bill as usual (e.g. a rollover that was corrected)."""
    HOLD_BILLING = "hold_billing"
    """Store the reading but bill nothing from it until an operator has looked."""
    ESTIMATE = "estimate"
    """Hold the reading and bill an estimate instead (see ``core.readings.estimation``)."""
    OPEN_WORK_ORDER = "open_work_order"
    """Open a work order of the finding's ``work_order`` kind."""
    RAISE_ALARM = "raise_alarm"
    """Raise an alarm of the finding's ``alarm`` kind (safety lane)."""
    DROP_DUPLICATE = "drop_duplicate"
    """The same reading again: drop it, idempotently."""
    FLAG_CONFLICT = "flag_conflict"
    """Same meter and time, another value: refuse and let an operator resolve it."""
    REVERSE_AND_REBILL = "reverse_and_rebill"
    """An earlier estimated bill was too high: reverse it and bill again from the actual read."""


class QualityFlag(StrEnum):
    """Quality of a stored reading. ``valid`` and ``suspect`` exclude each other."""

    VALID = "valid"
    SUSPECT = "suspect"
    DERIVED = "derived"
    """The consumption was corrected (register rollover)."""
    ESTIMATED = "estimated"
    """The reading is an estimate, not an actual read."""
    HELD = "held"
    """Not billed as it is (negative, conflict, clock, capacity, spike...): bills skip it until an
    operator accepts or corrects it."""
    EDITED = "edited"
    """An operator corrected the register value (VEE edit) after the reading was held."""
    ESTIMATE_DUE = "estimate_due"
    """Held, and an estimate is billed in its place (a spike: "exception, then estimate"). A held
    reading without it holds the bill ("exception; hold billing")."""


class WorkOrderKind(StrEnum):
    ZERO_USE_CHECK = "zero_use_check"
    """Vacancy or stuck meter."""
    THEFT_INSPECTION = "theft_inspection"
    """Gas used on an inactive account."""
    COMMUNICATION = "communication"
    """An IoT meter has gone silent."""
    ACTUAL_READ = "actual_read"
    """Too many estimated bills in a row: read the meter on site."""
    INSPECTION = "inspection"
    """Tamper, magnet or cover-open event."""


class CustomerCategory(StrEnum):
    RESIDENTIAL = "residential"
    COMMERCIAL = "commercial"
    INDUSTRIAL = "industrial"
    HEATING = "heating"


DEVICE_EVENT_BY_CIM = MappingProxyType(
    {
        "0.12.43.257": DeviceEvent.TAMPER,
        "0.12.66.242": DeviceEvent.MAGNETIC,
        "4.2.22.150": DeviceEvent.LOW_BATTERY,
        "0.31.147.79": DeviceEvent.VALVE_ALARM,
    }
)
"""IEC 61968-9 end-device event types (domain.md) to events. Cover-open has no code there."""


class EstimationMethod(StrEnum):
    LAST_MONTH = "last_month"
    LAST_YEAR = "last_year"
    AVERAGE_DAILY = "average_daily"

