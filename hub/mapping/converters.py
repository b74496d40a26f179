"""Named converters a mapping field can apply (``convert = "fen_to_yuan"``).

Each converter is a plain function of the value; its keyword-only parameters are the options a field
may set beside ``convert`` (``tz``, ``values``, ``default``, ``little_endian``, ``width``, ``scale``).
A converter that cannot convert raises :class:`ConversionError`; the mapping engine turns that into
``UnmappableMessage`` naming the mapping, its version and the field.

Money is ``Decimal`` yuan with two places; volumes are ``Decimal`` m³; times become ISO 8601 strings
with the zone's offset. Time zones default to Asia/Shanghai, where partners' local times live.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final
from zoneinfo import ZoneInfo

DEFAULT_TZ: Final = "Asia/Shanghai"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_CENT: Final = Decimal("0.01")
_MAX_DIGITS: Final = 20  # before the point; Decimal's 28-digit context then keeps every result exact
_MAX_PLACES: Final = 8
_INT_BOUND: Final = 10**_MAX_DIGITS
_INTEGER: Final = re.compile(r"[+-]?\d{1,20}")
_DECIMAL: Final = re.compile(r"[+-]?(\d{1,20}(\.\d{0,8})?|\.\d{1,8})")
_COMPACT: Final = re.compile(
    r"(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})|(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})"
)
_PHONE: Final = re.compile(r"(\+?86)?(1\d{2})(\d{4})(\d{4})")
_TRUE: Final = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE: Final = frozenset({"0", "false", "f", "no", "n", "off"})


class ConversionError(ValueError):
    """A value cannot be converted; the mapping reports it as ``UnmappableMessage``."""


def fen_to_yuan(value: Any) -> Decimal:
    """Integer fen (WeChat Pay, UnionPay ``txnAmt``) to yuan with two places: ``1234`` → ``12.34``."""
    return Decimal(_to_int(value, "fen")).scaleb(-2)


def yuan_to_fen(value: Any) -> int:
    """Yuan (``"12.34"``, Alipay's ``total_amount``) to integer fen; more than two places is an error."""
    yuan = _to_decimal(value, "yuan")
    fen = yuan.scaleb(2)
    if fen != fen.to_integral_value():
        raise ConversionError(f"{value!r} yuan is not a whole number of fen")
    return int(fen)


def bcd_to_int(value: Any, *, little_endian: bool = False) -> int:
    """Packed BCD as hex text or bytes (``"00 10 00 10"``) to an int.

    ``little_endian`` reads the lowest byte first, as CJ/T 188 sends volumes and addresses.
    """
    raw = _bcd_bytes(value)
    if little_endian:
        raw = raw[::-1]
    digits = raw.hex()
    if not digits or not digits.isdigit():
        raise ConversionError(f"{value!r} is not packed BCD (every nibble must be 0-9)")
    return int(digits)


def int_to_bcd(value: Any, *, width: int | None = None, little_endian: bool = False) -> str:
    """A non-negative int to packed BCD hex text of ``width`` bytes (the inverse of ``bcd_to_int``)."""
    number = _to_int(value, "integer")
    if number < 0:
        raise ConversionError(f"{value!r} is negative: BCD holds digits only")
    digits = str(number)
    size = width if width is not None else (len(digits) + 1) // 2
    if len(digits) > size * 2:
        raise ConversionError(f"{value!r} does not fit in {size} BCD bytes")
    raw = bytes.fromhex(digits.rjust(size * 2, "0"))
    return (raw[::-1] if little_endian else raw).hex().upper()


def epoch_ms_to_iso(value: Any, *, tz: str = DEFAULT_TZ) -> str:
    """Milliseconds since 1970 UTC (CTWing, OneNET ``at``) to an ISO 8601 time in ``tz``."""
    return _from_epoch(_to_int(value, "epoch milliseconds") * 1000, tz)


def epoch_s_to_iso(value: Any, *, tz: str = DEFAULT_TZ) -> str:
    """Seconds since 1970 UTC (decimals allowed) to an ISO 8601 time in ``tz``."""
    seconds = _to_decimal(value, "epoch seconds")
    return _from_epoch(int(seconds.scaleb(6)), tz)


def iso_to_epoch_ms(value: Any, *, tz: str = DEFAULT_TZ) -> int:
    """An ISO 8601 time to milliseconds since 1970 UTC; a time without offset is read in ``tz``."""
    moment = _parse_iso(value, tz)
    delta = moment - _EPOCH
    return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000


def iso(value: Any, *, tz: str = DEFAULT_TZ) -> str:
    """Normalise an ISO 8601 time (WeChat's ``success_time``); a time without offset is read in ``tz``."""
    return _format(_parse_iso(value, tz))


def compact_to_iso(value: Any, *, tz: str = DEFAULT_TZ) -> str:
    """A local time ``yyyyMMddHHmmss`` (tax ``KPRQ``) or ``yyyy-MM-dd HH:mm:ss`` (Alipay) in ``tz`` to ISO."""
    text = _to_text(value).strip()
    match = _COMPACT.fullmatch(text)
    if match is None:
        raise ConversionError(f"{value!r} is not yyyyMMddHHmmss or yyyy-MM-dd HH:mm:ss")
    year, month, day, hour, minute, second = (int(part) for part in match.groups() if part is not None)
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=ZoneInfo(tz))
    except ValueError as exc:
        raise ConversionError(f"{value!r} is not a valid time: {exc}") from None
    return _format(moment)


def litres_to_m3(value: Any) -> Decimal:
    """Litres to cubic metres, exactly: ``123456`` → ``123.456``."""
    return _to_decimal(value, "litres").scaleb(-3)


def decimal(value: Any, *, scale: int = 0) -> Decimal:
    """A number or numeric text to ``Decimal``; ``scale`` moves the point left (BCD with 2 implied places)."""
    number = _to_decimal(value, "decimal")
    return number.scaleb(-scale) if scale else number


def integer(value: Any) -> int:
    """An integer, or numeric text or a Decimal/float holding a whole number, to ``int``."""
    return _to_int(value, "integer")


def text(value: Any) -> str:
    """Any scalar to text (Decimals without exponent, booleans as ``true``/``false``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, str | int | float):
        return str(value)
    raise ConversionError(f"a {type(value).__name__} is not a scalar")


def upper(value: Any) -> str:
    """Text to upper case."""
    return _to_text(value).upper()


def lower(value: Any) -> str:
    """Text to lower case."""
    return _to_text(value).lower()


def strip(value: Any) -> str:
    """Text without leading and trailing whitespace."""
    return _to_text(value).strip()


def boolean(value: Any) -> bool:
    """``true``/``false``, ``1``/``0``, ``yes``/``no``, ``y``/``n``, ``on``/``off`` (any case) to bool."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise ConversionError(f"{value!r} is not a boolean")


def enum(value: Any, *, values: Mapping[str, Any], default: Any = None) -> Any:
    """Look the value's text up in ``values``; unknown values give ``default`` or fail without one."""
    key = text(value) if not isinstance(value, str) else value
    if key in values:
        return values[key]
    if default is not None:
        return default
    known = ", ".join(repr(k) for k in values)
    raise ConversionError(f"{_short(value)} is none of {known}")


def mask_phone(value: Any) -> str:
    """Mask a mobile number for display and logs: ``13812345678`` → ``138****5678``."""
    raw = str(value) if isinstance(value, int) and not isinstance(value, bool) else _to_text(value)
    number = raw.strip().replace(" ", "").replace("-", "")
    match = _PHONE.fullmatch(number)
    if match is not None:
        return f"{match.group(2)}****{match.group(4)}"
    if len(number) >= 8:
        return number[:3] + "*" * (len(number) - 7) + number[-4:]
    return "*" * len(number)


Converter = Callable[..., Any]

CONVERTERS: Final[dict[str, Converter]] = {
    "fen_to_yuan": fen_to_yuan,
    "yuan_to_fen": yuan_to_fen,
    "bcd_to_int": bcd_to_int,
    "int_to_bcd": int_to_bcd,
    "epoch_ms_to_iso": epoch_ms_to_iso,
    "epoch_s_to_iso": epoch_s_to_iso,
    "iso_to_epoch_ms": iso_to_epoch_ms,
    "iso": iso,
    "compact_to_iso": compact_to_iso,
    "litres_to_m3": litres_to_m3,
    "decimal": decimal,
    "int": integer,
    "str": text,
    "upper": upper,
    "lower": lower,
    "strip": strip,
    "bool": boolean,
    "enum": enum,
    "mask_phone": mask_phone,
}
"""Every converter by the name a mapping file uses."""


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise ConversionError(f"{_short(value)} is not text")


def _to_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise ConversionError(f"{value!r} is a boolean, not {what}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        number = int(value.strip())
    elif isinstance(value, float | Decimal | str):
        exact = _to_decimal(value, what)
        if exact != exact.to_integral_value():
            raise ConversionError(f"{_short(value)} is not a whole number of {what}")
        number = int(exact)
    else:
        raise ConversionError(f"{_short(value)} is not {what}")
    if abs(number) >= 10**_MAX_DIGITS:
        raise ConversionError(f"{_short(value)} is out of range for {what}")
    return number


def _to_decimal(value: Any, what: str) -> Decimal:
    kind = type(value)
    if kind is str:  # the common cases first: numeric text and plain ints (bool is a subclass, not int)
        text = value.strip()
        if _DECIMAL.fullmatch(text) is None:
            raise ConversionError(f"{_short(value)} is not {what}")
        return Decimal(text)  # the pattern already bounds digits and places
    if kind is int:
        if -_INT_BOUND < value < _INT_BOUND:
            return Decimal(value)
        raise ConversionError(f"{_short(value)} is out of range for {what} (at most 20 digits and 8 places)")
    if isinstance(value, bool):
        raise ConversionError(f"{value!r} is a boolean, not {what}")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ConversionError(f"{value!r} is not a finite number")
        number = Decimal(repr(value))
    elif isinstance(value, str):
        if _DECIMAL.fullmatch(value.strip()) is None:
            raise ConversionError(f"{_short(value)} is not {what}")
        return Decimal(value.strip())  # the pattern already bounds digits and places
    else:
        raise ConversionError(f"{_short(value)} is not {what}")
    if not number.is_finite():
        raise ConversionError(f"{_short(value)} is not a finite number")
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    if number.adjusted() >= _MAX_DIGITS or exponent < -_MAX_PLACES:
        raise ConversionError(f"{_short(value)} is out of range for {what} (at most 20 digits and 8 places)")
    return number


def _bcd_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    digits = _to_text(value).replace(" ", "")
    if len(digits) % 2 or len(digits) > 64:
        raise ConversionError(f"{_short(value)} is not whole BCD bytes (an even number of hex digits)")
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise ConversionError(f"{_short(value)} is not hexadecimal") from None


@functools.cache
def _zone(tz: str) -> ZoneInfo:
    return ZoneInfo(tz)


def _from_epoch(microseconds: int, tz: str) -> str:
    seconds, fraction = divmod(microseconds, 1_000_000)
    hour = _hour_offsets.get((tz, seconds // 3600))
    if hour is None:
        try:
            moment = datetime.fromtimestamp(seconds, _zone(tz))
        except (OverflowError, OSError, ValueError):
            raise ConversionError(f"{microseconds // 1000} ms after 1970 is out of range") from None
        _learn_hour(tz, seconds // 3600, moment)
        return _format(moment.replace(microsecond=fraction) if fraction else moment)
    # The common case (readings arrive hour after hour): the zone's offset for this UTC hour is
    # known, so the local time is arithmetic. The text is what ``_format`` makes of the same moment.
    offset, suffix = hour
    days, rest = divmod(seconds + offset, 86_400)
    day = _day_texts.get(days) or _learn_day(days)
    hh, rest = divmod(rest, 3600)
    mm, ss = divmod(rest, 60)
    if fraction:
        return f"{day}T{hh:02d}:{mm:02d}:{ss:02d}.{fraction // 1000:03d}{suffix}"
    return f"{day}T{hh:02d}:{mm:02d}:{ss:02d}{suffix}"


_hour_offsets: dict[tuple[str, int], tuple[int, str]] = {}
"""(zone, hours since 1970 UTC) → (the zone's UTC offset in seconds, as ``_format`` writes it), for
hours in which the offset does not change."""
_day_texts: dict[int, str] = {}
"""Days since 1970-01-01 (local) → ``YYYY-MM-DD``."""
_CACHE_LIMIT: Final = 20_000


def _learn_hour(tz: str, hour: int, moment: datetime) -> None:
    """Remember the offset of ``tz`` in this UTC hour, when it is the same from its first second to
    its last (an hour with a change, as at a daylight-saving switch, always takes the slow path)."""
    try:
        first = datetime.fromtimestamp(hour * 3600, moment.tzinfo).utcoffset()
        last = datetime.fromtimestamp(hour * 3600 + 3599, moment.tzinfo).utcoffset()
    except (OverflowError, OSError, ValueError):
        return
    if first is None or first != last or first != moment.utcoffset():
        return
    if len(_hour_offsets) >= _CACHE_LIMIT:
        _hour_offsets.clear()
    _hour_offsets[(tz, hour)] = (int(first.total_seconds()), moment.replace(microsecond=0).isoformat()[19:])


def _learn_day(days: int) -> str:
    text = date.fromordinal(_EPOCH_ORDINAL + days).isoformat()
    if len(_day_texts) >= _CACHE_LIMIT:
        _day_texts.clear()
    _day_texts[days] = text
    return text


_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()


def _parse_iso(value: Any, tz: str) -> datetime:
    raw = _to_text(value).strip()
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ConversionError(f"{_short(value)} is not an ISO 8601 time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=ZoneInfo(tz))


def _format(moment: datetime) -> str:
    """ISO 8601 to the second, or to the millisecond (truncated) when there is a fraction."""
    text = moment.isoformat()  # a third of the cost of isoformat(timespec=...)
    return text[:23] + text[26:] if moment.microsecond else text  # cut "YYYY-MM-DDTHH:MM:SS.mmm|uuu"
