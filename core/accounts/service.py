"""Accounts (requirement U1): open (开户) and look-up, and the account-row steps that transfer of
ownership (过户) and close (销户) share with them; those two, with their bills and settlement, are
:mod:`core.lifecycle`.

Every function takes an ``AsyncConnection`` whose transaction the caller owns (commit on success,
roll back on any exception) and a ``Privacy`` bundle. Writes are idempotent by client request id
(see ``core.accounts.idempotency``). Invalid input or a state that forbids the change raises
``DomainRejected``; messages never contain personal data in clear.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection
from ulid import ULID

from core.accounts.household import CURRENT_HOUSEHOLD, household_view
from core.accounts.idempotency import check_request_id, claim, finish
from core.accounts.models import (
        BILLINGS,
    CATEGORIES,
    SUBCATEGORIES,
    AccountView,
    Billing,
    Category,
    CustomerIn,
    HolderPeriod,
    HouseholdView,
    PersonView,
    PremisesIn,
    PremisesView,
    Privacy,
    StatusChange,
    Subcategory,
)
from core.accounts.validation import valid_id_number, valid_phone, valid_place
from core.db.combined import Read, Reads, Rows
from core.db.tables_accounts import (
    DISTRICTS,
    account,
    account_holder_history,
    account_status_history,
    customer,
    premises,
)
from core.errors import DomainRejected
from core.privacy import field_context, mask_address, mask_id_number, mask_name, mask_phone

_CUSTOMER = customer.name
_PREMISES = premises.name
CENT = Decimal("0.01")


def aware(value: datetime, what: str) -> datetime:
    """``value`` in UTC; a naive or non-datetime value is refused, naming ``what``."""
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise DomainRejected(f"{what} must be a datetime with a timezone")
    return value.astimezone(UTC)


def _text(value: str, what: str, limit: int = 200) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text or len(text) > limit:
        raise DomainRejected(f"the {what} must be 1-{limit} characters")
    return text


def clean_customer(person: CustomerIn) -> CustomerIn:
    """The customer trimmed and checked (name, phone, ID number, address), or ``DomainRejected``."""
    address = None if person.address is None or not person.address.strip() else _text(person.address, "address")
    return CustomerIn(
        name=_text(person.name, "name", 100),
        phone=valid_phone(person.phone),
        id_number=valid_id_number(person.id_number),
        address=address,
    )


def _clean_premises(place: PremisesIn) -> PremisesIn:
    if not (math.isfinite(place.lat) and math.isfinite(place.lon)):
        raise DomainRejected("the coordinates must be finite numbers")
    return PremisesIn(
        address=_text(place.address, "premises address"),
        district=valid_place(place.district, place.lat, place.lon),
        lat=place.lat,
        lon=place.lon,
    )


async def insert_customer(conn: AsyncConnection, privacy: Privacy, person: CustomerIn, at: datetime) -> str:
    """A new ``core_customer`` row, its personal fields encrypted and blind-indexed; returns its id."""
    cid = str(ULID())
    enc = privacy.cipher.encrypt
    await conn.execute(
        insert(customer).values(
            id=cid,
            name_enc=enc(person.name, context=field_context(_CUSTOMER, "name", cid)),
            phone_enc=enc(person.phone, context=field_context(_CUSTOMER, "phone", cid)),
            id_number_enc=enc(person.id_number, context=field_context(_CUSTOMER, "id_number", cid)),
            address_enc=None
            if person.address is None
            else enc(person.address, context=field_context(_CUSTOMER, "address", cid)),
            phone_bidx=privacy.index.phone(person.phone),
            id_number_bidx=privacy.index.id_number(person.id_number),
            created_at=at,
        )
    )
    return cid


def _account_number(district: str) -> str:
    """``SX`` + the district's digit (1-6) + 11 random digits; unique in practice (10¹¹ per district)."""
    return f"SX{DISTRICTS.index(district) + 1}{secrets.randbelow(10**11):011d}"


async def open_account(
    conn: AsyncConnection,
    privacy: Privacy,
    request_id: str,
    customer_in: CustomerIn,
    premises_in: PremisesIn,
    category: Category,
    billing: Billing,
    *,
    subcategory: Subcategory | None = None,
    opened_at: datetime | None = None,
) -> AccountView:
    """Open an account (move-in) for a new holder at a premises; the view returned is masked."""
    rid = check_request_id(request_id)
    person = clean_customer(customer_in)
    place = _clean_premises(premises_in)
    if category not in CATEGORIES:
        raise DomainRejected(f"unknown category {category!r}: expected one of {', '.join(CATEGORIES)}")
    if billing not in BILLINGS:
        raise DomainRejected(f"unknown billing {billing!r}: expected one of {', '.join(BILLINGS)}")
    if category == "residential" and subcategory is not None:
        raise DomainRejected("a residential account has no subcategory")
    if category == "non_residential" and subcategory not in SUBCATEGORIES:
        raise DomainRejected(f"a non-residential account needs a subcategory: one of {', '.join(SUBCATEGORIES)}")
    payload: dict[str, Any] = {
        "customer": person.model_dump(),
        "premises": place.model_dump(),
        "category": category,
        "subcategory": subcategory,
        "billing": billing,
    }
    if opened_at is not None:
        payload["opened_at"] = aware(opened_at, "opened_at").isoformat()
    stored = await claim(conn, privacy, rid, "open_account", payload, AccountView)
    if stored is not None:
        return stored

    now = datetime.now(UTC)
    at = now if opened_at is None else aware(opened_at, "opened_at")
    customer_id = await insert_customer(conn, privacy, person, now)
    premises_id = str(ULID())
    await conn.execute(
        insert(premises).values(
            id=premises_id,
            address_enc=privacy.cipher.encrypt(place.address, context=field_context(_PREMISES, "address", premises_id)),
            district=place.district,
            lat=place.lat,
            lon=place.lon,
            created_at=now,
        )
    )
    account_id = str(ULID())
    await conn.execute(
        insert(account).values(
            id=account_id,
            account_number=_account_number(place.district),
            category=category,
            subcategory=subcategory,
            billing=billing,
            status="active",
            premises_id=premises_id,
            customer_id=customer_id,
            opened_at=at,
        )
    )
    await conn.execute(
        insert(account_holder_history).values(
            id=str(ULID()), account_id=account_id, customer_id=customer_id, valid_from=at
        )
    )
    await record_status(conn, account_id, "active", at, "opened")
    view = await get_account(conn, privacy, account_id)
    await finish(conn, rid, view)
    return view


_ACCOUNT = select(account).where(account.c.id == bindparam("account_id"))
# Every holder period with its customer's encrypted fields, in one query (the current holder is one).
_HOLDER_PERIODS = (
    select(account_holder_history, customer.c.name_enc, customer.c.phone_enc, customer.c.id_number_enc,
           customer.c.address_enc)
    .join(customer, customer.c.id == account_holder_history.c.customer_id)
    .where(account_holder_history.c.account_id == bindparam("account_id"))
    .order_by(account_holder_history.c.valid_from, account_holder_history.c.id)
)
_PREMISES_ROW = (
    select(premises)
    .join(account, account.c.premises_id == premises.c.id)
    .where(account.c.id == bindparam("account_id"))
)
_STATUS_HISTORY = (
    select(account_status_history)
    .where(account_status_history.c.account_id == bindparam("account_id"))
    .order_by(account_status_history.c.effective_from, account_status_history.c.id)
)
ACCOUNT_READS = (
    Read("account", _ACCOUNT),
    Read("holders", _HOLDER_PERIODS),
    Read("premises", _PREMISES_ROW),
    Read("statuses", _STATUS_HISTORY),
    Read("household", CURRENT_HOUSEHOLD),
)
"""The reads of an account's view, each by ``:account_id``: one round trip on PostgreSQL
(``core.db.combined``); the overview adds its own reads to these."""
_VIEW_READS = Reads(*ACCOUNT_READS)


async def get_account(
    conn: AsyncConnection, privacy: Privacy, account_id: str, *, reveal: bool = False
) -> AccountView:
    """The account with its holder, premises and history; personal data masked unless ``reveal``."""
    rows = await _VIEW_READS.fetch(conn, {"account_id": account_id})
    if not rows["account"]:
        raise DomainRejected(f"unknown account {account_id[:40]!r}")
    return account_view(privacy, rows, reveal=reveal)


async def find_by_phone(
    conn: AsyncConnection, privacy: Privacy, phone: str, *, reveal: bool = False
) -> list[AccountView]:
    """Accounts whose current holder has this mobile phone (any written form: ``+86``, spaces, dashes)."""
    candidates = privacy.index.candidates(valid_phone(phone), purpose="phone")
    return await _find(conn, privacy, customer.c.phone_bidx.in_(candidates), reveal)


async def find_by_id_number(
    conn: AsyncConnection, privacy: Privacy, id_number: str, *, reveal: bool = False
) -> list[AccountView]:
    """Accounts whose current holder has this resident ID number."""
    candidates = privacy.index.candidates(valid_id_number(id_number), purpose="id_number")
    return await _find(conn, privacy, customer.c.id_number_bidx.in_(candidates), reveal)


async def _find(conn: AsyncConnection, privacy: Privacy, condition: Any, reveal: bool) -> list[AccountView]:
    rows = (
        await conn.execute(
            select(account.c.id)
            .join(customer, customer.c.id == account.c.customer_id)
            .where(condition)
            .order_by(account.c.opened_at, account.c.id)
        )
    ).all()
    return [await get_account(conn, privacy, row.id, reveal=reveal) for row in rows]


async def lock_account(conn: AsyncConnection, account_id: str) -> Row[Any]:
    """The account row, locked for the transaction (PostgreSQL), or ``DomainRejected`` if unknown."""
    row = (await conn.execute(select(account).where(account.c.id == account_id).with_for_update())).first()
    if row is None:
        raise DomainRejected(f"unknown account {account_id[:40]!r}")
    return row


async def current_holder(conn: AsyncConnection, account_id: str) -> Row[Any]:
    """The open holder period (``valid_to`` is NULL)."""
    return (
        await conn.execute(
            select(account_holder_history)
            .where(account_holder_history.c.account_id == account_id, account_holder_history.c.valid_to.is_(None))
            .order_by(account_holder_history.c.valid_from.desc())
            .limit(1)
        )
    ).one()


async def record_status(conn: AsyncConnection, account_id: str, status: str, at: datetime, reason: str) -> None:
    """Append a status change to the account's history."""
    await conn.execute(
        insert(account_status_history).values(
            id=str(ULID()), account_id=account_id, status=status, effective_from=at, reason=reason
        )
    )


def account_view(privacy: Privacy, rows: Mapping[str, Rows], *, reveal: bool) -> AccountView:
    """The view built from the rows of ``ACCOUNT_READS``; ``DomainRejected`` if there is no account."""
    if not rows["account"]:
        raise DomainRejected("unknown account")
    row = rows["account"][0]
    dec = privacy.cipher.decrypt

    def show(value: str | None, mask: Any) -> str | None:
        return value if reveal or value is None else mask(value)

    periods = rows["holders"]
    people = {p["customer_id"]: p for p in periods}

    def name_of(cid: str) -> str:
        name = dec(people[cid]["name_enc"], context=field_context(_CUSTOMER, "name", cid))
        return name if reveal else mask_name(name)

    cid = row["customer_id"]
    holder = people[cid]
    address = (
        None
        if holder["address_enc"] is None
        else dec(holder["address_enc"], context=field_context(_CUSTOMER, "address", cid))
    )
    person = PersonView(
        customer_id=cid,
        name=name_of(cid),
        phone=show(dec(holder["phone_enc"], context=field_context(_CUSTOMER, "phone", cid)), mask_phone) or "",
        id_number=show(dec(holder["id_number_enc"], context=field_context(_CUSTOMER, "id_number", cid)),
                       mask_id_number) or "",
        address=show(address, mask_address),
    )
    place = rows["premises"][0]
    place_address = dec(place["address_enc"], context=field_context(_PREMISES, "address", place["id"]))
    holders = tuple(
        HolderPeriod(customer_id=h["customer_id"], name=name_of(h["customer_id"]), valid_from=h["valid_from"],
                     valid_to=h["valid_to"], arrears_policy=h["arrears_policy"],
                     arrears_carried=None if h["arrears_carried"] is None
                     else Decimal(h["arrears_carried"]).quantize(CENT))
        for h in periods
    )
    statuses = tuple(
        StatusChange(status=s["status"], effective_from=s["effective_from"], reason=s["reason"])
        for s in rows["statuses"]
    )
    return AccountView(
        account_id=row["id"],
        account_number=row["account_number"],
        category=row["category"],
        subcategory=row["subcategory"],
        billing=row["billing"],
        status=row["status"],
        opened_at=row["opened_at"],
        closed_at=row["closed_at"],
        final_reading_m3=row["final_reading_m3"],
        final_bill=row["final_bill_id"],
        masked=not reveal,
        holder=person,
        premises=PremisesView(
            premises_id=place["id"],
            address=place_address if reveal else mask_address(place_address),
            district=place["district"],
            lat=place["lat"],
            lon=place["lon"],
        ),
        holders=holders,
        status_history=statuses,
        household=_household(rows),
    )


def _household(rows: Mapping[str, Rows]) -> HouseholdView | None:
    """The latest recorded household, when the reads include it (older callers' reads may not)."""
    found = rows.get("household")
    return household_view(found[0]) if found else None
