"""Billing runs: bill every active metered account for a period, from the readings in the database.

See :func:`run_billing`.
"""

from core.billing_run.run import (
    CHINA_TZ,
    BillingRunResult,
    SkippedAccount,
    SkipReason,
    period_boundary,
    run_billing,
)

__all__ = [
    "CHINA_TZ",
    "BillingRunResult",
    "SkipReason",
    "SkippedAccount",
    "period_boundary",
    "run_billing",
]
