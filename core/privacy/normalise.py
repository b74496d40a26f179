"""Canonical forms of phone numbers and resident ID numbers, shared by blind indexing and masking.

Both start with NFKC (full-width digits, letters, ``＋`` and ``－`` become ASCII) and drop whitespace
and dash-like characters.
"""

from __future__ import annotations

import re
import unicodedata

_SEPARATORS = re.compile(r"[\s\-‐‑‒–—―−﹣－()（）]+")
_MOBILE = re.compile(r"1[3-9][0-9]{9}", re.ASCII)


def _compact(value: str) -> str:
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", value))


def normalise_phone(value: str) -> str:
    """A phone number without spaces, dashes, brackets or the China country code.

    ``"+86 138-1234-5678"``, ``"0086 13812345678"``, ``"8613812345678"`` → ``"13812345678"``.
    A landline written internationally gets its trunk ``0`` back (``"+86 575 8512 3456"`` →
    ``"057585123456"``, as written domestically ``"0575-85123456"``). Other characters are kept, so
    odd input stays distinguishable; the result may be empty.
    """
    number = _compact(value)
    international = False
    for prefix in ("+86", "0086"):
        if number.startswith(prefix):
            number, international = number[len(prefix) :], True
            break
    else:
        if len(number) == 13 and number.startswith("86") and _MOBILE.fullmatch(number[2:]):
            number, international = number[2:], True
    if international and number and not _MOBILE.fullmatch(number) and not number.startswith("0"):
        number = "0" + number
    return number


def normalise_id_number(value: str) -> str:
    """A resident ID number without spaces or dashes, letters upper-cased (the check digit ``x`` → ``X``)."""
    return _compact(value).upper()
