from __future__ import annotations

from pydantic import Field, SecretStr

from hub.connectors.contract import ConnectorSettings


class VendorPushSettings(ConnectorSettings):
    kind: str = "vendor_push"
    path: str = Field(default="/partners/vendor-demo/push", pattern=r"^/partners/[a-z0-9/_-]+$")
    token: SecretStr
    """Shared secret the vendor sends in ``X-Vendor-Token`` (``GASHUB_CONNECTORS__VENDOR__TOKEN``)."""
    max_body_bytes: int = Field(default=65_536, ge=256)
