"""The alarm policy and the work-order calendar as configuration: defaults, partial overrides, what is
refused at start-up, and SLA deadlines on the working-day calendar (computed by hand)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from core.alarms import AlarmPolicy
from core.catalogue.messages import AlarmKind, NotificationKind
from core.workorders import SlaCommitment, WorkOrderSettings, WorkOrderStatus, due_at, is_working_day
from core.workorders.states import TRANSITIONS
from hub.errors import ConfigError
from hub.settings import load_settings


def test_defaults_close_for_leaks_and_only_order_for_tampering() -> None:
    policy = AlarmPolicy()
    leak, battery, tamper = (policy.action(k) for k in (AlarmKind.LEAK, AlarmKind.LOW_BATTERY, AlarmKind.TAMPER))
    assert (leak.close_valve, leak.notify_user, leak.severity) == (True, NotificationKind.ALARM, 5)
    assert leak.work_order is not None
    assert (leak.work_order.category, leak.work_order.priority.value) == ("emergency_repair", "emergency")
    assert (battery.close_valve, battery.notify_user) == (False, NotificationKind.REMINDER)
    assert battery.work_order is not None
    assert battery.work_order.priority.value == "normal"
    assert (tamper.close_valve, tamper.notify_user) == (False, None)
    assert tamper.work_order is not None
    assert tamper.work_order.category == "inspection"
    assert policy.closing_kinds() == {AlarmKind.LEAK, AlarmKind.ABNORMAL_FLOW, AlarmKind.GAS_DETECTOR}
    assert policy.emits() == ("valve.command", "notification.requested")
    assert AlarmPolicy().check(WorkOrderSettings()) == AlarmPolicy()


def test_a_kind_section_overrides_only_the_keys_it_gives() -> None:
    policy = AlarmPolicy.model_validate({"leak": {"notify_user": None}})
    assert policy.leak.close_valve
    assert policy.leak.notify_user is None
    assert policy.leak.work_order is not None
    quiet = AlarmPolicy.model_validate({k.value: {"close_valve": False, "notify_user": None} for k in AlarmKind})
    assert quiet.emits() == ()


@pytest.mark.parametrize(("raw", "message"), [
    ({"earthquake": {}}, "earthquake"),
    ({"leak": {"close": True}}, "close"),
    ({"leak": {"severity": 9}}, "severity"),
    ({"leak": {"notify_user": "telegram"}}, "notify_user"),
    ({"leak": {"work_order": {"category": "Emergency"}}}, "category"),
    ({"leak": {"work_order": {"category": "x", "priority": "asap"}}}, "priority"),
])
def test_a_bad_policy_is_refused(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AlarmPolicy.model_validate(raw)


def test_the_hub_refuses_an_order_category_the_calendar_does_not_know() -> None:
    with pytest.raises(ConfigError, match=r"core\.alarms\.tamper\.work_order\.category 'forensics'"):
        load_settings(core={"alarms": {"tamper": {"work_order": {"category": "forensics"}}}})
    settings = load_settings(core={"alarms": {"tamper": {"work_order": {"category": "forensics"}}},
                                   "work_orders": {"categories": {"forensics": {"working_days": 2}}}})
    assert settings.core.alarms.tamper.work_order is not None


@pytest.mark.parametrize(("raw", "message"), [
    ({"minutes": 30, "working_days": 1}, "exactly one"),
    ({}, "exactly one"),
    ({"minutes": 0}, "minutes"),
    ({"minutes": 30, "until": "closed"}, "until"),
])
def test_a_commitment_has_one_clock(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SlaCommitment.model_validate(raw)


def test_calendar_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match="time zone"):
        WorkOrderSettings(timezone="Mars/Olympus")
    with pytest.raises(ValidationError, match="both a holiday and an extra working day"):
        WorkOrderSettings(holidays=frozenset({date(2026, 10, 10)}), extra_working_days=frozenset({date(2026, 10, 10)}))


SPRING = WorkOrderSettings(holidays=frozenset({date(2027, 2, d) for d in range(5, 12)}),  # Spring Festival 2027
                           extra_working_days=frozenset({date(2027, 2, 13)}))


@pytest.mark.parametrize(("opened", "days", "due"), [
    # Monday 09:00 local, 3 working days: Tue, Wed, Thu → end of Thu = Fri 00:00 local = Thu 16:00 UTC.
    (datetime(2026, 11, 23, 1, 0, tzinfo=UTC), 3, datetime(2026, 11, 26, 16, 0, tzinfo=UTC)),
    # Friday 17:00 local, 1 working day: the weekend does not count → end of Mon 30 Nov.
    (datetime(2026, 11, 27, 9, 0, tzinfo=UTC), 1, datetime(2026, 11, 30, 16, 0, tzinfo=UTC)),
    # Saturday: the day opened does not count even when it is no working day → Mon, Tue.
    (datetime(2026, 11, 28, 3, 0, tzinfo=UTC), 2, datetime(2026, 12, 1, 16, 0, tzinfo=UTC)),
    # 23:30 UTC Sunday is already Monday 07:30 in Shaoxing: counting starts Tuesday.
    (datetime(2026, 11, 29, 23, 30, tzinfo=UTC), 1, datetime(2026, 12, 1, 16, 0, tzinfo=UTC)),
    # Thu 4 Feb 2027, 15 days: Feb 5-11 holidays, Sat 13 works: Fri 12 (1), Sat 13 (2), Mon 15 … Fri 19 (7),
    # Mon 22 … Fri 26 (12), Mon 1 Mar (13), Tue 2 (14), Wed 3 Mar (15) → end of Wed 3 Mar.
    (datetime(2027, 2, 4, 2, 0, tzinfo=UTC), 15, datetime(2027, 3, 3, 16, 0, tzinfo=UTC)),
])
def test_working_day_deadlines(opened: datetime, days: int, due: datetime) -> None:
    assert due_at(opened, SlaCommitment(working_days=days), SPRING) == due


def test_minute_deadlines_run_around_the_clock_and_the_calendar_knows_its_days() -> None:
    sat_night = datetime(2027, 2, 6, 15, 50, tzinfo=UTC)  # a holiday, 23:50 local
    assert due_at(sat_night, SlaCommitment(minutes=30, until=WorkOrderStatus.ON_SITE), SPRING) == (
        sat_night + timedelta(minutes=30))
    assert not is_working_day(date(2027, 2, 8), SPRING)  # a Monday in the holiday
    assert is_working_day(date(2027, 2, 13), SPRING)  # a Saturday made a working day
    assert not is_working_day(date(2027, 2, 14), SPRING)


def test_every_state_but_archived_leads_somewhere_and_every_state_is_reachable() -> None:
    assert {s for s, nxt in TRANSITIONS.items() if not nxt} == {WorkOrderStatus.ARCHIVED}
    reachable = {WorkOrderStatus.ACCEPTED}
    frontier = [WorkOrderStatus.ACCEPTED]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()] - reachable:
            reachable.add(nxt)
            frontier.append(nxt)
    assert reachable == set(WorkOrderStatus)
