"""From a decoded ``901F`` reply to the canonical ``meter.reading``.

:class:`MeterReport` holds the reading dated when the hub (or the platform) received the reply, the
meter's own clock, and the status-bit events (low battery, tamper, magnet, valve fault).
:func:`reading_data` makes the ``meter.reading`` the catalogue defines: ``read_at`` is the meter's clock
when the meter gave a valid one, with ``received_at`` beside it so that the core's clock rule sees any
drift (more than 15 min holds the reading: domain.md's "clock" exception); a meter whose clock is
unset (all zero, common) is dated by the receive time alone. The events go to ``events`` for the
tamper rule.
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
    """The ``meter.reading`` data (JSON-ready): dated by the meter's clock with the receive time beside
    it when the meter's clock is set, by the receive time otherwise; with the status-bit events."""
    reading = report.reading
    update: dict[str, Any] = {}
    if report.meter_clock is not None:  # an aware datetime, as MeterReading.read_at asks
        update["read_at"], update["received_at"] = report.meter_clock, reading.read_at
    if report.events:
        update["events"] = sorted(report.events)
    if update:  # values of the fields' own types: the validated reading stays valid
        reading = reading.model_copy(update=update)
    return reading.model_dump(mode="json", exclude_none=True)
