from __future__ import annotations

from pydantic import Field, SecretStr

from hub.connectors.contract import ConnectorSettings


class ValveHttpSettings(ConnectorSettings):
    kind: str = "valve_http"
    base_url: str = "http://127.0.0.1:8092"
    timeout_s: float = Field(default=3.0, gt=0, le=30)
    api_key: SecretStr | None = None
