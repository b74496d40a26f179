"""Reading validation (VEE: validate, estimate, edit), pure and configurable.

``validate_reading(reading, context, now=..., settings=...)`` runs the rules of the VEE table
(domain.md) over one reading and returns a ``ValidationResult``: quality flags, findings (rule,
severity, message, action) and the rollover-corrected consumption. ``estimate_consumption`` makes
estimates; ``stale_meters``, ``zero_use_accounts`` and ``actual_read_required`` are the periodic
checks; ``hourly_use`` turns register readings into the hourly use the leak rule reads.
``ReadingsSettings`` holds the rules' thresholds and what ``core:record_reading`` does with
findings. No database, no I/O: the handlers load the context and act on the findings.
"""

from core.readings.estimation import (
    Estimate,
    PeriodUse,
    estimate_consumption,
    estimate_exceeds_actual,
    shift_months,
)
from core.readings.hourly import hour_floor, hourly_use
from core.readings.model import Finding, MeterContext, PreviousReading, ReadingInput, ValidationResult
from core.readings.periodic import AccountUse, actual_read_required, stale_meters, zero_use_accounts
from core.readings.register import is_rollover, register_span
from core.readings.settings import DEFAULT_READINGS, DEFAULT_SETTINGS, ReadingsSettings, ValidationSettings
from core.readings.validation import validate_reading
from core.readings.vocabulary import (
    DEVICE_EVENT_BY_CIM,
    Action,
    CustomerCategory,
    DeviceEvent,
    EstimationMethod,
    QualityFlag,
    RuleId,
    Severity,
    WorkOrderKind,
)

__all__ = [
    "DEFAULT_READINGS",
    "DEFAULT_SETTINGS",
    "DEVICE_EVENT_BY_CIM",
    "AccountUse",
    "Action",
    "CustomerCategory",
    "DeviceEvent",
    "Estimate",
    "EstimationMethod",
    "Finding",
    "MeterContext",
    "PeriodUse",
    "PreviousReading",
    "QualityFlag",
    "ReadingInput",
    "ReadingsSettings",
    "RuleId",
    "Severity",
    "ValidationResult",
    "ValidationSettings",
    "WorkOrderKind",
    "actual_read_required",
    "estimate_consumption",
    "estimate_exceeds_actual",
    "hour_floor",
    "hourly_use",
    "is_rollover",
    "register_span",
    "shift_months",
    "stale_meters",
    "validate_reading",
    "zero_use_accounts",
]
