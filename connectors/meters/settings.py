"""Settings of the DTU connector: where it listens, how each DTU vendor registers and beats, which
meters hang on which DTU, and when the daily reading runs."""

from __future__ import annotations

import re
from datetime import time
from pathlib import Path
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from hub.connectors.contract import ConnectorSettings


def _hex_bytes(value: object) -> object:
    if isinstance(value, str):
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise ValueError(f"{value!r} is not hex bytes (write e.g. \"A5 5A 01\")") from None
    return value


HexBytes = Annotated[bytes, BeforeValidator(_hex_bytes)]


class PacketFormat(BaseModel):
    """A packet the DTU itself sends (registration, heartbeat), recognised by a regular expression.

    ``pattern`` is matched against the raw bytes (write ``\\xAB`` for a byte, ``\\d{15}`` for an ASCII
    IMEI); its group ``id``, when it has one, is the DTU's id, as ASCII text or as hex digits of the
    bytes (``id_as``). ``answer`` is sent back on receipt for DTUs that expect an acknowledgement.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    pattern: str = Field(min_length=1)
    id_as: Literal["text", "hex"] = "text"
    answer: HexBytes = b""

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value.encode("latin-1"))
        except (re.error, UnicodeEncodeError) as exc:
            raise ValueError(f"not a regular expression over bytes: {exc}") from None
        return value

    def compiled(self) -> re.Pattern[bytes]:
        return re.compile(self.pattern.encode("latin-1"), re.DOTALL)

    def dtu_id(self, match: re.Match[bytes]) -> str | None:
        if "id" not in match.re.groupindex:
            return None
        raw = match.group("id")
        return raw.hex().upper() if self.id_as == "hex" else raw.decode("latin-1")


class VendorFormat(BaseModel):
    """One DTU maker's packets. The registration pattern must capture the DTU id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    registration: PacketFormat
    heartbeat: PacketFormat | None = None

    @model_validator(mode="after")
    def _registration_names_the_dtu(self) -> Self:
        if "id" not in self.registration.compiled().groupindex:
            raise ValueError("the registration pattern needs a group (?P<id>…) capturing the DTU id")
        return self


class MeterBinding(BaseModel):
    """A meter on a DTU's bus: its CJ/T 188 address, the hub's meter id and its model's profile."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    meter_id: str = Field(min_length=1, max_length=32, pattern=r"^[0-9A-Za-z_-]+$")
    address: str = Field(pattern=r"^\d{14}$")
    dtu: str = Field(min_length=1, max_length=64)
    profile: str | None = None
    """A profile in the profiles file; the file's default when absent."""


DEFAULT_VENDORS = {
    "imei": VendorFormat(registration=PacketFormat(pattern=r"^(?P<id>\d{15})$"),
                         heartbeat=PacketFormat(pattern=r"^(?:HB|hb)(?P<id>\d{15})?$")),
}


class DtuSettings(ConnectorSettings):
    kind: str = "dtu_cjt188"
    host: str = "0.0.0.0"  # noqa: S104 - DTUs dial in from the mobile network
    port: int = Field(default=9600, ge=0, le=65535)
    """TCP port DTUs dial; 0 picks a free one (tests)."""
    profiles_file: Path = Path("config/meter_profiles.toml")
    vendors: dict[str, VendorFormat] = Field(default_factory=lambda: dict(DEFAULT_VENDORS), min_length=1)
    meters: list[MeterBinding] = []
    registration_timeout_s: float = Field(default=30.0, gt=0)
    """A connection that has not registered by then is refused and closed."""
    idle_timeout_s: float = Field(default=600.0, gt=0)
    """A DTU silent (no heartbeat, no frame) this long is dropped; it will dial again."""
    request_timeout_s: float = Field(default=5.0, gt=0)
    """How long a meter has to answer one request (2400 bps and a radio hop: seconds)."""
    attempts: int = Field(default=2, ge=1, le=10)
    """Tries of a request (each with a new SER) before it fails with a timeout."""
    daily_read_at: time | None = time(2, 0)
    """Local time of the scheduled reading of every meter; none when absent."""
    timezone: str = "Asia/Shanghai"
    """Where the meters are: their clocks and ``daily_read_at`` are in this zone."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _addresses_unique(self) -> Self:
        seen: dict[str, str] = {}
        for meter in self.meters:
            if meter.address in seen:
                raise ValueError(f"meters {seen[meter.address]!r} and {meter.meter_id!r} share address {meter.address}")
            seen[meter.address] = meter.meter_id
        return self
