"""The CJ/T 188 link frame: encode, decode, and split a TCP byte stream into frames.

::

    FE×n  68  T  A0..A6  C  L  data(L)  CS  16

``FE`` is a wake-up preamble (any number is skipped before ``68``); ``T`` the meter type; the address
is BCD, lowest digits first (``AA`` bytes are wildcards and read as the letters ``AA``); ``C`` the
control code; ``CS`` the sum of the bytes from ``68`` through the data, mod 256. This module knows
nothing of DIs or payloads: :mod:`connectors.meters.cjt188.messages` reads those.

Decoding is the hot path of a DTU server, so frames are plain slotted dataclasses and the parser
works on ``bytes`` offsets without copies beyond the data field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from connectors.meters.cjt188.errors import DecodeError, EncodeError

START = 0x68
END = 0x16
PREAMBLE = 0xFE
WILDCARD = 0xAA
ADDRESS_BYTES = 7
MAX_DATA = 255

_ADDRESS_DIGITS = {n: f"{n >> 4}{n & 0x0F}" for n in range(256) if n >> 4 < 10 and n & 0x0F < 10}
_ADDRESS_DIGITS[WILDCARD] = "AA"
_ADDRESS_BYTES = {v: k for k, v in _ADDRESS_DIGITS.items()}


@dataclass(frozen=True, slots=True)
class Frame:
    """One link frame. ``address`` is the meter's digits as printed (``"12345678901234"``);
    ``data`` is the whole data field (DI, SER and payload, or an error reply's status)."""

    meter_type: int
    address: str
    control: int
    data: bytes = b""

    @property
    def is_reply(self) -> bool:
        """D7: sent by the meter."""
        return bool(self.control & 0x80)

    @property
    def is_error(self) -> bool:
        """D6: the meter refused the request (the data is a status byte)."""
        return bool(self.control & 0x40)


@dataclass(frozen=True, slots=True)
class Garbage:
    """Bytes the splitter skipped: where they started in the stream, what they were and why."""

    offset: int
    data: bytes
    reason: str


def checksum(data: bytes | bytearray | memoryview) -> int:
    return sum(data) & 0xFF


def encode_address(address: str, width: int = ADDRESS_BYTES) -> bytes:
    """The wire bytes of an address: ``2 × width`` digits (``AA`` pairs allowed), lowest pair first."""
    if len(address) != 2 * width:
        raise EncodeError(f"address {address!r} is not {2 * width} digits")
    out = bytearray()
    for i in range(len(address), 0, -2):
        byte = _ADDRESS_BYTES.get(address[i - 2:i])
        if byte is None:
            raise EncodeError(f"address {address!r} holds {address[i - 2:i]!r}: digits or the wildcard AA only")
        out.append(byte)
    return bytes(out)


def decode_address(buf: bytes, start: int, width: int = ADDRESS_BYTES) -> str:
    fast = buf[start:start + width][::-1].hex()
    if fast.isdigit():
        return fast
    digits = []
    for i in range(start + width - 1, start - 1, -1):
        pair = _ADDRESS_DIGITS.get(buf[i])
        if pair is None:
            raise DecodeError("address byte is not BCD", offset=i, expected="00..99 or AA", found=f"{buf[i]:02X}")
        digits.append(pair)
    return "".join(digits)


def encode_frame(frame: Frame, *, preamble: int = 0, address_bytes: int = ADDRESS_BYTES) -> bytes:
    """The wire bytes of a frame, after ``preamble`` ``FE`` bytes."""
    if not 0 <= frame.meter_type <= 0xFF or not 0 <= frame.control <= 0xFF:
        raise EncodeError("meter type and control code are single bytes")
    if len(frame.data) > MAX_DATA:
        raise EncodeError(f"data field of {len(frame.data)} bytes exceeds {MAX_DATA}")
    body = bytearray((START, frame.meter_type))
    body += encode_address(frame.address, address_bytes)
    body += bytes((frame.control, len(frame.data)))
    body += frame.data
    body.append(checksum(body))
    body.append(END)
    return bytes((PREAMBLE,)) * preamble + bytes(body)


def frame_length(data_length: int, address_bytes: int = ADDRESS_BYTES) -> int:
    """Bytes from ``68`` through ``16`` for a data field of this length."""
    return 6 + address_bytes + data_length


def parse_at(buf: bytes, start: int, address_bytes: int = ADDRESS_BYTES) -> Frame:
    """The frame whose ``68`` is at ``buf[start]``. ``buf`` must hold all of it (see ``frame_length``)."""
    if buf[start] != START:
        raise DecodeError("no frame start", offset=start, expected="68", found=f"{buf[start]:02X}")
    c_at = start + 2 + address_bytes
    length = buf[c_at + 1]
    cs_at = c_at + 2 + length
    if len(buf) <= cs_at + 1:
        raise DecodeError("frame truncated", offset=len(buf), expected=f"{cs_at + 2 - start} bytes from 68 "
                          f"(L={length})", found=f"{len(buf) - start}")
    if buf[cs_at + 1] != END:
        raise DecodeError("no end byte after the checksum", offset=cs_at + 1, expected="16",
                          found=f"{buf[cs_at + 1]:02X}")
    expected = checksum(memoryview(buf)[start:cs_at])
    if buf[cs_at] != expected:
        raise DecodeError("checksum mismatch", offset=cs_at, expected=f"{expected:02X}", found=f"{buf[cs_at]:02X}")
    return Frame(buf[start + 1], decode_address(buf, start + 2, address_bytes), buf[c_at], buf[c_at + 2:cs_at])


def decode_frame(buf: bytes, *, address_bytes: int = ADDRESS_BYTES) -> Frame:
    """Exactly one frame, after any number of ``FE`` bytes, with nothing after its ``16``."""
    start = 0
    while start < len(buf) and buf[start] == PREAMBLE:
        start += 1
    if start == len(buf):
        raise DecodeError("no frame", offset=start, expected="68 after the FE preamble", found="end of data")
    if buf[start] != START:
        raise DecodeError("no frame start", offset=start, expected="68", found=f"{buf[start]:02X}")
    header = start + 4 + address_bytes
    if len(buf) < header:
        raise DecodeError("frame truncated in its header", offset=len(buf),
                          expected=f"{header - start} header bytes from 68", found=f"{len(buf) - start}")
    end = start + frame_length(buf[header - 1], address_bytes)
    if len(buf) < end:
        raise DecodeError("frame truncated", offset=len(buf),
                          expected=f"{end - start} bytes from 68 (L={buf[header - 1]})", found=f"{len(buf) - start}")
    frame = parse_at(buf, start, address_bytes)
    if len(buf) > end:
        raise DecodeError("bytes after the frame's end", offset=end, expected="end of data",
                          found=f"{len(buf) - end} more bytes")
    return frame


@dataclass(slots=True)
class FrameSplitter:
    """Cuts a byte stream (a DTU's TCP connection) into frames, whatever the chunking.

    ``feed`` returns the frames completed by the new bytes, and a :class:`Garbage` record for
    each run of bytes skipped to find them: bytes before a ``68`` other than its ``FE`` preamble, and
    a ``68`` that did not start a valid frame (wrong end byte or checksum: the search resumes at
    the next byte, so a frame hiding behind a false start is still found). Bytes that may still
    begin a frame are kept until more arrive. A false ``68`` is recognised at once when its address
    is not BCD; one followed by 7 BCD-looking bytes (about 1 in 700 random cases) holds the stream
    back until the length its L byte announces has arrived, at most 268 bytes.
    """

    address_bytes: int = ADDRESS_BYTES
    _buf: bytes = b""
    _base: int = 0
    """Stream offset of ``_buf[0]``."""
    _skipped: bytearray = field(default_factory=bytearray)
    _skipped_at: int = 0
    _skipped_reason: str = ""

    @property
    def pending(self) -> int:
        """Bytes held back, waiting for the rest of a frame."""
        return len(self._buf)

    def _skip(self, at: int, data: bytes, reason: str) -> None:
        if not data:
            return
        if not self._skipped:
            self._skipped_at, self._skipped_reason = self._base + at, reason
        self._skipped += data

    def _flush(self, out: list[Frame | Garbage]) -> None:
        if self._skipped:
            out.append(Garbage(self._skipped_at, bytes(self._skipped), self._skipped_reason))
            self._skipped = bytearray()

    def feed(self, data: bytes) -> list[Frame | Garbage]:
        buf = self._buf + data if self._buf else bytes(data)
        out: list[Frame | Garbage] = []
        pos = 0
        header = 4 + self.address_bytes
        while True:
            start = buf.find(START, pos)
            if start < 0:
                # Keep trailing FE bytes: they may be the preamble of a frame still to come.
                keep = len(buf)
                while keep > pos and buf[keep - 1] == PREAMBLE:
                    keep -= 1
                self._skip(pos, buf[pos:keep], "no 68 frame start")
                pos = keep
                break
            lead = start
            while lead > pos and buf[lead - 1] == PREAMBLE:
                lead -= 1
            self._skip(pos, buf[pos:lead], "no 68 frame start")
            # A 68 whose address is not BCD cannot start a frame: skip it now rather than wait for
            # the length its false L byte would announce (which could hold real frames back).
            if len(buf) - start >= 2 + self.address_bytes:
                try:
                    decode_address(buf, start + 2, self.address_bytes)
                except DecodeError as exc:
                    self._skip(lead, buf[lead:start + 1], f"false frame start: {exc}")
                    pos = start + 1
                    continue
            if len(buf) - start < header:
                pos = lead
                break
            end = start + frame_length(buf[start + header - 1], self.address_bytes)
            if len(buf) < end:
                pos = lead
                break
            try:
                frame = parse_at(buf, start, self.address_bytes)
            except DecodeError as exc:
                self._skip(lead, buf[lead:start + 1], f"false frame start: {exc}")
                pos = start + 1
                continue
            self._flush(out)
            out.append(frame)
            pos = end
        self._flush(out)
        self._buf = buf[pos:]
        self._base += pos
        return out
