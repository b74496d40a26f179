"""Reconciliation (issue 5 item 4, requirements U5/P6.3): each payment channel's daily statement is
imported, matched against the payments and refunds the core recorded, and what does not match is kept
as discrepancies (missing in the core or in the statement, duplicated, other amount, other state) until
an operator resolves them with a note.

* :mod:`core.reconciliation.model` — the normalised statement the channel parsers produce;
* :mod:`core.reconciliation.matching` — the rules, pure;
* :mod:`core.reconciliation.service` — import (idempotent by the file's hash) and resolve;
* :mod:`core.reconciliation.queries` — what the API and the ops page read.
"""

from __future__ import annotations

from core.reconciliation.model import (
    STATEMENT_TZ,
    DiscrepancyKind,
    LineKind,
    Statement,
    StatementError,
    StatementLine,
)
from core.reconciliation.service import Imported, NoSuchDiscrepancy, import_statement, resolve_discrepancy

__all__ = ["STATEMENT_TZ", "DiscrepancyKind", "Imported", "LineKind", "NoSuchDiscrepancy", "Statement",
           "StatementError", "StatementLine", "import_statement", "resolve_discrepancy"]
