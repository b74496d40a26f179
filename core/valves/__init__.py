"""Valves the core closed, why, and reopening them only after an on-site check."""

from core.valves.closures import CLOSE_VALVE_FOR, ClosedBy, Closure, open_closures, record_closures
from core.valves.reopen import (
    CONFIRMATION_MAX_AGE,
    Confirmation,
    MeterNotFound,
    Reopened,
    ReopenRefused,
    ValveStatus,
    reopen_valve,
    valve_status,
)

__all__ = [
    "CLOSE_VALVE_FOR",
    "CONFIRMATION_MAX_AGE",
    "ClosedBy",
    "Closure",
    "Confirmation",
    "MeterNotFound",
    "ReopenRefused",
    "Reopened",
    "ValveStatus",
    "open_closures",
    "record_closures",
    "reopen_valve",
    "valve_status",
]
