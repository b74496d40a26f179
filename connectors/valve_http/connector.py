"""Valve commands through a meter platform's HTTP command API.

Partner: a meter-management platform that reaches meters itself. Protocol: ``POST
{base_url}/commands`` with ``{command_id, meter_id, action}``; answer ``{state, observed_at}`` once
the meter confirmed. Authentication: ``X-Api-Key`` when ``api_key`` is set
(``GASHUB_CONNECTORS__VALVES__API_KEY``). ``command_id`` is stable across retries, so a retry is
never a second, different command. Settings: :class:`ValveHttpSettings`. Action ``valve`` takes
``valve.command`` and answers ``valve.state`` data. Meters reached over CJ/T 188 have their own
``valve`` actions: through a DTU (``connectors/meters``) or CTWing's command API (``connectors/nbiot``).
"""

from __future__ import annotations

from typing import ClassVar

from connectors.valve_http.settings import ValveHttpSettings
from hub.connectors.contract import Capability, ConnectorContext, OutboundConnector, Receipt
from hub.connectors.http import PartnerHttp
from hub.envelope import Envelope
from hub.errors import PermanentError


class ValveHttpConnector(OutboundConnector[ValveHttpSettings]):
    kind = "valve_http"
    settings_model = ValveHttpSettings
    capabilities = frozenset({Capability.OUTBOUND, Capability.REQUEST_REPLY})
    actions: ClassVar = {"valve": "valve.command"}

    def __init__(self, settings: ValveHttpSettings, context: ConnectorContext) -> None:
        super().__init__(settings, context)
        headers = {"X-Api-Key": settings.api_key.get_secret_value()} if settings.api_key else {}
        self.http = PartnerHttp(settings.base_url, timeout_s=settings.timeout_s, headers=headers)

    async def deliver(self, envelope: Envelope, action: str) -> Receipt:
        data = envelope.data
        answer = await self.http.post_json("/commands", {
            "command_id": data["command_id"], "meter_id": data["meter_id"], "action": data["action"]})
        state = answer.get("state")
        if state not in ("open", "closed", "abnormal"):
            raise PermanentError(f"meter platform answered an unknown valve state {state!r}")
        return Receipt(partner_ref=str(data["command_id"]), reply={
            "meter_id": data["meter_id"], "state": state, "observed_at": answer.get("observed_at"),
            "command_id": data["command_id"], "result": str(answer.get("result", "ok")),
        })

    async def aclose(self) -> None:
        await self.http.aclose()
