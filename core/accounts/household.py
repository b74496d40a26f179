"""An account's household and its large-household uplift approval (rule 4 of ``domain.md``), stored.

The pricing of the uplift is :mod:`core.billing` (:class:`~core.billing.Household`,
``bill_period(..., household=)``); this module keeps what it prices from: ``core_account_household``,
an append-only history of whole households (see the table's notes in
:mod:`core.db.tables_accounts` for why rows are whole households rather than an approvals table).

* :func:`core.accounts.household_change.set_household` records a change (customer service, admin),
  idempotent by client request id like the other account writes, and answers with the account's view;
* :func:`household_for_period` / :func:`households_for` read it back as a ``Household`` for a billing
  period: the latest *recorded* row in force before the period ends. Its residents count holds for
  the whole period (a ``Household`` has one); its approval's own validity dates cut the period
  where the uplift starts or stops, as ``bill_period`` does. To end an approval on a given day,
  record the household again with the approval's ``valid_until``; a household recorded without an
  approval withdraws it for every period that ends after its ``effective_from``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import date
from typing import Any

from sqlalchemy import bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from core.accounts.models import HouseholdView
from core.billing import Household, UpliftApproval
from core.db.tables_accounts import account_household

CURRENT_HOUSEHOLD = (
    select(account_household)
    .where(account_household.c.account_id == bindparam("account_id"))
    .order_by(account_household.c.recorded_at.desc(), account_household.c.id.desc())
    .limit(1)
)
"""The account's latest recorded household (what the account view shows), by ``:account_id``."""


def household_of(row: Mapping[Any, Any]) -> Household:
    """The ``Household`` of a ``core_account_household`` row."""
    approval = None
    if row["approval_reference"] is not None:
        approval = UpliftApproval(reference=row["approval_reference"], valid_from=row["approval_valid_from"],
                                  valid_until=row["approval_valid_until"])
    return Household(residents=row["residents"], approval=approval)


def household_view(row: Mapping[Any, Any]) -> HouseholdView:
    """What the account view shows of a ``core_account_household`` row."""
    household = household_of(row)
    return HouseholdView(residents=household.residents, approval=household.approval,
                         effective_from=row["effective_from"], recorded_at=row["recorded_at"],
                         recorded_by=row["recorded_by"])


def approval_overlaps(household: Household, start: date, end: date) -> bool:
    """Whether the household's approval covers a day of ``[start, end)`` (then it bills differently)."""
    approval = household.approval
    return approval is not None and approval.valid_from < end and (
        approval.valid_until is None or approval.valid_until > start)


async def household_for_period(conn: AsyncConnection, account_id: str, start: date, end: date) -> Household | None:
    """The account's household for ``[start, end)`` (module notes); ``None`` when none is recorded."""
    return (await households_for(conn, [account_id], end)).get(account_id)


async def households_for(conn: AsyncConnection, account_ids: Collection[str], end: date) -> dict[str, Household]:
    """For each account with one, the latest recorded household in force before ``end`` (exclusive):
    one query on the account index; accounts with none are left out."""
    if not account_ids:
        return {}
    rows = (await conn.execute(
        select(account_household)
        .where(account_household.c.account_id.in_(list(account_ids)), account_household.c.effective_from < end)
        .order_by(account_household.c.account_id, account_household.c.recorded_at, account_household.c.id)
    )).mappings()
    latest = {row["account_id"]: row for row in rows}  # the last recorded one of each account wins
    return {account_id: household_of(row) for account_id, row in latest.items()}


async def any_approval_between(conn: AsyncConnection, start: date, end: date) -> bool:
    """Whether any recorded approval covers a day of ``[start, end)``: when none does, no account bills
    differently from having no household, and a billing run can skip its per-account probe."""
    found = (await conn.execute(
        select(account_household.c.id)
        .where(account_household.c.approval_valid_from < end,
               or_(account_household.c.approval_valid_until.is_(None),
                   account_household.c.approval_valid_until > start))
        .limit(1))).first()
    return found is not None


async def approved_households(conn: AsyncConnection, row_ids: Collection[str], start: date,
                              end: date) -> dict[str, Household]:
    """The households of the rows ``row_ids`` (by row id, as the billing run's probe found them) whose
    approval covers a day of ``[start, end)``, by account: the only ones that bill differently from
    no household at all."""
    if not row_ids:
        return {}
    rows = (await conn.execute(
        select(account_household)
        .where(account_household.c.id.in_(list(row_ids)), account_household.c.approval_valid_from < end,
               or_(account_household.c.approval_valid_until.is_(None),
                   account_household.c.approval_valid_until > start))
    )).mappings()
    return {row["account_id"]: household_of(row) for row in rows}
