"""Tax e-invoicing (数电票, TAX1): blue invoices with 9 % VAT lines and red-letter reversals.

Partner: the gas company's tax service provider. Protocol, chosen by ``provider``:

* ``soap`` (:mod:`.soap`): SOAP 1.1 document/literal against the WSDL we ship
  (``wsdl/einvoice.wsdl``): ``IssueInvoice``, ``QueryBySerial``, ``DownloadInvoice``, each carrying an
  ``<interface>`` XML document in a string (:mod:`.xmldoc`), through zeep;
* ``rest`` (:mod:`.rest`): signed JSON, ``invoice.issue`` / ``invoice.query`` / ``invoice.download``.

Authentication: SOAP names the company by ``app_id`` and ``seller_tax_id`` inside the document (the
transport's own security, TLS or a VPN, is the provider's); REST signs every request with
HMAC-SHA256 under ``app_key`` / ``app_secret`` (:mod:`.signing`). Settings: :class:`TaxSettings`.

Action ``issue`` takes ``invoice.requested`` and answers ``invoice.issued`` data (request serial, user
number, user name, invoice type, invoice number, totals) for ``core:record_invoice_issued``.
Never two invoices for one request serial:

* a call whose outcome is unknown (a timeout, a 5xx, an unreadable answer, any retry of the message)
  is followed by ``QueryBySerial`` before issuing again, and an invoice found is the answer;
* a platform that says the serial was taken (``codes.duplicate``) gets asked for that invoice.

A business refusal is published as ``invoice.failed`` (the platform's code and message, caused by the
request, deduplicated by serial and code) and the request is dead-lettered for an operator
(``PermanentError``). An unreadable answer (broken XML, a DTD or entities, broken JSON) is audited as
a refused input with its hash (``context.reject``) and retried. Transport failures are transient: the
route retries through the broker's delay queues and the hub's breaker opens while the platform is down.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from connectors.tax.model import (
    DuplicateSerial,
    InvoiceOrder,
    IssuedInvoice,
    MalformedAnswer,
    Refused,
    TaxProvider,
    issued_data,
    order_from,
)
from connectors.tax.settings import TaxSettings
from core.catalogue.messages import InvoiceFailed, MessageType
from hub.connectors.contract import Capability, ConnectorContext, Health, OutboundConnector, Receipt
from hub.envelope import Envelope
from hub.errors import HubError, PermanentError, TransientError
from hub.ids import derived_id

log = logging.getLogger(__name__)


def _quick_retry(exc: BaseException) -> bool:
    return isinstance(exc, TransientError) and not isinstance(exc, MalformedAnswer)


def build_provider(settings: TaxSettings) -> TaxProvider:
    if settings.provider == "rest":
        from connectors.tax.rest import RestProvider
        return RestProvider(settings)
    from connectors.tax.soap import SoapProvider
    return SoapProvider(settings)


class TaxConnector(OutboundConnector[TaxSettings]):
    kind = "tax"
    settings_model = TaxSettings
    capabilities = frozenset({Capability.OUTBOUND, Capability.REQUEST_REPLY})
    actions: ClassVar = {"issue": "invoice.requested"}

    def __init__(self, settings: TaxSettings, context: ConnectorContext, *,
                 provider: TaxProvider | None = None) -> None:
        super().__init__(settings, context)
        self.provider = provider or build_provider(settings)
        self.counts = {"issued": 0, "found_by_serial": 0, "refused": 0, "unreadable": 0}

    async def deliver(self, envelope: Envelope, action: str) -> Receipt:
        order = order_from(envelope.data)
        try:
            invoice = await self.issue(order, uncertain=envelope.attempt > 1)
        except Refused as refused:
            self.counts["refused"] += 1
            await self._publish_failed(envelope, order, refused)
            raise
        except MalformedAnswer as bad:
            self.counts["unreadable"] += 1
            await self.context.reject(f"tax answer for request {order.serial}: {bad}", body=bad.body,
                                      source=f"tax/{self.settings.provider}")
            raise
        return Receipt(partner_ref=invoice.number, reply=issued_data(invoice, order))

    async def issue(self, order: InvoiceOrder, *, uncertain: bool = False) -> IssuedInvoice:
        """Issue ``order`` once. When an earlier call may have reached the platform (``uncertain``, or
        any quick retry here), ask by serial first; a serial the platform already took is fetched."""
        async for attempt in AsyncRetrying(stop=stop_after_attempt(self.settings.in_call_attempts),
                                           wait=wait_exponential(multiplier=0.05, max=0.5),
                                           retry=retry_if_exception(_quick_retry), reraise=True):
            with attempt:
                if uncertain or attempt.retry_state.attempt_number > 1:
                    found = await self._query(order.serial)
                    if found is not None:
                        self.counts["found_by_serial"] += 1
                        return found
                try:
                    issued = await self.provider.issue(order)
                except DuplicateSerial:
                    found = await self._query(order.serial)
                    if found is None:
                        raise TransientError(f"the platform took serial {order.serial} but does not "
                                             "show its invoice yet") from None
                    self.counts["found_by_serial"] += 1
                    return found
                self.counts["issued"] += 1
                return issued
        raise AssertionError("unreachable")  # pragma: no cover

    async def _query(self, serial: str) -> IssuedInvoice | None:
        """Ask by serial. A refusal here is not the invoice's refusal (no ``invoice.failed``): the
        request stops for an operator, since issuing without knowing could issue twice."""
        try:
            return await self.provider.query(serial)
        except Refused as exc:
            raise PermanentError(f"asking the tax platform for request {serial} by serial was refused "
                                 f"({exc.code}): {exc.message}") from None

    async def download(self, number: str) -> IssuedInvoice:
        """An issued invoice by number (its PDF address, its buyer), for reconciliation."""
        return await self.provider.download(number)

    async def _publish_failed(self, envelope: Envelope, order: InvoiceOrder, refused: Refused) -> None:
        data = InvoiceFailed(request_serial=order.serial,
                             reason=f"{refused.code}: {refused.message}"[:500] or refused.code).model_dump(mode="json")
        failed = envelope.caused(MessageType.INVOICE_FAILED.value, data, source=self.context.name,
                                 id=derived_id(envelope.id, f"invoice.failed/{refused.code}"))
        try:
            await self.context.receive(failed, partner_key=f"refused:{order.serial}:{refused.code}")
        except HubError as exc:
            # Not handed over: try the whole request again later (the platform refuses it again).
            raise TransientError(f"invoice.failed for {order.serial} not published: {exc}") from exc
        log.info("tax.refused", extra={"request_serial": order.serial, "code": refused.code})

    def health(self) -> Health:
        extra: dict[str, Any] = {"provider": self.settings.provider, **self.counts}
        return Health(ok=True, detail=f"tax provider ({self.settings.provider}) at {self.settings.endpoint}",
                      extra=extra)

    async def aclose(self) -> None:
        await self.provider.aclose()
