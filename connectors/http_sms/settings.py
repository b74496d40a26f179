from __future__ import annotations

from pydantic import Field, SecretStr

from hub.connectors.contract import ConnectorSettings


class HttpSmsSettings(ConnectorSettings):
    kind: str = "http_sms"
    base_url: str = "http://127.0.0.1:8091"
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    in_call_attempts: int = Field(default=3, ge=1, le=10)
    """Quick retries inside one delivery; longer waits are the route's retry policy."""
    api_key: SecretStr | None = None
    sign_name: str = "绍兴燃气"
    templates: dict[str, str] = {
        "bill": "SMS_BILL",
        "payment": "SMS_PAYMENT",
        "invoice": "SMS_INVOICE",
        "alarm": "SMS_ALARM",
        "low_balance": "SMS_LOW_BALANCE",
        "outage": "SMS_OUTAGE",
        "reminder": "SMS_REMINDER",
        "reading": "SMS_READING",
        "announcement": "SMS_ANNOUNCEMENT",
    }
