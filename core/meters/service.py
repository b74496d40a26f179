"""Install a meter at an account (装表): the row in ``core_meter`` that ties the meter's readings to
the account, so the billing run bills them and payments for a prepaid account find the meter.

Runs in the caller's transaction. Idempotent: installing the same meter at the same account again
changes nothing. A meter already installed at another account is refused (a meter exchange or a
move is a work order, not a re-install); a meter known but installed nowhere (readings arrived
before the installation was recorded) is linked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.tables_accounts import account
from core.db.tables_billing import VALVE_STATES, meter
from core.errors import DomainRejected

METER_ID = re.compile(r"[0-9A-Za-z_-]{1,32}", re.ASCII)
"""What a meter serial may be (the catalogue's ``MeterId``)."""


@dataclass(frozen=True, slots=True)
class MeterView:
    meter_id: str
    account_id: str
    model: str
    installed_at: date
    replace_by: date | None
    valve_state: str
    protocol_address: str | None = None
    imei: str | None = None
    verified_on: date | None = None


async def install_meter(
    conn: AsyncConnection,
    meter_id: str,
    account_id: str,
    *,
    model: str,
    installed_at: date,
    replace_by: date | None = None,
    valve_state: str = "open",
    protocol_address: str | None = None,
    imei: str | None = None,
    verified_on: date | None = None,
) -> MeterView:
    """Record meter ``meter_id`` (a ``model`` such as ``G2.5``) as installed at ``account_id``.

    ``replace_by`` is the end of the meter's service life or verification period, when known.
    Raises ``DomainRejected`` for an invalid serial or model, an unknown or closed account, a meter
    installed elsewhere, or the same meter recorded with another model.
    """
    if not isinstance(meter_id, str) or not METER_ID.fullmatch(meter_id):
        raise DomainRejected("a meter id is 1-32 letters, digits, '-' or '_'")
    model = model.strip() if isinstance(model, str) else ""
    if not model or len(model) > 64:
        raise DomainRejected("the meter model must be 1-64 characters (e.g. G2.5)")
    if valve_state not in VALVE_STATES:
        raise DomainRejected(f"unknown valve state {valve_state!r}: expected one of {', '.join(VALVE_STATES)}")
    if replace_by is not None and replace_by <= installed_at:
        raise DomainRejected("a meter's replace-by date must come after its installation")
    if protocol_address is not None and not re.fullmatch(r"\d{14}", protocol_address):
        raise DomainRejected("a CJ/T 188 meter address is 14 digits (7 BCD bytes)")
    if imei is not None and not (re.fullmatch(r"\d{15}", imei) and _luhn_ok(imei)):
        raise DomainRejected("an IMEI is 15 digits with a valid check digit")
    holder = (await conn.execute(select(account.c.status, account.c.account_number)
                                 .where(account.c.id == account_id))).first()
    if holder is None:
        raise DomainRejected(f"unknown account {str(account_id)[:40]!r}")
    if holder.status == "closed":
        raise DomainRejected(f"account {holder.account_number} is closed: no meter can be installed there")
    found = (await conn.execute(select(meter).where(meter.c.id == meter_id).with_for_update())).first()
    if found is None:
        if imei is not None and (await conn.execute(select(meter.c.id).where(meter.c.imei == imei))).first():
            raise DomainRejected(f"IMEI {imei} belongs to another meter")
        await conn.execute(insert(meter).values(
            id=meter_id, account_id=account_id, model=model, installed_at=installed_at, replace_by=replace_by,
            valve_state=valve_state, prepaid_balance=0, protocol_address=protocol_address, imei=imei,
            verified_on=verified_on))
        return MeterView(meter_id, account_id, model, installed_at, replace_by, valve_state, protocol_address, imei,
                         verified_on)
    if found.account_id not in (None, account_id):
        raise DomainRejected(f"meter {meter_id} is installed at another account: exchange or move it first")
    if found.model != model:
        raise DomainRejected(f"meter {meter_id} is recorded as model {found.model}, not {model}")
    if found.account_id is None:
        await conn.execute(update(meter).where(meter.c.id == meter_id).values(
            account_id=account_id, installed_at=installed_at, replace_by=replace_by))
        return MeterView(meter_id, account_id, model, installed_at, replace_by, found.valve_state)
    return MeterView(meter_id, account_id, found.model, found.installed_at, found.replace_by, found.valve_state)


def _luhn_ok(digits: str) -> bool:
    """The IMEI's last digit is a Luhn check over the first fourteen."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0
