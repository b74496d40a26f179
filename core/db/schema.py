"""Every core table, registered on one ``MetaData``: migrations and schema checks import this."""

from __future__ import annotations

from core.db import (
                     tables_accounts,
                     tables_api,
                     tables_billing,
                     tables_payments,
                     tables_reconciliation,
                     tables_tariffs,
                     tables_valves,
                     tables_workorders,
)
from core.db.tables import metadata

__all__ = ["metadata", "tables_accounts", "tables_api", "tables_billing", "tables_payments", "tables_reconciliation",
           "tables_tariffs",
           "tables_valves", "tables_workorders"]
