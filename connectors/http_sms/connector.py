"""A generic JSON-over-HTTP SMS gateway (the shape most Chinese SMS aggregators offer).

Partner: an SMS gateway. Protocol: ``POST {base_url}/sms/send`` with JSON
``{out_id, phone, sign_name, template, params}``; answer ``{code: "OK", biz_id}``; ``code`` values
``BUSY`` and ``RATE_LIMITED`` mean try later, anything else is a refusal. Authentication: an
``X-Api-Key`` header when ``api_key`` is set (from the environment:
``GASHUB_CONNECTORS__SMS__API_KEY``). ``out_id`` is the message id, so a retried send is the same
send. Settings: :class:`HttpSmsSettings`. Action ``send`` takes ``notification.requested`` and
answers ``notification.delivered`` data (status ``accepted``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

from connectors.http_sms.settings import HttpSmsSettings
from hub.connectors.contract import Capability, ConnectorContext, Health, OutboundConnector, Receipt
from hub.connectors.http import PartnerHttp
from hub.envelope import Envelope
from hub.errors import PermanentError, TransientError

RETRY_CODES = frozenset({"BUSY", "RATE_LIMITED"})


class HttpSmsConnector(OutboundConnector[HttpSmsSettings]):
    kind = "http_sms"
    settings_model = HttpSmsSettings
    capabilities = frozenset({Capability.OUTBOUND, Capability.REQUEST_REPLY})
    actions: ClassVar = {"send": "notification.requested"}

    def __init__(self, settings: HttpSmsSettings, context: ConnectorContext) -> None:
        super().__init__(settings, context)
        headers = {"X-Api-Key": settings.api_key.get_secret_value()} if settings.api_key else {}
        self.http = PartnerHttp(settings.base_url, timeout_s=settings.timeout_s, headers=headers,
                                in_call_attempts=settings.in_call_attempts)
        self.sent = 0

    async def deliver(self, envelope: Envelope, action: str) -> Receipt:
        data = envelope.data
        template = self.settings.templates.get(str(data["kind"]))
        if template is None:
            raise PermanentError(f"no SMS template for notification kind {data['kind']!r} (templates setting)")
        answer = await self.http.post_json("/sms/send", {
            "out_id": envelope.id, "phone": data["phone"], "sign_name": self.settings.sign_name,
            "template": template, "params": data.get("params", {}),
        })
        code = str(answer.get("code", ""))
        if code in RETRY_CODES:
            raise TransientError(f"SMS gateway busy ({code}): {answer.get('message', '')}")
        if code != "OK":
            raise PermanentError(f"SMS gateway refused ({code}): {answer.get('message', '')}")
        self.sent += 1
        biz_id = str(answer.get("biz_id", ""))
        return Receipt(partner_ref=biz_id, reply={
            "notification_id": data["notification_id"], "status": "accepted", "provider_ref": biz_id,
            "at": datetime.now(UTC).isoformat(),
        })

    def health(self) -> Health:
        return Health(ok=True, extra={"sent": self.sent})

    async def aclose(self) -> None:
        await self.http.aclose()
