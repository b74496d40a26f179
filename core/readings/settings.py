"""Every threshold of the VEE table as a setting, defaulting to the table's figure (domain.md)."""

from __future__ import annotations

from datetime import time, timedelta
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.catalogue.messages import ReadingSource
from core.readings.vocabulary import CustomerCategory, DeviceEvent, EstimationMethod, RuleId

PositiveDecimal = Annotated[Decimal, Field(gt=0)]

DEFAULT_SPIKE_FACTORS: dict[CustomerCategory, Decimal] = {
    CustomerCategory.RESIDENTIAL: Decimal(5),
    CustomerCategory.COMMERCIAL: Decimal(3),
    CustomerCategory.INDUSTRIAL: Decimal(3),
    CustomerCategory.HEATING: Decimal(3),
}

DEFAULT_QMAX_BY_MODEL: dict[str, Decimal] = {
    "G1.6": Decimal("2.5"),
    "G2.5": Decimal("4.0"),
    "G4": Decimal("6.0"),
    "G6": Decimal("10"),
    "G10": Decimal("16"),
    "G16": Decimal("25"),
    "G25": Decimal("40"),
}
"""Maximum flow (m³/h) of the usual diaphragm-meter size designations (Gx.y → Qmax)."""


class ValidationSettings(BaseModel):
    """Thresholds of the reading rules. Immutable; build a new one (``model_copy(update=...)``) to change.

    Strict/non-strict comparisons follow the table: "> limit" fires only above the limit, "≥" at it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    disabled_rules: frozenset[RuleId] = frozenset()
    """Rules switched off: they neither fire nor, for rollover, correct."""

    # negative / rollover
    default_register_digits: int = Field(default=6, ge=1, le=11)
    """Integer digits of the register when the meter context does not say. CJ/T 188 ``901F`` carries
    4 BCD bytes with 2 decimals, i.e. 6 integer digits (wraps after 999999.99 m³)."""
    rollover_fraction: Decimal = Field(default=Decimal("0.9"), gt=0, le=1)
    """A drop larger than this fraction of 10^digits is a rollover, not a negative consumption."""

    # spike
    spike_factors: dict[CustomerCategory, PositiveDecimal] = Field(default_factory=lambda: dict(DEFAULT_SPIKE_FACTORS))
    """Spike when consumption > factor × average daily use × days (residential 5, others 3)."""
    spike_min_interval: timedelta = Field(default=timedelta(days=1), gt=timedelta(0))
    """Intervals shorter than this are compared with this much average use (an hourly read is
    compared with a day's allowance, not an hour's)."""

    # zero use
    zero_use_period: timedelta = Field(default=timedelta(days=30), gt=timedelta(0))
    """Zero use for at least this long on an active account (valve open) → vacancy / stuck meter."""

    # use while closed or inactive
    closed_use_tolerance_m3: Decimal = Field(default=Decimal("0.01"), ge=0)
    """More than this while the valve is closed or the account inactive is suspicious."""

    # capacity
    qmax_by_model: dict[str, PositiveDecimal] = Field(default_factory=lambda: dict(DEFAULT_QMAX_BY_MODEL))
    """Qmax (m³/h) per meter model. Unknown model and no Qmax in the context → rule skipped."""

    # continuous small flow
    leak_window_hours: int = Field(default=24, ge=1)
    leak_min_hourly_m3: Decimal = Field(default=Decimal(0), ge=0)
    """An hour counts as "flowing" when its use is greater than this."""

    # stale
    stale_after: timedelta = Field(default=timedelta(hours=72), gt=timedelta(0))
    iot_sources: frozenset[ReadingSource] = frozenset(
        {ReadingSource.DTU, ReadingSource.CTWING, ReadingSource.ONENET, ReadingSource.VENDOR}
    )
    """Sources that come over the meter's own link: a reading from one proves it is not silent."""

    # clock
    clock_future_tolerance: timedelta = Field(default=timedelta(minutes=15), ge=timedelta(0))
    """A read time later than ``now`` + this is in the future. No figure in the table; the drift figure."""
    clock_max_drift: timedelta = Field(default=timedelta(minutes=15), ge=timedelta(0))
    """Read time vs platform receive time differing by more than this is clock drift."""

    # prolonged estimation
    estimated_bills_limit: int = Field(default=2, ge=1)
    """This many estimated bills in a row (or more) → mandatory actual-read order."""

    # tamper
    inspection_events: frozenset[DeviceEvent] = frozenset(
        {DeviceEvent.TAMPER, DeviceEvent.MAGNETIC, DeviceEvent.COVER_OPEN}
    )

    # estimation
    estimation_order: tuple[EstimationMethod, ...] = Field(
        default=(EstimationMethod.LAST_MONTH, EstimationMethod.LAST_YEAR, EstimationMethod.AVERAGE_DAILY),
        min_length=1,
    )
    """Methods tried in order; the first with enough history wins."""
    estimate_quantum: Decimal = Field(default=Decimal("0.001"), gt=0)

    def enabled(self, rule: RuleId) -> bool:
        """Whether ``rule`` is switched on."""
        return rule not in self.disabled_rules

    def spike_factor(self, category: CustomerCategory) -> Decimal:
        """The spike factor for ``category`` (the commercial one if the category has none)."""
        return self.spike_factors.get(category, self.spike_factors.get(CustomerCategory.COMMERCIAL, Decimal(3)))


DEFAULT_SETTINGS = ValidationSettings()


WORK_ORDER_RULES = frozenset({RuleId.TAMPER, RuleId.ZERO_USE, RuleId.USE_WHILE_CLOSED, RuleId.STALE,
                              RuleId.PROLONGED_ESTIMATION})
"""The rules whose findings open work orders."""


class ReadingsSettings(BaseModel):
    """How ``core:record_reading`` applies the rules: the rules' thresholds (``rules``), how much
    history it reads, and what it does with findings. The hub's ``core.readings`` settings
    (``GASHUB_CORE__READINGS__RULES__DISABLED_RULES='["zero_use"]'``,
    ``GASHUB_CORE__READINGS__NOTIFY='["leak"]'``, ``[core.readings.rules.spike_factors]`` in
    ``config/*.toml``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    rules: ValidationSettings = ValidationSettings()
    run_rules: bool = True
    """Run the rules at all. Off only for loading readings already validated elsewhere (a migration
    from the legacy system, a backfill): they are stored as they come, with quality ``unvalidated``,
    and nothing is flagged, alarmed or told."""
    history_window: timedelta = Field(default=timedelta(days=30), gt=timedelta(0))
    """The average daily use runs to the previous accepted reading from an earlier one at least this
    long before the new reading (or, for a younger meter, from its first accepted reading); the
    zero-use run is traced back as far. At least ``rules.zero_use_period``."""
    average_min_span: timedelta = Field(default=timedelta(days=7), gt=timedelta(0))
    """Less history than this gives no average daily use (the spike rule then stays silent)."""
    hourly_max_gap: timedelta = Field(default=timedelta(hours=1), gt=timedelta(0))
    """For the leak rule's hourly use: an interval between readings longer than this leaves its hours
    unknown (unless nothing was used), and an unknown hour breaks the run."""
    flag_events: bool = True
    """Emit ``reading.flagged`` for each stored reading with a finding other than an informational
    one (a corrected rollover)."""
    raise_alarms: bool = True
    """Emit ``alarm.raised`` (safety lane) for findings whose action is to raise an alarm: a suspected
    leak, use while the valve was closed. Off only where no route takes ``alarm.raised``."""
    request_work_orders: bool = False
    """Emit ``work_order.requested`` for findings whose action is to open a work order (tamper →
    inspection, zero use, theft, stale link, prolonged estimation), from readings and from the daily
    checks. ``core:open_work_order`` opens the orders (the route ``work-orders`` in routes/meters.toml).
    Off by default: a route set without that route would leave the events untaken, which the hub
    refuses. The exceptions list records the findings either way."""
    daily_check_at: time | None = time(3, 0)
    """Local time (Asia/Shanghai) of the daily checks over the database (stale meters, zero use,
    prolonged estimation: ``gashub readings check`` runs them on demand); empty = no daily run."""
    notify: frozenset[RuleId] = frozenset({RuleId.SPIKE, RuleId.LEAK})
    """Rules whose findings are told to the account holder by ``notification.requested`` (needs the
    personal-data keys to read the holder's phone)."""

    @model_validator(mode="after")
    def _window_covers_zero_use(self) -> ReadingsSettings:
        if self.history_window < self.rules.zero_use_period:
            raise ValueError(f"history_window ({self.history_window}) must be at least rules.zero_use_period "
                             f"({self.rules.zero_use_period}), or zero use could never be seen")
        return self

    def emits(self) -> tuple[str, ...]:
        """The message types ``record_reading`` may write to the outbox with these settings."""
        if not self.run_rules:
            return ()
        out = []
        if self.flag_events:
            out.append("reading.flagged")
        alarm_rules = {RuleId.LEAK, RuleId.USE_WHILE_CLOSED}
        if self.raise_alarms and any(self.rules.enabled(r) for r in alarm_rules):
            out.append("alarm.raised")
        if any(self.rules.enabled(r) for r in self.notify):
            out.append("notification.requested")
        if self.request_work_orders and any(self.rules.enabled(r) for r in WORK_ORDER_RULES):
            out.append("work_order.requested")
        return tuple(out)


DEFAULT_READINGS = ReadingsSettings()
