"""What the account use cases take and return, and the ``Privacy`` bundle they need."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict

from core.billing import UpliftApproval
from core.privacy import BlindIndex, FieldCipher, KeyRing

Category = Literal["residential", "non_residential"]
Subcategory = Literal["industrial", "commercial", "heating"]
Billing = Literal["prepaid", "postpaid"]
Status = Literal["active", "suspended", "closed"]
ArrearsPolicy = Literal["settle", "carry"]

CATEGORIES: tuple[Category, ...] = ("residential", "non_residential")
SUBCATEGORIES: tuple[Subcategory, ...] = ("industrial", "commercial", "heating")
BILLINGS: tuple[Billing, ...] = ("prepaid", "postpaid")
ARREARS_POLICIES: tuple[ArrearsPolicy, ...] = ("settle", "carry")


@dataclass(frozen=True, slots=True)
class Privacy:
    """The field cipher and the blind index the account use cases encrypt and look up with."""

    cipher: FieldCipher
    index: BlindIndex

    @classmethod
    def from_ring(cls, ring: KeyRing, index_ring: KeyRing | None = None) -> Privacy:
        """Both from one key ring, or the index from a ring of its own."""
        return cls(FieldCipher(ring), BlindIndex(index_ring or ring))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CustomerIn(_Model):
    """A customer as given by the caller (validated by the use cases: phone, ID number)."""

    name: str
    phone: str
    id_number: str
    address: str | None = None


class PremisesIn(_Model):
    """The place supplied with gas: address, district (``yuecheng``…) and WGS84 coordinates."""

    address: str
    district: str
    lat: float
    lon: float


class PersonView(_Model):
    """A holder's personal data: masked unless the caller asked to reveal it."""

    customer_id: str
    name: str
    phone: str
    id_number: str
    address: str | None


class PremisesView(_Model):
    premises_id: str
    address: str
    district: str
    lat: float
    lon: float


class HolderPeriod(_Model):
    """Who held the account from ``valid_from`` until ``valid_to`` (``None``: still holds it)."""

    customer_id: str
    name: str
    valid_from: datetime
    valid_to: datetime | None
    arrears_policy: ArrearsPolicy | None
    """How arrears were handled when this holder took over (``None`` for the first holder)."""
    arrears_carried: Decimal | None = None
    """What was still owed when this holder took over and stayed on the account: the debt carried
    (``carry``), 0.00 (``settle``: paid before the transfer); ``None`` for the first holder."""


class StatusChange(_Model):
    status: Status
    effective_from: datetime
    reason: str


class HouseholdView(_Model):
    """The account's household as last recorded (rule 4: the large-household uplift): residents, the
    uplift approval if one was granted, from when it counts and who recorded it."""

    residents: int
    approval: UpliftApproval | None
    effective_from: date
    recorded_at: datetime
    recorded_by: str


class AccountView(_Model):
    """An account with its current holder, premises and effective-dated history."""

    account_id: str
    account_number: str
    category: Category
    subcategory: Subcategory | None
    billing: Billing
    status: Status
    opened_at: datetime
    closed_at: datetime | None
    final_reading_m3: Decimal | None
    final_bill: str | None
    """Once closed: the id of the final bill (the use up to the final reading; ``None`` when nothing
    was metered: no meter, or a prepaid account, which paid as it used)."""
    masked: bool
    holder: PersonView
    premises: PremisesView
    holders: tuple[HolderPeriod, ...]
    status_history: tuple[StatusChange, ...]
    household: HouseholdView | None = None
    """The latest recorded household (``PUT /accounts/{id}/household``); ``None`` when none was."""
