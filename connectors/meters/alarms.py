"""The leak alarm of a meter that detects a leak itself and says so in its status bits.

Some IoT gas meters watch their own flow (gas without a pause for their configured time, or a
linked gas detector) and raise a vendor-defined status bit (the profile's ``leak`` mask). Whichever
path brings the report (a DTU bus, CTWing), the connector publishes ``alarm.raised`` of kind ``leak``
on the safety lane *before* the reading, in the reading's flow (its correlation id, caused by it), so
the core's alarm policy closes the valve, tells the holder and opens the emergency order. The alarm's
id is the meter and the local day: reports repeating the bit are one alarm, whatever process or path
hears them (the inbox drops the repeats, the core acts on an alarm id once).
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from connectors.meters.cjt188.profiles import MeterProfile
from core.catalogue import Lane
from core.catalogue.messages import AlarmKind, AlarmRaised, MessageType
from hub.envelope import Envelope


def leak_alarm(profile: MeterProfile, status: int, *, meter_id: str, detected_at: datetime, tz: tzinfo,
               reading: Envelope, via: str) -> Envelope | None:
    """``alarm.raised`` for a report whose status word has the profile's leak bit; ``None`` otherwise.
    Publish it with its ``data["alarm_id"]`` as the partner key."""
    if not profile.status.leaking(status):
        return None
    alarm_id = f"meter-leak-{meter_id}-{detected_at.astimezone(tz):%Y%m%d}"
    data = AlarmRaised(alarm_id=alarm_id, kind=AlarmKind.LEAK, meter_id=meter_id, detected_at=detected_at, severity=5,
                       detail=f"the meter reports a leak in its status bits (via {via})")
    return Envelope(type=MessageType.ALARM_RAISED.value, source=reading.source, subject=meter_id,
                    priority=Lane.SAFETY, correlation_id=reading.correlation_id, causation_id=reading.id,
                    data=data.model_dump(mode="json", exclude_none=True))
