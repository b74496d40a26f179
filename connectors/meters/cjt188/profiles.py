"""Meter-model profiles: what differs between CJ/T 188 meters of different makers.

Public implementations disagree on the DI byte order, on where the status bits are, on the control
code of valve control and on headers that radio modules add; a profile (``config/meter_profiles.toml``)
says it per meter model, so that a new model is configuration, not code. The codec part of a profile
is its :class:`~connectors.meters.cjt188.messages.Dialect`.
"""

from __future__ import annotations

import tomllib
from functools import cached_property
from pathlib import Path
from typing import Annotated, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from connectors.meters.cjt188.errors import DecodeError
from connectors.meters.cjt188.messages import GAS, WRITE_DATA, Dialect, DiOrder
from core.catalogue.messages import ValveState
from core.readings.vocabulary import DeviceEvent
from hub.errors import ConfigError

PROJECT = Path(__file__).resolve().parents[3]
DEFAULT_PROFILES_FILE = Path("config/meter_profiles.toml")

Word = Annotated[int, Field(ge=0, le=0xFFFF)]
Byte = Annotated[int, Field(ge=0, le=0xFF)]


def _hex_bytes(value: object) -> object:
    if isinstance(value, str):
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise ValueError(f"{value!r} is not hex bytes (write e.g. \"A5 5A 01\")") from None
    return value


HexBytes = Annotated[bytes, BeforeValidator(_hex_bytes)]


class StatusBits(BaseModel):
    """Masks over the status word ``ST0 | ST1 << 8`` (ST0, first on the wire, is the low byte).

    The standard puts the valve in ST0 D1D0 (``00`` open, ``01`` closed, ``11`` abnormal) and low battery
    in D2; one public implementation counts from the top of the byte (valve ``0xC0``, battery ``0x20``).
    A mask of 0 means the model does not report that bit.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    valve_mask: Word = 0x0003
    valve_open: Word = 0x0000
    valve_closed: Word = 0x0001
    valve_abnormal: Word = 0x0003
    battery_low: Word = 0x0004
    tamper: Word = 0
    magnetic: Word = 0
    leak: Word = 0
    """The meter's own leak detection (continuous small flow, a linked gas detector): vendor-defined, in
    ST1 where a model has it. The DTU connector raises a ``leak`` alarm for a report with it set."""

    @model_validator(mode="after")
    def _values_inside_mask(self) -> Self:
        for name in ("valve_open", "valve_closed", "valve_abnormal"):
            value = getattr(self, name)
            if value & ~self.valve_mask:
                raise ValueError(f"{name} {value:#06x} has bits outside valve_mask {self.valve_mask:#06x}")
        if len({self.valve_open, self.valve_closed, self.valve_abnormal}) != 3 and self.valve_mask:
            raise ValueError("valve_open, valve_closed and valve_abnormal must differ")
        return self

    def valve(self, status: int) -> ValveState | None:
        """The valve state the status word reports; ``None`` when the model reports no valve."""
        if not self.valve_mask:
            return None
        bits = status & self.valve_mask
        if bits == self.valve_open:
            return ValveState.OPEN
        if bits == self.valve_closed:
            return ValveState.CLOSED
        if bits == self.valve_abnormal:
            return ValveState.ABNORMAL
        return ValveState.UNKNOWN

    def leaking(self, status: int) -> bool:
        """Whether the status word reports a leak the meter detected itself."""
        return bool(status & self.leak)

    def events(self, status: int) -> frozenset[DeviceEvent]:
        """The device events set in the status word (low battery, tamper, magnet; a valve fault)."""
        found = set()
        if status & self.battery_low:
            found.add(DeviceEvent.LOW_BATTERY)
        if status & self.tamper:
            found.add(DeviceEvent.TAMPER)
        if status & self.magnetic:
            found.add(DeviceEvent.MAGNETIC)
        if self.valve_mask and status & self.valve_mask == self.valve_abnormal:
            found.add(DeviceEvent.VALVE_ALARM)
        return frozenset(found)


class MeterProfile(BaseModel):
    """One meter model's CJ/T 188 dialect."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    meter_type: Byte = GAS
    """Type byte sent to the meter (``30`` gas; ``30``–``39`` are all gas)."""
    di_order: DiOrder = DiOrder.HIGH_FIRST
    """Order in which DIs are sent; replies are read in either order."""
    valve_control_code: int = Field(default=WRITE_DATA, ge=0, le=0x3F)
    """Function of valve control: ``0x04`` standard, ``0x2A`` in a vendor dialect (reply ``AA``)."""
    valve_open_byte: Byte = 0x55
    valve_close_byte: Byte = 0x99
    address_bytes: int = Field(default=7, ge=1, le=7)
    """Address width on the wire (7 BCD bytes = 14 digits in the standard)."""
    preamble: int = Field(default=4, ge=0, le=16)
    """``FE`` bytes sent before a request to wake the meter."""
    radio_header: HexBytes = b""
    """Bytes a radio module puts before the frame (before its ``FE`` bytes); stripped on receipt."""
    status: StatusBits = StatusBits()

    @model_validator(mode="after")
    def _distinct_valve_bytes(self) -> Self:
        if self.valve_open_byte == self.valve_close_byte:
            raise ValueError("valve_open_byte and valve_close_byte must differ")
        return self

    @cached_property
    def dialect(self) -> Dialect:
        return Dialect(self.di_order, self.valve_control_code, self.valve_open_byte, self.valve_close_byte,
                       self.address_bytes)

    def strip_radio_header(self, data: bytes) -> bytes:
        """The frame bytes of an uplink payload, without the radio module's header."""
        header = self.radio_header
        if not header:
            return data
        if not data.startswith(header):
            raise DecodeError("radio module header missing", offset=0, expected=header.hex(" ").upper(),
                              found=data[:len(header)].hex(" ").upper() or "nothing")
        return data[len(header):]


class MeterProfiles(BaseModel):
    """The profile book: meter models by name, and the one used when a meter names none."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: str = "cjt188-2004"
    profiles: dict[str, MeterProfile] = Field(min_length=1)

    @model_validator(mode="after")
    def _default_exists(self) -> Self:
        if self.default not in self.profiles:
            raise ValueError(f"default profile {self.default!r} is not among {sorted(self.profiles)}")
        return self

    def get(self, name: str | None) -> MeterProfile:
        """The named profile (the default for ``None``); a ``ConfigError`` for an unknown name."""
        try:
            return self.profiles[name or self.default]
        except KeyError:
            raise ConfigError(f"no meter profile {name!r}; known: {', '.join(sorted(self.profiles))}",
                              where="meter_profiles") from None


def load_meter_profiles(path: Path = DEFAULT_PROFILES_FILE) -> MeterProfiles:
    """The profile book in ``path`` (TOML); a ``ConfigError`` naming the file and field otherwise.
    A relative path is looked up from the working directory, then from the project's checkout."""
    if not path.is_absolute() and not path.exists() and (PROJECT / path).exists():
        path = PROJECT / path
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no meter profile file", where="meter_profiles") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", where="meter_profiles") from None
    try:
        return MeterProfiles.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {problems}", where="meter_profiles") from None
