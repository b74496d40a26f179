"""Recording an account's household and uplift approval (rule 4): see :mod:`core.accounts.household`."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection
from ulid import ULID

from core.accounts.idempotency import check_request_id, claim, finish
from core.accounts.models import AccountView, Privacy
from core.accounts.service import get_account, lock_account
from core.billing import Household
from core.db.tables_accounts import account_household
from core.errors import DomainRejected

CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
"""Billing days are local days (as :mod:`core.billing_run.periods`)."""


def _effective_from(household: Household, effective_from: date | None, now: datetime) -> date:
    """When the change takes effect: as given; else from the approval's first day (an approval granted
    after the fact applies to the periods it covers), else from today (local)."""
    if effective_from is not None:
        return effective_from
    if household.approval is not None:
        return household.approval.valid_from
    return now.astimezone(CHINA_TZ).date()


async def set_household(
    conn: AsyncConnection,
    privacy: Privacy,
    request_id: str,
    account_id: str,
    household: Household,
    *,
    recorded_by: str,
    effective_from: date | None = None,
    now: datetime | None = None,
) -> AccountView:
    """Record the account's household (residents and, when granted, the uplift approval) from
    ``effective_from``; answers with the (masked) account view, which shows it.

    Refused (``DomainRejected``): an unknown or closed account, a non-residential one (the uplift is a
    residential rule), an approval that ends before the household takes effect. A repeat of the same
    ``request_id`` with the same content returns the first answer and records nothing.
    """
    rid = check_request_id(request_id)
    if not isinstance(household, Household):
        raise DomainRejected("the household must be a core.billing.Household")
    by = recorded_by.strip() if isinstance(recorded_by, str) else ""
    if not by or len(by) > 64:
        raise DomainRejected("recorded_by must name who made the change (1-64 characters)")
    at = (now or datetime.now(UTC)).astimezone(UTC)
    starts = _effective_from(household, effective_from, at)
    approval = household.approval
    if approval is not None and approval.valid_until is not None and approval.valid_until <= starts:
        raise DomainRejected(f"approval {approval.reference} ends on {approval.valid_until.isoformat()}, "
                             f"before the household takes effect on {starts.isoformat()}")
    payload = {"account_id": account_id, "household": household.model_dump(mode="json"),
               "effective_from": None if effective_from is None else effective_from.isoformat()}
    stored = await claim(conn, privacy, rid, "set_household", payload, AccountView)
    if stored is not None:
        return stored
    row = await lock_account(conn, account_id)
    if row.status == "closed":
        raise DomainRejected(f"account {account_id[:40]} is closed")
    if row.category != "residential":
        raise DomainRejected("the household-size uplift applies to residential accounts only")
    await conn.execute(insert(account_household).values(
        id=str(ULID()), account_id=account_id, effective_from=starts, residents=household.residents,
        approval_reference=None if approval is None else approval.reference,
        approval_valid_from=None if approval is None else approval.valid_from,
        approval_valid_until=None if approval is None else approval.valid_until,
        recorded_at=at, recorded_by=by, client_request_id=rid,
    ))
    view = await get_account(conn, privacy, account_id)
    await finish(conn, rid, view)
    return view
