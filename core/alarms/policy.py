"""What the core does about each kind of alarm (U3): ``[core.alarms]`` in the hub's settings.

Per kind (``[core.alarms.leak]``, ``GASHUB_CORE__ALARMS__LEAK__CLOSE_VALVE=false``): close the valve
(``valve.command`` close on the safety lane), ask for an SMS to the account holder (the template kind of
``notification.requested``), open a work order (category, whose SLA commitment sets its deadline, and
priority), and the severity the alarm has at least. A kind's section overrides only the keys it gives;
the rest keep that kind's default.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.catalogue.messages import AlarmKind, NotificationKind
from core.workorders.settings import CategoryName, WorkOrderSettings
from core.workorders.states import Priority


class OrderPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    category: CategoryName
    """A category of ``[core.work_orders.categories]``: its SLA commitment sets the deadline."""
    priority: Priority = Priority.NORMAL


class AlarmAction(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    close_valve: bool = False
    notify_user: NotificationKind | None = None
    """The SMS template kind to tell the holder with; ``None``: no SMS. Needs the personal-data keys
    (the phone is encrypted): without them the SMS is skipped and logged."""
    work_order: OrderPolicy | None = None
    severity: int = Field(default=1, ge=1, le=5)
    """The alarm is stored at least this severe, whatever the device said."""


def _default(kind: AlarmKind) -> AlarmAction:
    return AlarmAction.model_validate(DEFAULT_ACTIONS[kind])


def _act(close: bool, sms: NotificationKind | None, category: str | None, priority: Priority,
         severity: int) -> dict[str, Any]:
    order = {"category": category, "priority": priority} if category else None
    return {"close_valve": close, "notify_user": sms, "work_order": order, "severity": severity}


_A = NotificationKind.ALARM
DEFAULT_ACTIONS: dict[AlarmKind, dict[str, Any]] = {
    AlarmKind.LEAK: _act(True, _A, "emergency_repair", Priority.EMERGENCY, 5),
    AlarmKind.GAS_DETECTOR: _act(True, _A, "emergency_repair", Priority.EMERGENCY, 5),
    AlarmKind.ABNORMAL_FLOW: _act(True, _A, "indoor_fault", Priority.HIGH, 4),
    AlarmKind.LOW_BATTERY: _act(False, NotificationKind.REMINDER, "maintenance", Priority.NORMAL, 2),
    AlarmKind.TAMPER: _act(False, None, "inspection", Priority.HIGH, 3),
    AlarmKind.MAGNETIC: _act(False, None, "inspection", Priority.HIGH, 3),
    AlarmKind.VALVE_FAULT: _act(False, _A, "indoor_fault", Priority.HIGH, 3),
    AlarmKind.OFFLINE: _act(False, None, "communication", Priority.LOW, 1),
}
"""Leaks and gas detectors: close, SMS, emergency order; abnormal flow: close, SMS, indoor-fault order;
low battery: SMS reminder and an ordinary order, no close; tamper and magnet: an inspection order; a
valve that failed: SMS (it may not close) and a repair; offline: a communication order."""


class AlarmPolicy(BaseModel):
    """One :class:`AlarmAction` per alarm kind."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    leak: AlarmAction = Field(default_factory=lambda: _default(AlarmKind.LEAK))
    abnormal_flow: AlarmAction = Field(default_factory=lambda: _default(AlarmKind.ABNORMAL_FLOW))
    low_battery: AlarmAction = Field(default_factory=lambda: _default(AlarmKind.LOW_BATTERY))
    tamper: AlarmAction = Field(default_factory=lambda: _default(AlarmKind.TAMPER))
    magnetic: AlarmAction = Field(default_factory=lambda: _default(AlarmKind.MAGNETIC))
    valve_fault: AlarmAction = Field(default_factory=lambda: _default(AlarmKind.VALVE_FAULT))
    offline: AlarmAction = Field(default_factory=lambda: _default(AlarmKind.OFFLINE))
    gas_detector: AlarmAction = Field(default_factory=lambda: _default(AlarmKind.GAS_DETECTOR))

    @model_validator(mode="before")
    @classmethod
    def _over_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        merged = dict(data)  # unknown kinds stay, to be refused (extra="forbid")
        for kind in AlarmKind:
            given = data.get(kind.value)
            if isinstance(given, AlarmAction):
                given = given.model_dump(exclude_unset=True)
            if isinstance(given, dict):
                merged[kind.value] = {**DEFAULT_ACTIONS[kind], **given}
        return merged

    def action(self, kind: AlarmKind) -> AlarmAction:
        action: AlarmAction = getattr(self, kind.value)
        return action

    def closing_kinds(self) -> frozenset[AlarmKind]:
        return frozenset(k for k in AlarmKind if self.action(k).close_valve)

    def emits(self) -> tuple[str, ...]:
        """What ``record_alarm`` may write to the outbox under this policy."""
        actions = [self.action(k) for k in AlarmKind]
        return tuple(t for t, on in (("valve.command", any(a.close_valve for a in actions)),
                                     ("notification.requested", any(a.notify_user for a in actions))) if on)

    def check(self, work_orders: WorkOrderSettings) -> Self:
        """Every work order the policy opens names a known category (``ValueError`` otherwise)."""
        for kind in AlarmKind:
            order = self.action(kind).work_order
            if order is not None and order.category not in work_orders.categories:
                raise ValueError(f"core.alarms.{kind.value}.work_order.category {order.category!r} is not a work-order "
                                 f"category (core.work_orders.categories: {', '.join(sorted(work_orders.categories))})")
        return self


DEFAULT_ALARMS = AlarmPolicy()
