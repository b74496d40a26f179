"""Packed BCD as CJ/T 188 sends it: two decimal digits a byte, high nibble first, and multi-byte
numbers lowest byte first (address ``12345678901234`` is ``34 12 90 78 56 34 12`` on the wire)."""

from __future__ import annotations

from connectors.meters.cjt188.errors import DecodeError, EncodeError

_DIGITS = {n: f"{n >> 4}{n & 0x0F}" for n in range(256) if n >> 4 < 10 and n & 0x0F < 10}
_VALUES = {n: (n >> 4) * 10 + (n & 0x0F) for n in _DIGITS}
_BYTES = {v: k for k, v in _VALUES.items()}


def bcd_byte(value: int, *, offset: int = 0) -> int:
    """The value (0..99) of one BCD byte; ``offset`` only locates the byte in the error."""
    try:
        return _VALUES[value]
    except KeyError:
        raise DecodeError("not a BCD byte", offset=offset, expected="two decimal digits 00..99",
                          found=f"{value:02X}") from None


def to_bcd_byte(value: int) -> int:
    """One BCD byte for 0..99."""
    try:
        return _BYTES[value]
    except KeyError:
        raise EncodeError(f"{value!r} does not fit one BCD byte (0..99)") from None


def _not_bcd(data: bytes, offset: int) -> DecodeError:
    at = next(i for i, b in enumerate(data) if b not in _VALUES)
    return DecodeError("not a BCD byte", offset=offset + at, expected="two decimal digits 00..99",
                       found=f"{data[at]:02X}")


def decode_digits(data: bytes, *, offset: int = 0) -> str:
    """The decimal digits of a little-endian BCD field, most significant first (``34 12`` → ``"1234"``)."""
    digits = data[::-1].hex()
    if not digits.isdigit() and data:
        raise _not_bcd(data, offset)
    return digits


def encode_digits(digits: str, width: int) -> bytes:
    """``width`` little-endian BCD bytes for a string of ``2 × width`` decimal digits."""
    if len(digits) != 2 * width or not digits.isascii() or not digits.isdigit():
        raise EncodeError(f"{digits!r} is not {2 * width} decimal digits")
    return bytes(int(digits[i - 2:i]) // 10 * 16 + int(digits[i - 2:i]) % 10 for i in range(len(digits), 0, -2))


def decode_int(data: bytes, *, offset: int = 0) -> int:
    """The integer of a little-endian BCD field."""
    return int(decode_digits(data, offset=offset) or "0")


def encode_int(value: int, width: int) -> bytes:
    """``width`` little-endian BCD bytes for ``0 <= value < 100**width``."""
    if not 0 <= value < 100**width:
        raise EncodeError(f"{value!r} does not fit {width} BCD bytes")
    out = bytearray()
    for _ in range(width):
        value, low = divmod(value, 100)
        out.append(_BYTES[low])
    return bytes(out)
