"""``AlipaySettings``: the application's identity and keys, the Alipay public key, the gateway.

The application private key is a ``SecretStr`` from the environment
(``GASHUB_CONNECTORS__<NAME>__APP_PRIVATE_KEY``) or the secrets folder, never from a committed file.
The Alipay public key is public: it may sit in ``config/``.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from connectors.payments.alipay import signing
from hub.connectors.contract import ConnectorSettings


class AlipaySettings(ConnectorSettings):
    kind: str = "alipay"
    path: str = Field(default="/partners/alipay/notify", pattern=r"^/partners/[a-z0-9/_-]+$")
    """Where Alipay POSTs asynchronous notifications (mounted on the hub's web server)."""
    app_id: str = Field(pattern=r"^\d{16}$")
    """Our application's APPID; a notification for another application is refused."""
    seller_id: str | None = Field(default=None, pattern=r"^2088\d{12}$")
    """Our merchant's partner id (2088…); when set, a notification whose ``seller_id`` differs is
    refused. Unset, only ``app_id`` is checked."""
    app_private_key: SecretStr
    """The application private key that signs our requests: PEM, or the bare base64 that Alipay's key
    tool writes (PKCS#8 or PKCS#1)."""
    alipay_public_key: str = Field(min_length=1)
    """The Alipay public key (PEM or bare base64) that notifications and answers must verify with."""
    gateway_url: str = Field(default="https://openapi.alipay.com/gateway.do", pattern=r"^https?://[^\s/]+(/\S*)?$")
    notify_url: str | None = Field(default=None, pattern=r"^https://\S+$")
    """The public address of ``path``, sent with each precreate; unset, the application's default."""
    notify_window_s: int = Field(default=26 * 3600, ge=60, le=7 * 24 * 3600)
    """A notification whose ``notify_time`` is older than this is refused as stale. Alipay resends
    for about 25 hours and its documentation does not say whether a resend is stamped afresh, so the
    default covers every resend; lower it once that is known."""
    future_skew_s: int = Field(default=300, ge=0, le=3600)
    """How far ahead of our clock a ``notify_time`` may be (clock drift)."""
    max_body_bytes: int = Field(default=65_536, ge=1024)
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    in_call_attempts: int = Field(default=3, ge=1, le=10)
    qr_timeout: str = Field(default="2h", pattern=r"^\d{1,4}[mhd]$")
    """``timeout_express`` of a precreated order: how long its QR code can be paid."""

    @field_validator("alipay_public_key")
    @classmethod
    def _public_key(cls, v: str) -> str:
        signing.load_public_key(v)
        return v

    @field_validator("app_private_key")
    @classmethod
    def _private_key(cls, v: SecretStr) -> SecretStr:
        try:
            signing.load_private_key(v.get_secret_value())
        except ValueError:
            raise ValueError("the application private key is not an RSA private key (PEM or base64 DER)") from None
        return v
