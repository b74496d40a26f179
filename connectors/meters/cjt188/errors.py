"""The one exception the CJ/T 188 codec raises on bad input.

Whatever bytes arrive (random, truncated, bit-flipped), decoding either succeeds or raises
:class:`DecodeError`; anything else escaping the codec is a bug. The connector turns a
``DecodeError`` into an audited rejection (``context.reject``) at its boundary.
"""

from __future__ import annotations


class DecodeError(ValueError):
    """Bytes that are not a valid CJ/T 188 frame or message.

    ``offset`` is the position of the offending byte in the buffer that was decoded (the frame
    including its preamble, or the payload for BCD fields), ``expected`` what the codec wanted
    there and ``found`` what it saw, so that a rejection can be read without a hex dump.
    """

    def __init__(self, reason: str, *, offset: int | None = None, expected: str = "", found: str = "") -> None:
        parts = [reason]
        if offset is not None:
            parts.append(f"at offset {offset}")
        if expected:
            parts.append(f"expected {expected}")
        if found:
            parts.append(f"found {found}")
        super().__init__(", ".join(parts))
        self.reason = reason
        self.offset = offset
        self.expected = expected
        self.found = found


class EncodeError(ValueError):
    """A message that cannot be put on the wire (a value out of range for its BCD field…)."""
