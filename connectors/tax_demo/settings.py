from __future__ import annotations

from pydantic import Field, SecretStr

from hub.connectors.contract import ConnectorSettings


class TaxDemoSettings(ConnectorSettings):
    kind: str = "tax_demo"
    base_url: str = "http://127.0.0.1:8093"
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    in_call_attempts: int = Field(default=3, ge=1, le=10)
    """Quick retries inside one call; longer waits are the route's retry policy."""
    api_key: SecretStr | None = None
    """Sent as ``X-Api-Key`` when set (``GASHUB_CONNECTORS__<NAME>__API_KEY``)."""
