"""Masking of personal data for API output and screens (GB/T 35273 de-identification conventions).

The core's own masking, for values it returns; the hub's log formatter has a separate last-line
filter (``hub.logs.mask_personal``) for free text.

All functions are total: any string, including empty, short or odd ones, gives a masked string and
never raises; ``None`` gives ``None`` (a NULL column stays null in the API). When a value is too
short for the usual rule, everything is masked rather than revealing most of it.

Rules:

* phone — normalised first (``normalise_phone``); 8+ characters keep the first 3 and last 4
  (``13812345678`` → ``138****5678``, ``0575-85123456`` → ``057*****3456``); shorter ones are all ``*``.
* ID number — normalised first; 11+ characters keep the first 6 (region) and last 4
  (``330602199001011234`` → ``330602********1234``, so the birth date is hidden); shorter: all ``*``.
* name — first character kept, one ``*`` per further character (``张三丰`` → ``张**``,
  ``欧阳娜娜`` → ``欧***``); a one-character name is ``*``.
* address — see ``mask_address``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import overload

from core.privacy.normalise import normalise_id_number, normalise_phone

ADDRESS_MASK = "****"
"""What replaces the tail of an address: fixed-width, so the masked form does not reveal its length."""

_FALLBACK_KEEP = 4
"""Characters an address without a recognised district keeps at most (digits are never kept)."""

# One administrative unit name: CJK ideographs other than the level suffixes themselves, so a unit ends
# at the first suffix and digits (house, building, room numbers) are never part of the kept prefix.
_U = r"(?:(?![省市区县旗盟])[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff])"
_ADMIN_PREFIX = re.compile(
    rf"(?:{_U}{{2,10}}?(?:省|自治区|特别行政区)\s*)?"  # province level
    rf"(?:{_U}{{2,10}}?(?:市|自治州|地区|盟)\s*)?"  # prefecture level (and the municipalities)
    rf"(?:{_U}{{1,10}}?(?:区|县|旗|市))?"  # county level: the district
)


def _keep_ends(value: str, head: int, tail: int, minimum: int) -> str:
    """``value`` starred except ``head`` leading and ``tail`` trailing characters; all starred below ``minimum``."""
    if len(value) < minimum:
        return "*" * len(value)
    return value[:head] + "*" * (len(value) - head - tail) + value[len(value) - tail :]


def _safe(fn: Callable[[str], str], value: object) -> str:
    """``fn(value)``, but never an exception: non-strings are stringified, a failure masks everything."""
    text = value if isinstance(value, str) else str(value)
    try:
        return fn(text)
    except Exception:  # noqa: BLE001 — total by contract: mask everything rather than fail
        return "*" * min(len(text), 8)


def _phone(value: str) -> str:
    return _keep_ends(normalise_phone(value), 3, 4, 8)


def _id_number(value: str) -> str:
    return _keep_ends(normalise_id_number(value), 6, 4, 11)


def _name(value: str) -> str:
    name = value.strip()
    if len(name) <= 1:
        return "*" * len(name)
    return name[0] + "*" * (len(name) - 1)


def _address(value: str) -> str:
    address = unicodedata.normalize("NFKC", value).strip()
    if not address:
        return ""
    prefix = _ADMIN_PREFIX.match(address)
    kept = prefix.group(0).rstrip() if prefix else ""
    if not kept or kept == address:
        if kept:
            return kept  # only a district: nothing personal to hide
        limit = min(_FALLBACK_KEEP, len(address) // 3)
        head = re.match(r"\D*", address[:limit])
        kept = head.group(0).rstrip() if head else ""
    return kept + ADDRESS_MASK


@overload
def mask_phone(value: str) -> str: ...
@overload
def mask_phone(value: None) -> None: ...
def mask_phone(value: str | None) -> str | None:
    """``"13812345678"`` → ``"138****5678"`` (``+86``, spaces and dashes dropped first)."""
    return None if value is None else _safe(_phone, value)


@overload
def mask_id_number(value: str) -> str: ...
@overload
def mask_id_number(value: None) -> None: ...
def mask_id_number(value: str | None) -> str | None:
    """``"330602199001011234"`` → ``"330602********1234"``: the first 6 and last 4 kept."""
    return None if value is None else _safe(_id_number, value)


@overload
def mask_name(value: str) -> str: ...
@overload
def mask_name(value: None) -> None: ...
def mask_name(value: str | None) -> str | None:
    """``"张三丰"`` → ``"张**"``: the first character kept, each other one starred; ``"张"`` → ``"*"``."""
    return None if value is None else _safe(_name, value)


@overload
def mask_address(value: str) -> str: ...
@overload
def mask_address(value: None) -> None: ...
def mask_address(value: str | None) -> str | None:
    """An address reduced to its district, the rest replaced by ``****``.

    Rule: the leading administrative divisions are kept — province (省/自治区/特别行政区), prefecture
    (市/自治州/地区/盟) and county level (区/县/旗/市), each optional, in that order — up to and including
    the district; everything after it (street, compound, building, room) becomes ``****`` whatever its
    length::

        浙江省绍兴市越城区人民中路123号3幢201室 → 浙江省绍兴市越城区****
        绍兴市诸暨市暨阳街道… → 绍兴市诸暨市****
        越城区 → 越城区 (only a district: nothing to hide)

    Unit names are ideographs only, so digits never survive; the match is a heuristic without a
    gazetteer, so an address that starts with a compound name (``阳光小区3幢``) keeps that name
    (``阳光小区****``). Without any recognised division, at most the first 4 characters are kept (and
    never beyond a third of the address, nor any digit): ``12 Main Street`` → ``****``.
    """
    return None if value is None else _safe(_address, value)
