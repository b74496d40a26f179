"""Inputs and outputs of reading validation: the new reading, what is known of its meter, the result."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from core.catalogue.messages import AlarmKind, MeterReading, ReadingSource, ValveState
from core.readings.vocabulary import (
    Action,
    CustomerCategory,
    DeviceEvent,
    QualityFlag,
    RuleId,
    Severity,
    WorkOrderKind,
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ReadingInput(_Frozen):
    """A reading to validate: a cumulative register value at a time, with what came with it.

    ``received_at`` is when the platform received it; give it only when ``read_at`` is the meter's own
    clock at sending time (the clock-drift check compares the two).
    """

    meter_id: str = Field(min_length=1)
    read_at: AwareDatetime
    volume_m3: Decimal = Field(ge=0)
    source: ReadingSource
    received_at: AwareDatetime | None = None
    valve: ValveState | None = None
    events: frozenset[DeviceEvent] = frozenset()

    @property
    def is_estimate(self) -> bool:
        return self.source is ReadingSource.ESTIMATE

    @classmethod
    def from_message(
        cls,
        message: MeterReading,
        *,
        received_at: datetime | None = None,
        events: Iterable[DeviceEvent] = (),
    ) -> ReadingInput:
        """Build from the canonical ``meter.reading`` data: its receive time and device events (the
        battery flag included), unless given here."""
        return cls(
            meter_id=message.meter_id,
            read_at=message.read_at,
            volume_m3=message.volume_m3,
            source=message.source,
            received_at=received_at or message.received_at,
            valve=message.valve,
            events=frozenset(events) | message.device_events,
        )


class PreviousReading(_Frozen):
    """A reading already stored for the meter. Estimates are never a baseline for consumption."""

    read_at: AwareDatetime
    volume_m3: Decimal = Field(ge=0)
    source: ReadingSource = ReadingSource.MANUAL
    valve: ValveState | None = None

    @property
    def is_estimate(self) -> bool:
        return self.source is ReadingSource.ESTIMATE


class MeterContext(_Frozen):
    """What the domain knows about the meter and its account when the reading arrives.

    ``previous`` may hold any number of stored readings in any order (actual and estimated); the
    latest actual one before the new reading is the baseline. ``valve_closed`` means closed throughout
    the interval since that baseline. ``hourly_use_m3`` is consecutive hourly consumption, oldest
    first, ending with the latest complete hour; ``None`` marks an hour without data.
    ``last_contact_at`` is the last time the meter's own link (IoT) was heard; ``None`` for a meter
    without one.
    """

    meter_id: str = Field(min_length=1)
    previous: tuple[PreviousReading, ...] = ()
    avg_daily_use_m3: Decimal | None = Field(default=None, ge=0)
    category: CustomerCategory = CustomerCategory.RESIDENTIAL
    account_active: bool = True
    valve_closed: bool = False
    meter_model: str | None = None
    qmax_m3_per_h: Decimal | None = Field(default=None, gt=0)
    """Overrides the model's Qmax from the settings."""
    register_digits: int | None = Field(default=None, ge=1, le=11)
    """Integer digits of the register; ``None`` uses the settings' default."""
    hourly_use_m3: tuple[Decimal | None, ...] = ()
    consecutive_estimated_bills: int = Field(default=0, ge=0)
    last_contact_at: AwareDatetime | None = None


class Finding(_Frozen):
    """One rule that fired: what it saw (``message``, English, with the numbers) and what to do."""

    rule: RuleId
    severity: Severity
    message: str
    action: Action
    meter_id: str | None = None
    account_id: str | None = None
    work_order: WorkOrderKind | None = None
    """Set exactly when ``action`` is ``open_work_order``."""
    alarm: AlarmKind | None = None
    """Set exactly when ``action`` is ``raise_alarm``."""
    suspect: bool = False
    """The reading itself is doubtful (its quality becomes ``suspect``)."""

    @model_validator(mode="after")
    def _action_matches_target(self) -> Finding:
        if (self.action is Action.OPEN_WORK_ORDER) != (self.work_order is not None):
            raise ValueError("work_order is set exactly when the action is open_work_order")
        if (self.action is Action.RAISE_ALARM) != (self.alarm is not None):
            raise ValueError("alarm is set exactly when the action is raise_alarm")
        return self


NOT_BILLED = frozenset({Action.HOLD_BILLING, Action.ESTIMATE, Action.FLAG_CONFLICT, Action.DROP_DUPLICATE})
"""Actions after which the reading is not billed as it is."""


def require_aware(moment: datetime, name: str) -> None:
    """Refuse a naive datetime: every time in the domain is timezone-aware."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


class ValidationResult(_Frozen):
    """The verdict on one reading.

    ``consumption_m3`` is the use since the baseline (rollover-corrected); ``None`` when there is no
    baseline or the reading is a duplicate or conflict. A negative value means the register went
    backwards (and the ``negative`` finding says so unless that rule is off).
    """

    meter_id: str
    read_at: AwareDatetime
    quality: tuple[QualityFlag, ...]
    findings: tuple[Finding, ...] = ()
    consumption_m3: Decimal | None = None
    baseline: PreviousReading | None = None

    @property
    def actions(self) -> frozenset[Action]:
        return frozenset(f.action for f in self.findings)

    @property
    def rules(self) -> frozenset[RuleId]:
        return frozenset(f.rule for f in self.findings)

    @property
    def dropped(self) -> bool:
        """A duplicate: nothing to store."""
        return Action.DROP_DUPLICATE in self.actions

    @property
    def conflict(self) -> bool:
        return Action.FLAG_CONFLICT in self.actions

    @property
    def billable(self) -> bool:
        """Whether the reading may be billed as it is."""
        return not (self.actions & NOT_BILLED)

    def by_rule(self, rule: RuleId) -> tuple[Finding, ...]:
        """The findings of one rule."""
        return tuple(f for f in self.findings if f.rule is rule)
