"""The leak alarm of a meter that reports its own leak bit: only with the bit, on the safety lane, in
the reading's flow, one id per meter and local day."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from connectors.meters.alarms import leak_alarm
from connectors.meters.cjt188 import load_meter_profiles
from core.catalogue import Lane
from core.catalogue.messages import AlarmRaised
from hub.envelope import Envelope

TZ = ZoneInfo("Asia/Shanghai")


def test_only_a_status_word_with_the_leak_bit_raises_a_leak_alarm_in_the_readings_flow() -> None:
    profiles = load_meter_profiles()
    iot, standard = profiles.get("iot-alarm"), profiles.get("cjt188-2018")
    reading = Envelope(type="meter.reading", source="meters", subject="M1", data={})
    at = datetime(2026, 1, 14, 17, 30, tzinfo=UTC)  # 01:30 on the 15th in Shanghai

    def alarm(profile_status: int, model: str = "iot") -> Envelope | None:
        profile = iot if model == "iot" else standard
        return leak_alarm(profile, profile_status, meter_id="M1", detected_at=at, tz=TZ, reading=reading,
                          via="dtu:X")

    assert alarm(iot.status.valve_open | iot.status.tamper | iot.status.battery_low) is None
    assert alarm(0xFFFF, "standard") is None  # a model without a leak bit never raises one
    raised = alarm(iot.status.leak | iot.status.valve_open)
    assert raised is not None
    assert raised.priority is Lane.SAFETY
    assert (raised.correlation_id, raised.causation_id, raised.source) == (reading.correlation_id, reading.id,
                                                                           "meters")
    data = AlarmRaised.model_validate(raised.data)
    assert (data.alarm_id, data.kind.value, data.severity, data.user_notified) == (
        "meter-leak-M1-20260115", "leak", 5, False)
    again = leak_alarm(iot, iot.status.leak, meter_id="M1", detected_at=at.replace(minute=59), tz=TZ,
                       reading=Envelope(type="meter.reading", source="meters", subject="M1", data={}), via="dtu:X")
    assert again is not None
    assert again.data["alarm_id"] == data.alarm_id  # the same day's reports: one alarm
