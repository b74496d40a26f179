"""The events ``record_reading`` writes for a stored reading's findings.

* ``reading.flagged`` when any finding asks for more than accepting the reading (a corrected
  rollover alone is only noted in the quality, as ``derived``);
* ``alarm.raised`` (safety lane) for each finding whose action is to raise an alarm: a suspected
  leak (``leak``), use while the valve was closed (``valve_fault``); ``core:record_alarm`` takes it
  and closes the valve for a leak. No second leak alarm while one is open for the meter;
* ``work_order.requested`` for the findings whose action is to open a work order, one per kind
  (two tamper events of one reading make one inspection);
* ``notification.requested`` to the account holder for findings of the rules in
  ``ReadingsSettings.notify`` (a leak is a safety message: ``kind = alarm``, ``safety``).

Every id is made from the reading's message id, so a reading can only ever have one of each, and a
partner or core handler that sees one again knows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta, timezone

from core.catalogue.messages import (
    AlarmKind,
    AlarmRaised,
    MeterReading,
    NotificationKind,
    NotificationRequested,
    ReadingFinding,
    ReadingFlagged,
    WorkOrderRequested,
)
from core.messages import Event, derived_id
from core.readings import Action, Finding, ReadingsSettings, RuleId, Severity, ValidationResult

CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
ALARM_SEVERITY = {Severity.CRITICAL: 5, Severity.ERROR: 4, Severity.WARNING: 3, Severity.INFO: 2}


def is_flagged(result: ValidationResult) -> bool:
    return any(f.action is not Action.ACCEPT for f in result.findings)


def alarm_findings(result: ValidationResult) -> list[Finding]:
    return [f for f in result.findings if f.action is Action.RAISE_ALARM and f.alarm is not None]


def notify_rules(result: ValidationResult, settings: ReadingsSettings) -> list[RuleId]:
    """The rules to tell the holder about, once each, in the order they fired."""
    return list(dict.fromkeys(f.rule for f in result.findings if f.rule in settings.notify))


@dataclass(frozen=True, slots=True)
class StoredReading:
    """A reading this batch stored, with its verdict."""

    reading_id: str
    data: MeterReading
    result: ValidationResult
    account_id: str | None


def flagged_event(r: StoredReading) -> Event:
    findings = [
        ReadingFinding(rule=f.rule.value, severity=f.severity.value, action=f.action.value, message=f.message[:500],
                       work_order=f.work_order.value if f.work_order else None, alarm=f.alarm)
        for f in r.result.findings
    ]
    data = ReadingFlagged(
        reading_id=r.reading_id, meter_id=r.data.meter_id, account_id=r.account_id, read_at=r.data.read_at,
        volume_m3=r.data.volume_m3, consumption_m3=r.result.consumption_m3,
        quality=[q.value for q in r.result.quality], billable=r.result.billable, findings=findings)
    return Event("reading.flagged", data, subject=r.data.meter_id)


def alarm_event(r: StoredReading, finding: Finding, *, user_notified: bool = False) -> Event:
    assert finding.alarm is not None
    data = AlarmRaised(
        alarm_id=derived_id(finding.rule.value, r.reading_id), kind=finding.alarm, meter_id=r.data.meter_id,
        account_id=r.account_id, detected_at=r.data.read_at, severity=ALARM_SEVERITY[finding.severity],
        detail=finding.message[:500], user_notified=user_notified)
    return Event("alarm.raised", data, subject=r.data.meter_id)


def notification_event(r: StoredReading, rule: RuleId, phone: str) -> Event:
    leak = rule is RuleId.LEAK
    params = {
        "meter": r.data.meter_id,
        "rule": rule.value,
        "read_at": r.data.read_at.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M"),
        "volume_m3": f"{r.data.volume_m3:.3f}",
    }
    if r.result.consumption_m3 is not None:
        params["use_m3"] = f"{r.result.consumption_m3:.3f}"
    data = NotificationRequested(
        notification_id=derived_id(rule.value, r.reading_id),
        kind=NotificationKind.ALARM if leak else NotificationKind.READING,
        account_id=r.account_id, phone=phone, params=params, safety=leak)
    return Event("notification.requested", data, subject=r.data.meter_id)


def work_order_events(r: StoredReading) -> list[Event]:
    """One ``work_order.requested`` per work-order kind the reading's findings call for."""
    by_kind: dict[str, list[Finding]] = {}
    for f in r.result.findings:
        if f.action is Action.OPEN_WORK_ORDER and f.work_order is not None:
            by_kind.setdefault(f.work_order.value, []).append(f)
    return [
        Event("work_order.requested", WorkOrderRequested(
            work_order_id=derived_id(f"wo-{kind}", r.reading_id), kind=kind, rule=found[0].rule.value,
            severity=max((f.severity for f in found), key=SEVERITY_RANK.__getitem__).value,
            meter_id=r.data.meter_id, account_id=r.account_id, detected_at=r.data.read_at,
            reason="; ".join(f.message for f in found)[:500], reading_id=r.reading_id), subject=r.data.meter_id)
        for kind, found in by_kind.items()
    ]


SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2, Severity.CRITICAL: 3}


def leak_alarm(finding: Finding) -> bool:
    return finding.alarm is AlarmKind.LEAK
