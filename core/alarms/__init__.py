"""The safety loop's policy: what each kind of alarm makes the core do (valve, SMS, work order)."""

from core.alarms.policy import DEFAULT_ALARMS, AlarmAction, AlarmPolicy, OrderPolicy

__all__ = ["DEFAULT_ALARMS", "AlarmAction", "AlarmPolicy", "OrderPolicy"]
