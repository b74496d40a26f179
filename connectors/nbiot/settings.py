"""Settings of the NB-IoT platform connectors (CTWing, OneNET): the push endpoint, which platform
device is which meter, how decoded fields are named, and how commands reach the platform."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from hub.connectors.contract import ConnectorSettings


class DeviceBinding(BaseModel):
    """A meter behind an NB-IoT module: the platform's device id (and IMEI), the hub's meter id, and
    the profile of the meter model whose CJ/T 188 frames travel in ``APPdata``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    meter_id: str = Field(min_length=1, max_length=32, pattern=r"^[0-9A-Za-z_-]+$")
    device_id: str = Field(min_length=1, max_length=64)
    """CTWing ``deviceId`` or OneNET ``dev_id``."""
    imei: str | None = Field(default=None, pattern=r"^\d{15}$")
    address: str | None = Field(default=None, pattern=r"^\d{14}$")
    """The meter's CJ/T 188 address: frames naming another meter are refused; commands are sent to it."""
    profile: str | None = None
    """A profile of the profiles file; the file's default when absent."""


class FieldMap(BaseModel):
    """Where the reading is in a decoded (object-model) ``payload``: field names per product."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    volume: str = "cumulative_volume"
    volume_scale: Decimal = Field(default=Decimal(1), gt=0)
    """Multiplier from the field's unit to m³ (0.001 when the product reports litres)."""
    battery_voltage: str | None = "battery_voltage"
    rsrp: str | None = "RSRP"
    valve: str | None = "valve_status"
    valve_values: dict[str, str] = {"0": "open", "1": "closed", "2": "abnormal"}
    """The valve field's values (as text) and the canonical states they mean."""


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


class PlatformSettings(ConnectorSettings):
    """What both platforms' connectors share: devices, meter profiles, the push endpoint's limits."""

    path: str = Field(pattern=r"^/partners/[a-z0-9/_-]+$")
    profiles_file: Path = Path("config/meter_profiles.toml")
    devices: list[DeviceBinding] = []
    max_body_bytes: int = Field(default=65_536, ge=256)
    timezone: str = "Asia/Shanghai"
    """Where the meters are: their clocks are read in this zone."""

    _zone_known = field_validator("timezone")(_zone)

    @model_validator(mode="after")
    def _unique_devices(self) -> Self:
        for attr in ("device_id", "imei", "meter_id"):
            seen: set[str] = set()
            for device in self.devices:
                value = getattr(device, attr)
                if value is None:
                    continue
                if value in seen:
                    raise ValueError(f"two devices share {attr} {value!r}")
                seen.add(value)
        return self


class CommandSettings(BaseModel):
    """Valve commands through CTWing's command API: bounded at every step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float = Field(default=5.0, gt=0, le=60)
    """How long one call of the command API may take."""
    attempts: int = Field(default=3, ge=1, le=10)
    """Calls of the create-command API (the same body each time) before the delivery fails with a timeout."""
    answer_within_s: float = Field(default=120.0, gt=0, le=3600)
    """How long a delivery waits for the ``commandResponse`` (a sleeping NB-IoT meter wakes within minutes)."""
    poll_every_s: float = Field(default=15.0, gt=0)
    """While waiting, the command's status is also asked of the platform this often (the push may
    reach another process of the hub)."""
    ttl_s: int = Field(default=7200, ge=0, le=172_800)
    """How long the platform keeps the command for a sleeping meter."""
    delivered: list[str] = ["DELIVERED", "COMPLETED", "SUCCESSFUL", "SUCCESS"]
    """``resultCode``/``commandStatus`` values that mean the meter took the command."""
    failed: list[str] = ["FAILED", "TIMEOUT", "CANCELED", "CANCELLED", "EXPIRED"]
    """Values that mean it never will: the delivery fails permanently with the code."""


class CtwingSettings(PlatformSettings):
    kind: str = "ctwing"
    path: str = Field(default="/partners/ctwing/push", pattern=r"^/partners/[a-z0-9/_-]+$")
    url_token: SecretStr | None = None
    """When set, pushes must carry ``?token=`` with this value in the subscription URL
    (``GASHUB_CONNECTORS__CTWING__URL_TOKEN``): CTWing does not sign its pushes."""
    fields: FieldMap = FieldMap()
    max_age_s: float = Field(default=3600.0, gt=0)
    """A push whose ``timestamp`` is older than this is a replay and refused (the platform's own
    resends come within minutes and are dropped as duplicates)."""
    max_skew_s: float = Field(default=300.0, ge=0)
    """How far in the future a push's ``timestamp`` may be (clock skew)."""
    base_url: str = "https://ag-api.ctwing.cn"
    """The AEP API gateway (the simulator in tests)."""
    app_key: str = ""
    app_secret: SecretStr | None = None
    """AEP application secret (``GASHUB_CONNECTORS__CTWING__APP_SECRET``): signs API calls (HMAC-SHA1)."""
    master_key: SecretStr | None = None
    """The product's MasterKey, sent with command calls (``GASHUB_CONNECTORS__CTWING__MASTER_KEY``)."""
    product_id: str = ""
    command: CommandSettings = CommandSettings()


class OneNetSettings(PlatformSettings):
    kind: str = "onenet"
    path: str = Field(default="/partners/onenet/push", pattern=r"^/partners/[a-z0-9/_-]+$")
    token: SecretStr
    """The push token configured on OneNET (``GASHUB_CONNECTORS__ONENET__TOKEN``): signs URL
    verification and every push."""
    volume_stream: str | None = "volume"
    """Data stream whose value is the register in m³."""
    frame_stream: str | None = "meter_frame"
    """Data stream whose value is a CJ/T 188 frame (hex or base64)."""
