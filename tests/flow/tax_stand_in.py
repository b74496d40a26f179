"""A stand-in for a tax e-invoicing provider, for tests until the tax connector exists.

It is an ordinary outbound connector (loaded through a ``ConnectorRegistry`` path): action ``issue``
takes ``invoice.requested`` and answers ``invoice.issued`` data with a 20-digit number derived from
the request serial, so a retried request gets the same number, as a real provider's would.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, ClassVar

from hub.connectors.contract import Capability, ConnectorContext, ConnectorSettings, OutboundConnector, Receipt
from hub.connectors.registry import BUILTIN, ConnectorRegistry
from hub.envelope import Envelope


class TaxStandInSettings(ConnectorSettings):
    kind: str = "tax_stand_in"
    invoice_type: str = "数电票(普通发票)"


class TaxStandIn(OutboundConnector[TaxStandInSettings]):
    kind = "tax_stand_in"
    settings_model = TaxStandInSettings
    capabilities = frozenset({Capability.OUTBOUND, Capability.REQUEST_REPLY})
    actions: ClassVar = {"issue": "invoice.requested"}

    def __init__(self, settings: TaxStandInSettings, context: ConnectorContext) -> None:
        super().__init__(settings, context)
        self.requests: list[dict[str, Any]] = []

    async def deliver(self, envelope: Envelope, action: str) -> Receipt:
        data = dict(envelope.data)
        self.requests.append(data)
        serial = str(data["request_serial"])
        number = f"{int(hashlib.sha256(serial.encode()).hexdigest(), 16) % 10**20:020d}"
        return Receipt(partner_ref=number, reply={
            "request_serial": serial, "account_id": data["account_id"], "user_name": data["user_name"],
            "invoice_type": self.settings.invoice_type, "invoice_number": number,
            "issued_at": datetime.now(UTC).isoformat(), "total": data["total"], "total_tax": data["total_tax"],
        })


def registry() -> ConnectorRegistry:
    """The built-in connectors plus the stand-in (kind ``tax_stand_in``)."""
    return ConnectorRegistry({**BUILTIN, "tax_stand_in": "tests.flow.tax_stand_in:TaxStandIn"})


# The routes of a payment and its invoice through this stand-in (the payment and tax connectors come later).
PAYMENT_ROUTES = """
[[route]]
name = "payments"
from = "payment.received"
to = "core:record_payment"
retry = { max_attempts = 3, backoff = ["100ms"] }

[[route]]
name = "tax-issue"
from = "invoice.requested"
to = "tax:issue"
reply = "invoice.issued"
retry = { max_attempts = 3, backoff = ["100ms"] }

[[route]]
name = "tax-issued"
from = "invoice.issued"
to = "core:record_invoice_issued"
"""
