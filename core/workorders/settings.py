"""Work-order categories and their SLA commitments, and the working-day calendar:
``[core.work_orders]`` in the hub's settings (``GASHUB_CORE__WORK_ORDERS__*``)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.workorders.states import WorkOrderStatus

CategoryName = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z_]*$")]


class SlaCommitment(BaseModel):
    """How long the company has: ``minutes`` around the clock (emergencies) or ``working_days`` on the
    calendar (the end of the n-th working day after the day the order was opened), until the order
    reaches ``until`` (on site for emergencies, handled otherwise)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    minutes: int | None = Field(default=None, gt=0, le=7 * 24 * 60)
    working_days: int | None = Field(default=None, gt=0, le=120)
    until: WorkOrderStatus = WorkOrderStatus.HANDLED

    @model_validator(mode="after")
    def _one_clock(self) -> Self:
        if (self.minutes is None) == (self.working_days is None):
            raise ValueError("give exactly one of 'minutes' (around the clock) or 'working_days' (on the calendar)")
        if self.until not in (WorkOrderStatus.ON_SITE, WorkOrderStatus.HANDLED):
            raise ValueError("'until' is 'on_site' or 'handled': the clock stops when someone is there or it is done")
        return self


DEFAULT_CATEGORIES: dict[str, SlaCommitment] = {
    "emergency_repair": SlaCommitment(minutes=30, until=WorkOrderStatus.ON_SITE),
    "indoor_fault": SlaCommitment(minutes=240, until=WorkOrderStatus.ON_SITE),
    "inspection": SlaCommitment(working_days=3),
    "maintenance": SlaCommitment(working_days=5),
    "communication": SlaCommitment(working_days=3),
    "zero_use_check": SlaCommitment(working_days=5),
    "theft_inspection": SlaCommitment(working_days=3),
    "actual_read": SlaCommitment(working_days=10),
    "complaint": SlaCommitment(working_days=15),
    "refund": SlaCommitment(working_days=7),
}
"""Commitments seen at gas companies (domain.md): on site for a leak within 15 min–1 h (30 min here),
indoor fault within 4 h, complaints handled within 15 working days. ``inspection``, ``communication``,
``zero_use_check``, ``theft_inspection`` and ``actual_read`` are also the kinds of work the reading
validation asks for (``work_order.requested``); ``refund`` is the payout of what a close or a transfer
leaves due to the holder (``core.lifecycle.refund_order``)."""


class WorkOrderSettings(BaseModel):
    """The categories an order may have, each with its SLA commitment (the defaults plus the configured
    ones, a configured one replacing the default of its name), and the calendar working days
    are counted on: Monday to Friday in ``timezone``, except ``holidays``, plus ``extra_working_days``
    (the weekend days China's official calendar makes working days around a holiday)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    categories: dict[CategoryName, SlaCommitment] = Field(default_factory=lambda: dict(DEFAULT_CATEGORIES))
    holidays: frozenset[date] = frozenset()
    extra_working_days: frozenset[date] = frozenset()
    timezone: str = "Asia/Shanghai"
    overdue_check_s: int | None = Field(default=60, ge=1, le=3600)
    """How often ``gashub run`` marks orders past their deadline ``overdue`` (``None``: never)."""

    @field_validator("categories", mode="before")
    @classmethod
    def _over_defaults(cls, value: Any) -> Any:
        """A configured category adds to the defaults or replaces the one of its name."""
        return {**DEFAULT_CATEGORIES, **value} if isinstance(value, dict) else value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as 'Asia/Shanghai')") from None
        return value

    @model_validator(mode="after")
    def _calendar(self) -> Self:
        if both := sorted(self.holidays & self.extra_working_days):
            raise ValueError(f"{both[0].isoformat()} is both a holiday and an extra working day")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


DEFAULT_WORK_ORDERS = WorkOrderSettings()
