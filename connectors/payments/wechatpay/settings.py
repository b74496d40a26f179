"""``WeChatPaySettings``: the merchant's identity, keys and the platform's verification keys.

Secrets (the APIv3 key and the merchant's private key) are ``SecretStr`` and come from the
environment (``GASHUB_CONNECTORS__<NAME>__API_V3_KEY``, ``…__MERCHANT_PRIVATE_KEY``) or the secrets
folder, never from a committed file. The platform's keys are public: they may sit in ``config/``.
"""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator

from hub.connectors.contract import ConnectorSettings

SERIAL_PATTERN = r"^(PUB_KEY_ID_[0-9A-Z_]{1,64}|[0-9A-F]{8,64})$"


class WeChatPaySettings(ConnectorSettings):
    kind: str = "wechatpay"
    path: str = Field(default="/partners/wechatpay/notify", pattern=r"^/partners/[a-z0-9/_-]+$")
    """Where WeChat Pay POSTs payment notifications (mounted on the hub's web server)."""
    mchid: str = Field(pattern=r"^\d{6,32}$")
    """Our merchant id (商户号); notifications for another merchant are refused."""
    appid: str = Field(min_length=1, max_length=32)
    """The AppID orders are created under (公众号, 小程序 or 应用)."""
    api_v3_key: SecretStr
    """The 32-byte APIv3 key that decrypts notification resources."""
    merchant_private_key: SecretStr
    """The merchant API certificate's private key, PEM (or its base64 body, as the merchant platform
    hands it out), which signs our requests."""
    merchant_serial_no: str = Field(pattern=r"^[0-9A-Fa-f]{8,64}$")
    """The serial number of the merchant API certificate (``serial_no`` in our Authorization header)."""
    platform_keys: dict[str, str] = Field(min_length=1)
    """Verification keys by ``Wechatpay-Serial``: a platform certificate's serial (hex) or a platform
    public-key id (``PUB_KEY_ID_…``) → its PEM certificate or public key. During a migration from
    certificates to public keys both kinds are listed."""
    base_url: str = Field(default="https://api.mch.weixin.qq.com", pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    notify_url: str | None = Field(default=None, pattern=r"^https://\S+$")
    """The public address of ``path`` sent with each order; unset, orders use the merchant platform's."""
    timestamp_window_s: int = Field(default=300, ge=10, le=3600)
    """A notification signed further than this from our clock (either way) is refused as stale."""
    max_body_bytes: int = Field(default=65_536, ge=1024)
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    in_call_attempts: int = Field(default=3, ge=1, le=10)

    @field_validator("api_v3_key")
    @classmethod
    def _key_length(cls, v: SecretStr) -> SecretStr:
        if len(v.get_secret_value().encode()) != 32:
            raise ValueError("the APIv3 key is 32 bytes (as set on the merchant platform)")
        return v

    @field_validator("platform_keys")
    @classmethod
    def _serials(cls, v: dict[str, str]) -> dict[str, str]:
        """Serials compared as upper case: environment variable names may arrive lower-cased."""
        keys = {serial.upper(): pem for serial, pem in v.items()}
        bad = [s for s in keys if not re.fullmatch(SERIAL_PATTERN, s)]
        if bad:
            raise ValueError(f"{bad[0]!r} is neither a certificate serial (hex) nor a PUB_KEY_ID_…")
        return keys
