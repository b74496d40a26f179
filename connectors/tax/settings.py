from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from hub.connectors.contract import ConnectorSettings

WSDL = Path(__file__).resolve().parent / "wsdl" / "einvoice.wsdl"


class ReturnCodes(BaseModel):
    """What the platform's return codes mean. Providers differ and no public list exists
    (partners.md: unconfirmed), so they are settings; the defaults are our simulator's."""

    model_config = ConfigDict(extra="forbid")
    ok: str = "0000"
    busy: list[str] = Field(default_factory=lambda: ["9999"])
    """Try again later (retried like a 5xx)."""
    duplicate: list[str] = Field(default_factory=lambda: ["3001"])
    """The request serial was taken before: fetch that invoice, never issue again."""
    not_found: list[str] = Field(default_factory=lambda: ["4004"])
    """Query by serial or download: no such invoice (yet)."""


class TaxSettings(ConnectorSettings):
    kind: str = "tax"
    provider: Literal["soap", "rest"] = "soap"
    """``soap``: our WSDL (IssueInvoice, QueryBySerial, DownloadInvoice, XML in a string) through zeep;
    ``rest``: the signed JSON API."""
    endpoint: str = "http://127.0.0.1:8094/einvoice"
    """SOAP: the service address (the WSDL's own address is a placeholder). REST: the API's URL."""
    wsdl: Path = WSDL
    """The WSDL the client is built from; the one we ship unless a provider's differs."""
    seller_tax_id: str = Field(pattern=r"^[0-9A-Z]{15,20}$")
    """The gas company's taxpayer id (销售方纳税人识别号)."""
    app_id: str = Field(default="gashub", min_length=1, max_length=64)
    """SOAP: ``globalInfo/appId``."""
    app_key: str | None = Field(default=None, max_length=128)
    """REST: the appKey the provider issued."""
    app_secret: SecretStr | None = None
    """REST: the HMAC-SHA256 key; from ``GASHUB_CONNECTORS__<NAME>__APP_SECRET``, never a committed file."""
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    in_call_attempts: int = Field(default=2, ge=1, le=10)
    """Quick retries inside one call (each after the first asks by serial first); longer waits are the
    route's retry policy, through the broker's delay queues."""
    codes: ReturnCodes = Field(default_factory=ReturnCodes)

    @model_validator(mode="after")
    def _rest_needs_credentials(self) -> TaxSettings:
        if self.provider == "rest" and (not self.app_key or self.app_secret is None):
            raise ValueError("provider 'rest' needs app_key and app_secret (GASHUB_CONNECTORS__<NAME>__APP_SECRET)")
        if self.provider == "soap" and not self.wsdl.is_file():
            raise ValueError(f"wsdl {self.wsdl} is not a file")
        return self
