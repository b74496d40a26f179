"""How the core invoices payments: ``[core.payments]`` in the hub's settings (``GASHUB_CORE__PAYMENTS__*``)."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from core.billing.tariffs import DEFAULT_VAT_RATE


class InvoiceScope(StrEnum):
    PAYMENT = "payment"
    """One blue invoice per payment, for its whole amount, as soon as it is credited (缴费开票)."""
    BILL = "bill"
    """One blue invoice per bill, with the bill's tier lines, once payments (or credit) settle it."""


class PaymentSettings(BaseModel):
    """Invoice policy. Prepaid top-ups settle no bill, so they are invoiced per payment in either scope.

    ``tax_code`` (税收分类编码) and ``item_name`` print on every line; the defaults are the usual code
    for natural gas and a plain name, not confirmed with any tax provider: set your own.
    ``vat_rate`` applies to payment invoices; bill invoices use each bill line's own rate.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    invoice_per: InvoiceScope = InvoiceScope.PAYMENT
    item_name: str = Field(default="管道天然气", min_length=1, max_length=100)
    tax_code: str = Field(default="1100301010000000000", pattern=r"^\d{19}$")
    vat_rate: Decimal = Field(default=DEFAULT_VAT_RATE, ge=0, lt=1, decimal_places=4)
    notify_invoice: bool = True
    """SMS the holder when an invoice is issued (its number and amount): ``notification.requested`` of kind
    ``invoice``, so the routes must take notification.requested."""
