"""Account lifecycle with money (requirement U1): close (销户) with the final reading, final bill and
settlement; transfer of ownership (过户) that settles the old holder's arrears or carries them.

Each is one call in the caller's transaction, idempotent by client request id (a replay returns the
stored answer), and builds on the other packages rather than beside them: the account rows of
:mod:`core.accounts`, the reading insert of :mod:`core.handlers.readings`, the billing run's pricing
and bill writing (:mod:`core.billing_run.single`), the prepaid deduction of :mod:`core.prepaid` and the
payments ledger of :mod:`core.payments`. The tariff book is a parameter, whatever it is loaded from.
"""

from core.lifecycle.close import close_account
from core.lifecycle.models import AccountClosed, AccountTransferred, ArrearsOutstanding, FinalBill, Settlement
from core.lifecycle.transfer import transfer_account

__all__ = [
    "AccountClosed",
    "AccountTransferred",
    "ArrearsOutstanding",
    "FinalBill",
    "Settlement",
    "close_account",
    "transfer_account",
]
