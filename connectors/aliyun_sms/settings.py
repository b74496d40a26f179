"""``AliyunSmsSettings``: the account's AccessKey, the templates per notification kind, the per-number
rate limits and quiet hours, and where Aliyun posts receipts and replies.

The AccessKey secret is a ``SecretStr`` from the environment
(``GASHUB_CONNECTORS__<NAME>__ACCESS_KEY_SECRET``) or the secrets folder, never a committed file; so is
the optional ``callback_token`` the receipt and reply URLs carry (``?token=…``), since Aliyun does not
sign what it pushes.
"""

from __future__ import annotations

import re
from datetime import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from core.catalogue.messages import NotificationKind
from hub.connectors.contract import ConnectorSettings

TEMPLATE_VAR = r"^[A-Za-z][A-Za-z0-9_]{0,31}$"


class SmsTemplate(BaseModel):
    """One approved Aliyun template: ``params`` maps each template variable to the notification's
    ``params`` key that fills it; empty, the notification's params are passed as they are."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    template_code: str = Field(pattern=r"^SMS_[0-9A-Za-z_]{1,60}$")
    sign_name: str | None = Field(default=None, min_length=2, max_length=32)
    """The signature (签名) for this template; the connector's ``sign_name`` when unset."""
    params: dict[str, str] = Field(default_factory=dict)

    @field_validator("params")
    @classmethod
    def _names(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [k for k in v if not re.fullmatch(TEMPLATE_VAR, k)]
        if bad:
            raise ValueError(f"template variable {bad[0]!r} is not a name Aliyun accepts")
        return v


class RateLimit(BaseModel):
    """At most ``count`` messages to one number in any ``per_s`` seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    count: int = Field(ge=1, le=10_000)
    per_s: int = Field(ge=1, le=7 * 86_400)


class QuietHours(BaseModel):
    """No ordinary message is sent from ``start`` to ``end`` (local time; ``end`` may be the next day)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    start: time = time(21, 30)
    end: time = time(8, 0)


def _default_templates() -> dict[NotificationKind, SmsTemplate]:
    return {kind: SmsTemplate(template_code=f"SMS_{kind.value.upper()}") for kind in NotificationKind}


class AliyunSmsSettings(ConnectorSettings):
    kind: str = "aliyun_sms"
    endpoint: str = Field(default="https://dysmsapi.aliyuncs.com", pattern=r"^https?://[^\s/]+/?$")
    """Dysmsapi's address (``http://127.0.0.1:PORT`` for the simulator)."""
    access_key_id: str = Field(min_length=1, max_length=64)
    access_key_secret: SecretStr
    sign_name: str = Field(default="绍兴燃气", min_length=2, max_length=32)
    templates: dict[NotificationKind, SmsTemplate] = Field(default_factory=_default_templates)
    """Per notification kind; a kind without a template is refused (dead-lettered) with its name."""
    rate_limits: list[RateLimit] = Field(default_factory=lambda: [
        RateLimit(count=1, per_s=60), RateLimit(count=5, per_s=3600), RateLimit(count=10, per_s=86_400)])
    """Per phone number; a message over a limit is held (retried later), safety messages excepted."""
    quiet_hours: QuietHours | None = Field(default_factory=QuietHours)
    timezone: str = "Asia/Shanghai"
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    report_path: str = Field(default="/partners/aliyun-sms/report", pattern=r"^/partners/[a-z0-9/_-]+$")
    upstream_path: str = Field(default="/partners/aliyun-sms/upstream", pattern=r"^/partners/[a-z0-9/_-]+$")
    callback_token: SecretStr | None = None
    """When set, receipts and replies must carry ``?token=<this>`` (configure it in the URLs given to Aliyun)."""
    max_body_bytes: int = Field(default=262_144, ge=1024)
    remember: int = Field(default=100_000, ge=100)
    """How many sent notification ids (and each number's last notification) this process keeps."""

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v
