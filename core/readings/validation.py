"""The engine: run the enabled rules over one reading and turn their findings into a verdict.

Order: duplicate (a duplicate or conflict ends validation), clock, tamper, silent link, register
(rollover / negative), the consumption rules (spike, capacity, use while closed, zero use; only for a
non-negative consumption from an actual baseline), estimate above actual, leak, and last prolonged
estimation, which fires only when this reading does not end the run of estimates (it is an estimate
itself, or it will not be billed).
"""

from __future__ import annotations

from datetime import datetime

from core.readings import rules
from core.readings.estimation import estimate_exceeds_actual, latest_estimate_since
from core.readings.model import (
    NOT_BILLED,
    Finding,
    MeterContext,
    PreviousReading,
    ReadingInput,
    ValidationResult,
    require_aware,
)
from core.readings.register import Consumption, baseline, consumption
from core.readings.settings import DEFAULT_SETTINGS, ValidationSettings
from core.readings.vocabulary import Action, QualityFlag, RuleId

HOLDS_BILL = frozenset({Action.HOLD_BILLING, Action.FLAG_CONFLICT})
"""Findings after which no bill is made until an operator has looked (domain.md: "exception; hold
billing"); a reading held only for ``estimate`` is billed as an estimate instead."""


def validate_reading(
    reading: ReadingInput,
    context: MeterContext,
    *,
    now: datetime,
    settings: ValidationSettings = DEFAULT_SETTINGS,
) -> ValidationResult:
    """Validate ``reading`` against what is known of its meter, as of ``now``."""
    require_aware(now, "now")
    if reading.meter_id != context.meter_id:
        raise ValueError(f"reading of meter {reading.meter_id} checked against meter {context.meter_id}")
    on = settings.enabled

    if on(RuleId.DUPLICATE) and (dup := rules.duplicate(reading, context)) is not None:
        return _result(reading, [dup], None, None)

    findings: list[Finding | None] = []
    if on(RuleId.CLOCK):
        findings.append(rules.clock(reading, now, settings))
    if on(RuleId.TAMPER):
        findings.extend(rules.tamper(reading, settings))
    if on(RuleId.STALE):
        findings.append(rules.silent_link(reading, context, now, settings))

    base = baseline(context.previous, reading.read_at)
    use: Consumption | None = None
    if base is not None:
        digits = context.register_digits or settings.default_register_digits
        use = consumption(base.volume_m3, reading.volume_m3, digits=digits,
                          fraction=settings.rollover_fraction, correct_rollover=on(RuleId.ROLLOVER))
        finding = rules.register(reading, base, use, digits)
        if finding is not None and on(finding.rule):
            findings.append(finding)
        if use.value_m3 >= 0:
            check = rules.Check(reading, context, settings, base, use)
            findings.extend(_consumption_rules(check))

    if on(RuleId.ESTIMATE_ABOVE_ACTUAL) and not reading.is_estimate:
        estimate = latest_estimate_since(context.previous, base.read_at if base else None, reading.read_at)
        if estimate is not None:
            findings.append(estimate_exceeds_actual(reading.meter_id, reading.volume_m3, estimate))
    if on(RuleId.LEAK):
        findings.append(rules.leak(reading.meter_id, context, settings))

    held = any(f is not None and f.action in NOT_BILLED for f in findings)
    if on(RuleId.PROLONGED_ESTIMATION) and (reading.is_estimate or held):
        findings.append(rules.actual_read_finding(reading.meter_id, context.consecutive_estimated_bills, settings))
    return _result(reading, [f for f in findings if f is not None], use, base)


def _consumption_rules(check: rules.Check) -> list[Finding | None]:
    on = check.settings.enabled
    out: list[Finding | None] = []
    if on(RuleId.SPIKE):
        out.append(rules.spike(check))
    if on(RuleId.OVER_CAPACITY):
        out.append(rules.over_capacity(check))
    if on(RuleId.USE_WHILE_CLOSED):
        out.extend(rules.use_while_closed(check))
    if on(RuleId.ZERO_USE):
        out.append(rules.zero_use(check))
    return out


def _result(
    reading: ReadingInput, findings: list[Finding], use: Consumption | None, base: PreviousReading | None
) -> ValidationResult:
    quality = [QualityFlag.SUSPECT if any(f.suspect for f in findings) else QualityFlag.VALID]
    if use is not None and use.rolled_over:
        quality.append(QualityFlag.DERIVED)
    if reading.is_estimate:
        quality.append(QualityFlag.ESTIMATED)
    actions = {f.action for f in findings}
    if actions & NOT_BILLED and Action.DROP_DUPLICATE not in actions:
        quality.append(QualityFlag.HELD)
        if Action.ESTIMATE in actions and not actions & HOLDS_BILL:
            quality.append(QualityFlag.ESTIMATE_DUE)
    return ValidationResult(
        meter_id=reading.meter_id,
        read_at=reading.read_at,
        quality=tuple(quality),
        findings=tuple(findings),
        consumption_m3=use.value_m3 if use is not None else None,
        baseline=base,
    )
