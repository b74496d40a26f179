"""Input rules for accounts: mobile phones, resident ID numbers (GB 11643), places in Shaoxing."""

from __future__ import annotations

import re
from datetime import date

from core.db.tables_accounts import DISTRICTS, LAT_RANGE, LON_RANGE
from core.errors import DomainRejected
from core.privacy import normalise_id_number, normalise_phone

_MOBILE = re.compile(r"1[3-9][0-9]{9}", re.ASCII)
_ID_BODY = re.compile(r"[0-9]{17}[0-9X]", re.ASCII)
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


def id_check_digit(first17: str) -> str:
    """The GB 11643-1999 check character of the first 17 digits: ISO 7064 MOD 11-2 (``0-9`` or ``X``)."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError("the check digit is computed from exactly 17 ASCII digits")
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK[total % 11]


def valid_phone(value: str) -> str:
    """``value`` normalised to 11 digits ``1[3-9]…``; ``DomainRejected`` otherwise."""
    phone = normalise_phone(value)
    if not _MOBILE.fullmatch(phone):
        raise DomainRejected("the phone must be a mainland mobile number: 11 digits starting 13-19")
    return phone


def valid_id_number(value: str) -> str:
    """``value`` normalised (upper-case ``X``) and checked: 18 characters, a real birth date, the right
    GB 11643 check digit; ``DomainRejected`` otherwise. The message never repeats the number."""
    number = normalise_id_number(value)
    if not _ID_BODY.fullmatch(number):
        raise DomainRejected("the ID number must have 18 characters: 17 digits and a digit or X")
    try:
        date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise DomainRejected("the ID number does not contain a valid birth date") from None
    if id_check_digit(number[:17]) != number[17]:
        raise DomainRejected("the ID number's check digit is wrong (GB 11643): check for a typing error")
    return number


def valid_place(district: str, lat: float, lon: float) -> str:
    """The district (one of the six, case-insensitive) once the coordinates are inside the city."""
    name = district.strip().lower()
    if name not in DISTRICTS:
        raise DomainRejected(f"unknown district {district[:20]!r}: expected one of {', '.join(DISTRICTS)}")
    if not (LAT_RANGE[0] <= lat <= LAT_RANGE[1] and LON_RANGE[0] <= lon <= LON_RANGE[1]):
        raise DomainRejected(
            f"coordinates ({lat}, {lon}) are outside Shaoxing: latitude {LAT_RANGE[0]}–{LAT_RANGE[1]} N, "
            f"longitude {LON_RANGE[0]}–{LON_RANGE[1]} E (WGS84)"
        )
    return name
