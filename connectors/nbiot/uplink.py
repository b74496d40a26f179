"""What both platforms deliver, made canonical: a known device, a meter frame or decoded fields,
and the ``meter.reading`` they mean.

A push is refused (:class:`Refused`: an HTTP status and a reason the audit keeps) when its device is
not configured, its frame does not decode with the meter's profile, or it names another meter.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any

from connectors.meters.cjt188 import (
    DecodeError,
    Message,
    MeteringData,
    MeterProfile,
    MeterProfiles,
    WriteReply,
    decode_frame,
    decode_message,
    meter_report,
    reading_data,
)
from connectors.nbiot.settings import DeviceBinding, FieldMap
from core.catalogue.messages import MeterReading, ReadingSource, ValveState

_LITRE = Decimal("0.001")


class Refused(Exception):
    """Input we do not take: ``status`` for the platform, ``reason`` for it and the audit."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Devices:
    """The configured devices, found by platform device id or IMEI."""

    def __init__(self, devices: list[DeviceBinding], profiles: MeterProfiles) -> None:
        self.profiles = profiles
        self._by_key: dict[str, DeviceBinding] = {}
        self.by_meter: dict[str, DeviceBinding] = {d.meter_id: d for d in devices}
        for device in devices:
            profiles.get(device.profile)  # an unknown profile is a ConfigError at start-up
            self._by_key[device.device_id] = device
            if device.imei:
                self._by_key[device.imei] = device

    def find(self, device_id: object, imei: object = None) -> DeviceBinding:
        for key in (device_id, imei):
            if isinstance(key, str | int) and str(key) in self._by_key:
                return self._by_key[str(key)]
        raise Refused(403, f"unknown device {str(device_id)[:64]!r} (IMEI {str(imei)[:20]!r}): not configured")

    def profile(self, device: DeviceBinding) -> MeterProfile:
        return self.profiles.get(device.profile)


def frame_bytes(value: object, *, encoding: str) -> bytes:
    """The bytes of a frame carried as base64 (CTWing ``APPdata``) or hex text."""
    if not isinstance(value, str) or not value:
        raise Refused(400, f"no {encoding} frame text")
    try:
        if encoding == "hex":
            return bytes.fromhex(value)
        return base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        raise Refused(400, f"frame is not {encoding}") from None


def decode_meter_message(device: DeviceBinding, profile: MeterProfile, raw: bytes) -> Message:
    """The CJ/T 188 message in a frame from ``device``'s meter; ``Refused`` when garbled or foreign."""
    try:
        frame = decode_frame(profile.strip_radio_header(raw), address_bytes=profile.address_bytes)
        message = decode_message(frame, profile.dialect)
    except DecodeError as exc:
        raise Refused(400, f"garbled frame from device {device.device_id}: {exc}") from None
    if device.address is not None and message.address != device.address:
        raise Refused(400, f"frame from device {device.device_id} names meter {message.address}, "
                           f"not its meter {device.address}")
    return message


def reading_from_frame(device: DeviceBinding, profile: MeterProfile, raw: bytes, *, received_at: datetime,
                       tz: tzinfo, source: ReadingSource) -> dict[str, Any]:
    """The ``meter.reading`` data of a ``901F`` reply in ``raw`` (clock and status events included)."""
    return reading_from_message(device, profile, decode_meter_message(device, profile, raw), received_at=received_at,
                                tz=tz, source=source)


def reading_from_message(device: DeviceBinding, profile: MeterProfile, message: object, *, received_at: datetime,
                         tz: tzinfo, source: ReadingSource) -> dict[str, Any]:
    """``reading_from_frame`` for a frame ``decode_meter_message`` decoded already (it is not decoded twice)."""
    if not isinstance(message, MeteringData):
        raise Refused(400, f"frame from device {device.device_id} is {type(message).__name__}, not metering data")
    try:
        report = meter_report(message, profile, meter_id=device.meter_id, received_at=received_at, tz=tz,
                              source=source)
    except DecodeError as exc:
        raise Refused(400, f"metering data from device {device.device_id}: {exc}") from None
    return reading_data(report)


def _decimal(value: object, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Refused(400, f"{what} is not a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise Refused(400, f"{what} {str(value)[:20]!r} is not a number") from None
    if not number.is_finite():
        raise Refused(400, f"{what} is not a finite number")
    return number


def reading_from_fields(device: DeviceBinding, payload: dict[str, Any], fields: FieldMap, *,
                        read_at: datetime, source: ReadingSource) -> dict[str, Any]:
    """The ``meter.reading`` data of a decoded payload, by the product's field names."""
    if fields.volume not in payload:
        raise Refused(400, f"payload of device {device.device_id} has no {fields.volume!r} field")
    volume = (_decimal(payload[fields.volume], fields.volume) * fields.volume_scale).quantize(_LITRE, ROUND_DOWN)
    if volume < 0:
        raise Refused(400, f"negative register {volume} from device {device.device_id}")
    data: dict[str, Any] = {"meter_id": device.meter_id, "read_at": read_at, "volume_m3": volume, "source": source}
    if fields.battery_voltage and fields.battery_voltage in payload:
        data["battery_v"] = _decimal(payload[fields.battery_voltage], fields.battery_voltage)
    if fields.rsrp and fields.rsrp in payload:
        rsrp = _decimal(payload[fields.rsrp], fields.rsrp)
        if rsrp <= 0:  # some modules report RSRP in tenths of dB or as a positive level: leave those out
            data["signal_rsrp"] = int(rsrp)
    if fields.valve and fields.valve in payload:
        data["valve"] = fields.valve_values.get(str(payload[fields.valve]), ValveState.UNKNOWN.value)
    try:
        return MeterReading.model_validate(data).model_dump(mode="json", exclude_none=True)
    except ValueError as exc:
        raise Refused(400, f"payload of device {device.device_id} is not a reading: {exc}") from None


def valve_in_reply(profile: MeterProfile, message: Message) -> ValveState | None:
    """The valve state a meter's write reply reports in its status bytes, when it has any."""
    if not isinstance(message, WriteReply) or not message.status:
        return None
    return profile.status.valve(int.from_bytes(message.status, "little"))


@dataclass(frozen=True, slots=True)
class Online:
    """A device came online or went offline (both platforms report it)."""

    meter_id: str
    online: bool
    at: datetime
