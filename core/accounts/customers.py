"""A customer and the accounts they hold or held (U2): personal data masked unless revealed."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from core.accounts.models import PersonView, Privacy
from core.db.tables_accounts import account, account_holder_history, customer
from core.errors import DomainRejected
from core.privacy import field_context, mask_address, mask_id_number, mask_name, mask_phone


class HeldAccount(BaseModel):
    model_config = ConfigDict(frozen=True)

    account_id: str
    account_number: str
    status: str
    held_from: datetime
    held_to: datetime | None


class CustomerView(BaseModel):
    model_config = ConfigDict(frozen=True)

    customer: PersonView
    masked: bool
    accounts: list[HeldAccount]
    """Newest holding first; ``held_to`` is empty while the customer holds the account."""


class UnknownCustomer(DomainRejected):
    """No customer has this id."""


_CUSTOMER = select(customer).where(customer.c.id == bindparam("customer_id"))
_HELD = (
    select(account.c.id.label("account_id"), account.c.account_number, account.c.status,
           account_holder_history.c.valid_from.label("held_from"), account_holder_history.c.valid_to.label("held_to"))
    .join(account, account.c.id == account_holder_history.c.account_id)
    .where(account_holder_history.c.customer_id == bindparam("customer_id"))
    .order_by(account_holder_history.c.valid_from.desc(), account_holder_history.c.id)
)


async def get_customer(conn: AsyncConnection, privacy: Privacy, customer_id: str, *, reveal: bool = False
                       ) -> CustomerView:
    row = (await conn.execute(_CUSTOMER, {"customer_id": customer_id})).first()
    if row is None:
        raise UnknownCustomer(f"no customer {customer_id}")
    dec = privacy.cipher.decrypt

    def field(name: str, token: str | None) -> str | None:
        return None if token is None else dec(token, context=field_context(customer.name, name, customer_id))

    name, phone = field("name", row.name_enc) or "", field("phone", row.phone_enc) or ""
    id_number, address = field("id_number", row.id_number_enc) or "", field("address", row.address_enc)
    person = PersonView(
        customer_id=customer_id,
        name=name if reveal else mask_name(name),
        phone=phone if reveal else mask_phone(phone),
        id_number=id_number if reveal else mask_id_number(id_number),
        address=address if reveal or address is None else mask_address(address),
    )
    held = [HeldAccount.model_validate(dict(r)) for r in (await conn.execute(_HELD, {"customer_id": customer_id}))
            .mappings()]
    return CustomerView(customer=person, masked=not reveal, accounts=held)
