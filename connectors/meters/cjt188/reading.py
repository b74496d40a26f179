"""From a decoded ``901F`` reply to the canonical ``meter.reading``.

The reading's time is when the hub received the reply, not the meter's clock: meter clocks drift and
are often unset (all zero). The meter's clock and the status-bit events (low battery, tamper, magnet,
valve fault) travel beside the reading in :class:`MeterReport`; :func:`reading_data` puts them into the
``meter.reading`` data as far as the catalogue's ``MeterReading`` has fields for them
(``meter_clock`` and ``events``), so the core's clock-drift and tamper rules can use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import ROUND_DOWN, Decimal
from typing import Any

from connectors.meters.cjt188.messages import MeteringData
from connectors.meters.cjt188.profiles import MeterProfile
from core.catalogue.messages import MeterReading, ReadingSource
from core.readings.vocabulary import DeviceEvent

_LITRE = Decimal("0.001")


@dataclass(frozen=True, slots=True)
class MeterReport:
    """A reading and what the meter said with it."""

    reading: MeterReading
    meter_clock: datetime | None
    """The meter's clock when it answered, in the company's time zone; ``None`` when unset or invalid."""
    events: frozenset[DeviceEvent]


def meter_report(data: MeteringData, profile: MeterProfile, *, meter_id: str, received_at: datetime,
                 tz: tzinfo, source: ReadingSource = ReadingSource.DTU) -> MeterReport:
    """The reading of a ``901F`` reply. The register is cut to whole litres (the catalogue keeps 3
    decimals of m³); a unit byte that is not a volume raises ``DecodeError``."""
    volume = data.current.m3().quantize(_LITRE, rounding=ROUND_DOWN)
    bits = profile.status
    reading = MeterReading(
        meter_id=meter_id, read_at=received_at, volume_m3=volume, source=source,
        valve=bits.valve(data.status),
        battery_low=bool(data.status & bits.battery_low) if bits.battery_low else None,
    )
    return MeterReport(reading, data.clock.to_datetime(tz), bits.events(data.status))


def reading_data(report: MeterReport) -> dict[str, Any]:
    """The ``meter.reading`` data (JSON-ready). Adds ``meter_clock`` and ``events`` once ``MeterReading``
    has those fields; until then they are left out (the catalogue forbids unknown fields)."""
    data = report.reading.model_dump(mode="json", exclude_none=True)
    fields = MeterReading.model_fields
    if "meter_clock" in fields and report.meter_clock is not None:
        data["meter_clock"] = report.meter_clock.isoformat()
    if "events" in fields and report.events:
        data["events"] = sorted(report.events)
    return data
