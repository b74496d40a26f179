"""A **simulated** tax e-invoicing platform, for the demo until the real tax connector arrives.

Partner: the demo's stand-in tax platform (:mod:`connectors.tax_demo.simulator`); it speaks no real
provider's protocol and issues no real invoice. Protocol: ``POST {base_url}/api/v1/invoices`` with
the JSON of :mod:`connectors.tax_demo.protocol`; the answer carries a 20-digit invoice number.
Authentication: an ``X-Api-Key`` header when ``api_key`` is set (no signature). The request serial
is the platform's idempotency key, so a retried request is the same invoice. Settings:
:class:`TaxDemoSettings`. Action ``issue`` takes ``invoice.requested`` and answers
``invoice.issued`` data (for ``core:record_invoice_issued``).
"""

from __future__ import annotations

from typing import ClassVar

from connectors.tax_demo.protocol import PATH, issued_from_answer, request_body
from connectors.tax_demo.settings import TaxDemoSettings
from hub.connectors.contract import Capability, ConnectorContext, Health, OutboundConnector, Receipt
from hub.connectors.http import PartnerHttp
from hub.envelope import Envelope


class TaxDemoConnector(OutboundConnector[TaxDemoSettings]):
    kind = "tax_demo"
    settings_model = TaxDemoSettings
    capabilities = frozenset({Capability.OUTBOUND, Capability.REQUEST_REPLY})
    actions: ClassVar = {"issue": "invoice.requested"}

    def __init__(self, settings: TaxDemoSettings, context: ConnectorContext) -> None:
        super().__init__(settings, context)
        headers = {"X-Api-Key": settings.api_key.get_secret_value()} if settings.api_key else {}
        self.http = PartnerHttp(settings.base_url, timeout_s=settings.timeout_s, headers=headers,
                                in_call_attempts=settings.in_call_attempts)
        self.issued = 0

    async def deliver(self, envelope: Envelope, action: str) -> Receipt:
        body = request_body(envelope.data)
        answer = await self.http.post_json(PATH, body)
        issued = issued_from_answer(answer, body)
        self.issued += 1
        return Receipt(partner_ref=issued["invoice_number"], reply=issued)

    def health(self) -> Health:
        return Health(ok=True, detail="simulated tax platform (demo)", extra={"issued": self.issued})

    async def aclose(self) -> None:
        await self.http.aclose()
