"""Payments and invoices (domain issue item 6): credit payments once, allocate them oldest bill first,
keep overpayments as credit, top up prepaid meters, take refunds back, and ask for e-invoices.

* :mod:`core.payments.allocation` and :mod:`core.payments.invoicing` — the pure rules (who gets the
  money, which VAT lines an invoice has);
* :mod:`core.payments.ledger` and :mod:`core.payments.invoices` — the tables;
* :class:`Payments` — the use cases the core handlers call.
"""

from __future__ import annotations

from core.payments.service import KeysMissing, Payments
from core.payments.settings import InvoiceScope, PaymentSettings

__all__ = ["InvoiceScope", "KeysMissing", "PaymentSettings", "Payments"]
