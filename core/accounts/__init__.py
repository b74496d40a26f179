"""Customer accounts (requirement U1): open and look up, with personal data encrypted at rest,
blind-indexed for lookup and masked on output (A3). Transfer and close, which bill and settle, are
:mod:`core.lifecycle`."""

from __future__ import annotations

from core.accounts.household import household_for_period, households_for
from core.accounts.household_change import set_household
from core.accounts.models import (
    AccountView,
    ArrearsPolicy,
    Billing,
    Category,
    CustomerIn,
    HolderPeriod,
    HouseholdView,
    PersonView,
    PremisesIn,
    PremisesView,
    Privacy,
    Status,
    StatusChange,
    Subcategory,
)
from core.accounts.service import (
    ACCOUNT_READS,
    account_view,
    find_by_id_number,
    find_by_phone,
    get_account,
    open_account,
)
from core.accounts.validation import id_check_digit, valid_id_number, valid_phone, valid_place

__all__ = [
    "ACCOUNT_READS",
    "AccountView",
    "ArrearsPolicy",
    "Billing",
    "Category",
    "CustomerIn",
    "HolderPeriod",
    "HouseholdView",
    "PersonView",
    "PremisesIn",
    "PremisesView",
    "Privacy",
    "Status",
    "StatusChange",
    "Subcategory",
    "account_view",
    "find_by_id_number",
    "find_by_phone",
    "get_account",
    "household_for_period",
    "households_for",
    "id_check_digit",
    "open_account",
    "set_household",
    "valid_id_number",
    "valid_phone",
    "valid_place",
]
