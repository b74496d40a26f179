"""Meter-model profiles (config/meter_profiles.toml) and the way a 901F reply becomes a ``meter.reading``."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from connectors.meters.cjt188 import (
    DecodeError,
    DiOrder,
    MeterClock,
    MeteringData,
    MeterProfile,
    StatusBits,
    ValveAction,
    ValveControl,
    Volume,
    decode_frame,
    decode_message,
    encode_message,
    load_meter_profiles,
    meter_report,
    reading_data,
)
from core.catalogue.messages import MeterReading, ReadingSource, ValveState
from core.readings.vocabulary import DeviceEvent
from hub.errors import ConfigError

TZ = ZoneInfo("Asia/Shanghai")
RECEIVED = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)


def test_the_shipped_profiles_load_and_say_what_differs() -> None:
    book = load_meter_profiles()
    assert book.get(None) is book.profiles["cjt188-2004"]
    assert book.get("cjt188-2004").dialect.di_order is DiOrder.HIGH_FIRST
    assert book.get("cjt188-2018").dialect.di_order is DiOrder.LOW_FIRST
    assert book.get("valve-2a").dialect.valve_code == 0x2A
    assert book.get("top-bits").status.valve_mask == 0xC0
    assert book.get("nb-radio").radio_header == bytes.fromhex("A5 5A")
    with pytest.raises(ConfigError, match="no meter profile 'nope'"):
        book.get("nope")


@pytest.mark.parametrize(("toml", "problem"), [
    ('default = "x"\n[profiles.a]\n', "default profile 'x' is not among"),
    ('[profiles.cjt188-2004]\ndi_order = "sideways"\n', "profiles.cjt188-2004.di_order"),
    ('[profiles.cjt188-2004]\ncolour = 1\n', "profiles.cjt188-2004.colour: Extra inputs are not permitted"),
    ('[profiles.cjt188-2004.status]\nvalve_mask = 3\nvalve_closed = 4\n', "valve_closed 0x0004 has bits outside"),
    ('[profiles.cjt188-2004]\nradio_header = "zz"\n', "is not hex bytes"),
    ('[profiles.cjt188-2004]\nvalve_control_code = 0x80\n', "valve_control_code"),
    ("not toml [", "not valid TOML"),
])
def test_a_wrong_profile_file_is_a_config_error_naming_the_field(tmp_path: Path, toml: str, problem: str) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError, match=problem):
        load_meter_profiles(path)


def test_a_missing_profile_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no meter profile file"):
        load_meter_profiles(tmp_path / "absent.toml")


@pytest.mark.parametrize(("status", "valve", "events"), [
    (0x0000, ValveState.OPEN, set()),
    (0xFF00, ValveState.OPEN, set()),  # ST1 is vendor-defined: the standard profile reads none of it
    (0x0001, ValveState.CLOSED, set()),
    (0x0003, ValveState.ABNORMAL, {DeviceEvent.VALVE_ALARM}),
    (0x0002, ValveState.UNKNOWN, set()),
    (0x0005, ValveState.CLOSED, {DeviceEvent.LOW_BATTERY}),
])
def test_standard_status_bits(status: int, valve: ValveState, events: set[DeviceEvent]) -> None:
    bits = StatusBits()
    assert bits.valve(status) is valve
    assert bits.events(status) == events


def test_status_bits_counted_from_the_top_of_the_byte() -> None:
    bits = load_meter_profiles().get("top-bits").status
    assert bits.valve(0x40) is ValveState.CLOSED
    assert bits.valve(0x01) is ValveState.OPEN  # the standard's closed bit means nothing here
    assert bits.events(0x20) == {DeviceEvent.LOW_BATTERY}
    assert bits.events(0x04) == set()


def test_tamper_and_magnet_only_where_the_profile_has_them() -> None:
    assert load_meter_profiles().get("nb-radio").status.events(0x0100) == {DeviceEvent.TAMPER}
    assert StatusBits().events(0x0100) == set()
    assert StatusBits(magnetic=0x0200).events(0x0200) == {DeviceEvent.MAGNETIC}
    assert StatusBits(valve_mask=0, valve_open=0, valve_closed=0, valve_abnormal=0).valve(3) is None


def test_radio_header_is_stripped_or_refused() -> None:
    profile = load_meter_profiles().get("nb-radio")
    frame = bytes.fromhex("FE FE 68 30 34 12 90 78 56 34 12 01 03 90 1F 01 36 16")
    assert profile.strip_radio_header(bytes.fromhex("A5 5A") + frame) == frame
    with pytest.raises(DecodeError, match="radio module header missing, at offset 0, expected A5 5A, found FE FE"):
        profile.strip_radio_header(frame)
    assert MeterProfile().strip_radio_header(frame) == frame


def test_profile_dialect_drives_the_valve_frame() -> None:
    book = load_meter_profiles()
    close = ValveControl(0x30, "12345678901234", 2, ValveAction.CLOSE)
    assert encode_message(close, book.get("valve-2a").dialect).control == 0x2A
    assert encode_message(close, book.get("cjt188-2018").dialect).data == bytes.fromhex("17 A0 02 99")


def test_the_meters_md_reply_becomes_a_reading() -> None:
    wire = bytes.fromhex("FE FE FE 68 10 12 00 00 00 00 00 00 81 16 90 1F 00 10 00 10 00 2C 10 00 10 00 2C "
                         "00 00 00 00 00 00 00 00 FF 67 16")
    data = decode_message(decode_frame(wire))
    assert isinstance(data, MeteringData)
    report = meter_report(data, MeterProfile(), meter_id="M-12", received_at=RECEIVED, tz=TZ)
    assert report.reading == MeterReading(meter_id="M-12", read_at=RECEIVED, volume_m3=Decimal("1000.1"),
                                          source=ReadingSource.DTU, valve=ValveState.OPEN, battery_low=False)
    assert report.meter_clock is None  # all-zero clock: unset
    assert report.events == frozenset()
    assert reading_data(report)["volume_m3"] == "1000.100"


def test_units_clock_and_events_reach_the_report() -> None:
    data = MeteringData(0x30, "12345678901234", 1, Volume(Decimal("123456.78"), 0x29), Volume(Decimal(0), 0x2C),
                        MeterClock(30, 15, 9, 27, 11, 2026), 0x0105)
    profile = load_meter_profiles().get("nb-radio")
    report = meter_report(data, profile, meter_id="M-1", received_at=RECEIVED, tz=TZ,
                          source=ReadingSource.CTWING)
    assert report.reading.volume_m3 == Decimal("123.456")  # litres, cut to whole litres
    assert report.reading.valve is ValveState.CLOSED
    assert report.reading.battery_low is True
    assert report.meter_clock == datetime(2026, 11, 27, 9, 15, 30, tzinfo=TZ)
    assert report.events == {DeviceEvent.LOW_BATTERY, DeviceEvent.TAMPER}
    published = MeterReading.model_validate(reading_data(report))  # what we publish passes the catalogue
    # Dated by the meter's clock, with the receive time beside it for the core's clock rule; events kept.
    assert published.read_at == datetime(2026, 11, 27, 9, 15, 30, tzinfo=TZ)
    assert published.received_at == RECEIVED
    assert set(published.events) == {DeviceEvent.LOW_BATTERY, DeviceEvent.TAMPER}


def test_a_volume_in_a_non_volume_unit_is_a_decode_error() -> None:
    data = MeteringData(0x30, "12345678901234", 1, Volume(Decimal(1), 0x35), Volume(Decimal(0)),
                        MeterClock(0, 0, 0, 0, 0, 0), 0)
    with pytest.raises(DecodeError, match=r"not a volume unit, expected 29\.\.2E, found 35"):
        meter_report(data, MeterProfile(), meter_id="M-1", received_at=RECEIVED, tz=TZ)
