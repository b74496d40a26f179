"""CJ/T 188 messages: what a frame's control code, DI and payload mean.

A link :class:`~connectors.meters.cjt188.frame.Frame` becomes one of the message classes below
(``decode_message``) and back (``encode_message``). Every message carries the meter type and address
of its frame and, where the frame has one, the SER byte the meter echoes (it pairs a reply with its
request). Messages the hub acts on have their own class (metering data, clock, valve control,
address read and write, write and error replies); any other DI still decodes, as a generic
:class:`Request` or :class:`Reply` with its payload.

The DI byte order differs between meters (``90 1F`` in most 2004-edition meters, ``1F 90`` in 2018
ones and many older ones): the :class:`Dialect` names the order to send, and the decoder reads both.
A DI that only one of the two orders makes a defined DI is read that way; where both orders are
defined DIs (the 2018 edition's ``D200``–``D4FF`` history blocks contain byte-swapped pairs such as
``D2D3``/``D3D2``, contrary to the usual "no DI collides with its swap") the dialect's order decides.
The encoder refuses an undefined DI whose swap is a defined one, as a meter could not tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Final

from connectors.meters.cjt188.bcd import decode_digits, decode_int, encode_int
from connectors.meters.cjt188.errors import DecodeError, EncodeError
from connectors.meters.cjt188.frame import ADDRESS_BYTES, Frame, decode_address, encode_address

GAS: Final = 0x30
"""Meter type of a gas meter (``30``–``39`` are all gas)."""

# Functions (D5..D0 of the control code; a reply sets D7, an error reply D7 and D6).
READ_DATA: Final = 0x01
READ_ADDRESS: Final = 0x03
WRITE_DATA: Final = 0x04
READ_KEY_VERSION: Final = 0x09
WRITE_ADDRESS: Final = 0x15
SET_REGISTER: Final = 0x16
REPLY: Final = 0x80
ERROR: Final = 0x40

# Data identifiers (as printed: ``901F``).
DI_METERING: Final = 0x901F
DI_CLOCK: Final = 0x907F
DI_ADDRESS: Final = 0x810A
DI_WRITE_CLOCK: Final = 0xA015
DI_VALVE: Final = 0xA017
DI_WRITE_ADDRESS: Final = 0xA018

KNOWN_DIS: Final = frozenset(
    [DI_METERING, DI_CLOCK, DI_ADDRESS, *range(0xD120, 0xD12C), *range(0x8102, 0x8106), *range(0xA010, 0xA01A),
     *range(0xA101, 0xA108), *range(0xD200, 0xD500)]
)
"""The DIs meters.md lists (2004 and 2018 editions): the decoder's reference for the byte order."""

UNIT_IN_M3: Final = {
    0x29: Decimal("0.001"), 0x2A: Decimal("0.01"), 0x2B: Decimal("0.1"),
    0x2C: Decimal(1), 0x2D: Decimal(10), 0x2E: Decimal(100),
}
"""Volume unit bytes: ``29`` L, ``2A`` L×10, ``2B`` L×100, ``2C`` m³, ``2D`` m³×10, ``2E`` m³×100."""
M3: Final = 0x2C

_CENT = Decimal("0.01")
_MAX_VOLUME = Decimal("999999.99")


class DiOrder(StrEnum):
    """How a meter puts the two DI bytes on the wire."""

    HIGH_FIRST = "high_first"
    """``90 1F``: the 2004 edition as usually implemented."""
    LOW_FIRST = "low_first"
    """``1F 90``: the 2018 edition, and many 2004-era meters."""


class ValveAction(StrEnum):
    OPEN = "open"
    CLOSE = "close"


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between meter models on the wire (a profile's codec part)."""

    di_order: DiOrder = DiOrder.HIGH_FIRST
    valve_code: int = WRITE_DATA
    """Function of valve control: ``04`` in the standard, ``2A`` (reply ``AA``) in some dialects."""
    valve_open: int = 0x55
    valve_close: int = 0x99
    address_bytes: int = ADDRESS_BYTES


STANDARD = Dialect()


@dataclass(frozen=True, slots=True)
class Volume:
    """A BCD volume field: ``value`` with 2 decimals in the unit the ``unit`` byte names."""

    value: Decimal
    unit: int = M3

    def m3(self) -> Decimal:
        """The volume in m³; a ``DecodeError`` for a unit byte that is not a volume unit."""
        factor = UNIT_IN_M3.get(self.unit)
        if factor is None:
            raise DecodeError("not a volume unit", expected="29..2E", found=f"{self.unit:02X}")
        return self.value * factor


@dataclass(frozen=True, slots=True)
class MeterClock:
    """The meter's clock as sent (``ss mm hh DD MM YY CC``), possibly unset (all zero)."""

    second: int
    minute: int
    hour: int
    day: int
    month: int
    year: int

    def to_datetime(self, tz: tzinfo) -> datetime | None:
        """The clock as a time in ``tz`` (meters keep local time), or ``None`` when it is no valid time."""
        try:
            return datetime(self.year, self.month, self.day, self.hour, self.minute, self.second, tzinfo=tz)
        except ValueError:
            return None

    @classmethod
    def from_datetime(cls, moment: datetime) -> MeterClock:
        return cls(moment.second, moment.minute, moment.hour, moment.day, moment.month, moment.year)


@dataclass(frozen=True, slots=True)
class Message:
    meter_type: int
    address: str


@dataclass(frozen=True, slots=True)
class ReadData(Message):
    """Read one DI (``901F`` metering data, ``907F`` clock, ``D120`` a month's volume…)."""

    di: int
    ser: int


@dataclass(frozen=True, slots=True)
class ReadAddress(Message):
    """Ask a meter its address (usually to the wildcard address, one meter on the bus)."""

    ser: int


@dataclass(frozen=True, slots=True)
class ValveControl(Message):
    ser: int
    action: ValveAction


@dataclass(frozen=True, slots=True)
class WriteClock(Message):
    ser: int
    clock: MeterClock


@dataclass(frozen=True, slots=True)
class WriteAddress(Message):
    ser: int
    new_address: str


@dataclass(frozen=True, slots=True)
class Request(Message):
    """Any other request: a function, a DI, SER and the payload as bytes."""

    function: int
    di: int
    ser: int
    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class MeteringData(Message):
    """The ``901F`` reply: current and settlement-day volume, the meter's clock and status ST."""

    ser: int
    current: Volume
    settlement: Volume
    clock: MeterClock
    status: int
    """ST0 | ST1 << 8: ST0 (first on the wire) is the low byte; the profile's masks apply to this word."""
    extra: bytes = b""
    """Bytes after ST that some meters add (kept, not interpreted)."""


@dataclass(frozen=True, slots=True)
class ClockData(Message):
    """The ``907F`` reply."""

    ser: int
    clock: MeterClock


@dataclass(frozen=True, slots=True)
class AddressReply(Message):
    """The ``810A`` reply: the address is the frame's own."""

    ser: int


@dataclass(frozen=True, slots=True)
class WriteReply(Message):
    """The meter's answer to a write (valve control, clock, address, any ``04``/``15``/``16``):
    DI, SER and a status of 0, 1 or 2 bytes."""

    function: int
    di: int
    ser: int
    status: bytes = b"\x00"


@dataclass(frozen=True, slots=True)
class Reply(Message):
    """Any other read reply: DI, SER and the payload as bytes."""

    function: int
    di: int
    ser: int
    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class ErrorReply(Message):
    """The meter refused ``function``. The data is the status alone, or DI, SER and the status."""

    function: int
    status: bytes
    di: int | None = None
    ser: int | None = None


def _di_bytes(di: int, order: DiOrder) -> bytes:
    if not 0 <= di <= 0xFFFF:
        raise EncodeError(f"DI {di!r} is not two bytes")
    swapped = ((di & 0xFF) << 8) | (di >> 8)
    if di not in KNOWN_DIS and swapped in KNOWN_DIS:
        raise EncodeError(f"DI {di:04X} is the byte swap of the defined DI {swapped:04X}: "
                          "a meter cannot tell them apart")
    return di.to_bytes(2, "big" if order is DiOrder.HIGH_FIRST else "little")


def _read_di(data: bytes, order: DiOrder, offset: int) -> int:
    high = (data[0] << 8) | data[1]
    low = (data[1] << 8) | data[0]
    high_known, low_known = high in KNOWN_DIS, low in KNOWN_DIS
    if high_known and not low_known:
        return high
    if low_known and not high_known:
        return low
    return high if order is DiOrder.HIGH_FIRST else low


def _byte(value: int, what: str) -> int:
    if not 0 <= value <= 0xFF:
        raise EncodeError(f"{what} {value!r} is not one byte")
    return value


def _volume_bytes(volume: Volume) -> bytes:
    try:
        cents = volume.value.quantize(_CENT)
    except InvalidOperation:
        raise EncodeError(f"volume {volume.value!r} is not a number") from None
    if cents != volume.value or not 0 <= cents <= _MAX_VOLUME:
        raise EncodeError(f"volume {volume.value} does not fit 4 BCD bytes with 2 decimals")
    return encode_int(int(cents * 100), 4) + bytes((_byte(volume.unit, "unit"),))


def _clock_bytes(clock: MeterClock) -> bytes:
    return (encode_int(clock.second, 1) + encode_int(clock.minute, 1) + encode_int(clock.hour, 1)
            + encode_int(clock.day, 1) + encode_int(clock.month, 1) + encode_int(clock.year, 2))


def _read_volume(data: bytes, at: int, offset: int) -> Volume:
    return Volume(Decimal(decode_int(data[at:at + 4], offset=offset + at)).scaleb(-2), data[at + 4])


def _read_clock(data: bytes, at: int, offset: int) -> MeterClock:
    digits = data[at:at + 7].hex()  # ss mm hh DD MM YY CC, each byte high digit first
    if not digits.isdigit():
        decode_digits(data[at:at + 7], offset=offset + at)  # raises, naming the byte
    return MeterClock(int(digits[0:2]), int(digits[2:4]), int(digits[4:6]), int(digits[6:8]), int(digits[8:10]),
                      int(digits[12:14] + digits[10:12]))


def _read_address(data: bytes, at: int, width: int) -> str:
    try:
        return decode_address(data, 3, width)
    except DecodeError as exc:
        raise DecodeError(exc.reason, offset=at + (exc.offset or 0), expected=exc.expected, found=exc.found) from None


def _body(msg: Message, dialect: Dialect) -> tuple[int, bytes]:
    """The control code and data field of a message."""
    o = dialect.di_order
    match msg:
        case ReadData(di=di, ser=ser):
            return READ_DATA, _di_bytes(di, o) + bytes((_byte(ser, "SER"),))
        case ReadAddress(ser=ser):
            return READ_ADDRESS, _di_bytes(DI_ADDRESS, o) + bytes((_byte(ser, "SER"),))
        case ValveControl(ser=ser, action=action):
            code = dialect.valve_open if action is ValveAction.OPEN else dialect.valve_close
            return dialect.valve_code, _di_bytes(DI_VALVE, o) + bytes((_byte(ser, "SER"), code))
        case WriteClock(ser=ser, clock=clock):
            return WRITE_DATA, _di_bytes(DI_WRITE_CLOCK, o) + bytes((_byte(ser, "SER"),)) + _clock_bytes(clock)
        case WriteAddress(ser=ser, new_address=new):
            new_bytes = encode_address(new, dialect.address_bytes)
            return WRITE_ADDRESS, _di_bytes(DI_WRITE_ADDRESS, o) + bytes((_byte(ser, "SER"),)) + new_bytes
        case Request(function=f, di=di, ser=ser, payload=payload):
            return _byte(f, "function") & 0x3F, _di_bytes(di, o) + bytes((_byte(ser, "SER"),)) + payload
        case MeteringData(ser=ser, current=cur, settlement=st, clock=clock, status=status, extra=extra):
            if not 0 <= status <= 0xFFFF:
                raise EncodeError(f"status {status!r} is not two bytes")
            return (READ_DATA | REPLY, _di_bytes(DI_METERING, o) + bytes((_byte(ser, "SER"),)) + _volume_bytes(cur)
                    + _volume_bytes(st) + _clock_bytes(clock) + status.to_bytes(2, "little") + extra)
        case ClockData(ser=ser, clock=clock):
            return READ_DATA | REPLY, _di_bytes(DI_CLOCK, o) + bytes((_byte(ser, "SER"),)) + _clock_bytes(clock)
        case AddressReply(ser=ser):
            return READ_ADDRESS | REPLY, _di_bytes(DI_ADDRESS, o) + bytes((_byte(ser, "SER"),))
        case WriteReply(function=f, di=di, ser=ser, status=status):
            if len(status) > 2:
                raise EncodeError("a write reply's status is 0, 1 or 2 bytes")
            return (_byte(f, "function") & 0x3F) | REPLY, _di_bytes(di, o) + bytes((_byte(ser, "SER"),)) + status
        case Reply(function=f, di=di, ser=ser, payload=payload):
            return (_byte(f, "function") & 0x3F) | REPLY, _di_bytes(di, o) + bytes((_byte(ser, "SER"),)) + payload
        case ErrorReply(function=f, status=status, di=di, ser=ser):
            if not 1 <= len(status) <= 2:
                raise EncodeError("an error reply's status is 1 or 2 bytes")
            head = b"" if di is None or ser is None else _di_bytes(di, o) + bytes((_byte(ser, "SER"),))
            return (_byte(f, "function") & 0x3F) | REPLY | ERROR, head + status
    raise EncodeError(f"not a CJ/T 188 message: {type(msg).__name__}")


def encode_message(msg: Message, dialect: Dialect = STANDARD) -> Frame:
    """The frame of a message in this dialect (DI order, valve control code)."""
    control, data = _body(msg, dialect)
    _byte(msg.meter_type, "meter type")
    return Frame(msg.meter_type, msg.address, control, data)


def decode_message(frame: Frame, dialect: Dialect = STANDARD) -> Message:
    """What a frame means. Raises ``DecodeError`` (with the offset in the frame from ``68``) for a
    data field that does not fit its function and DI."""
    t, a, c, data = frame.meter_type, frame.address, frame.control, frame.data
    at = 4 + dialect.address_bytes  # where the data field starts in the frame, for error offsets
    n = len(data)
    code = c & 0x3F
    if c & ERROR:
        if n in (1, 2):
            return ErrorReply(t, a, code, data)
        if n in (4, 5):
            return ErrorReply(t, a, code, data[3:], _read_di(data, dialect.di_order, at), data[2])
        raise DecodeError("error reply of the wrong length", offset=at - 1,
                          expected="L = 1, 2 (status) or 4, 5 (DI SER status)", found=f"L = {n}")
    if n < 3:
        raise DecodeError("data field too short for DI and SER", offset=at - 1, expected="L >= 3",
                          found=f"L = {n}")
    di = _read_di(data, dialect.di_order, at)
    ser = data[2]
    rest = data[3:]
    if c & REPLY:
        if code == READ_DATA and di == DI_METERING:
            if n < 22:
                raise DecodeError("901F metering data too short", offset=at - 1, expected="L >= 22 (0x16)",
                                  found=f"L = {n}")
            return MeteringData(t, a, ser, _read_volume(data, 3, at), _read_volume(data, 8, at),
                                _read_clock(data, 13, at), data[20] | data[21] << 8, data[22:])
        if code == READ_DATA and di == DI_CLOCK and n == 10:
            return ClockData(t, a, ser, _read_clock(data, 3, at))
        if code == READ_ADDRESS and di == DI_ADDRESS and n == 3:
            return AddressReply(t, a, ser)
        if code in (WRITE_DATA, WRITE_ADDRESS, SET_REGISTER, dialect.valve_code) and n <= 5:
            return WriteReply(t, a, code, di, ser, rest)
        return Reply(t, a, code, di, ser, rest)
    if code == READ_DATA and n == 3:
        return ReadData(t, a, di, ser)
    if code == READ_ADDRESS and di == DI_ADDRESS and n == 3:
        return ReadAddress(t, a, ser)
    if code == dialect.valve_code and di == DI_VALVE:
        if n != 4 or rest[0] not in (dialect.valve_open, dialect.valve_close):
            raise DecodeError("valve control payload", offset=at + 3,
                              expected=f"one byte {dialect.valve_open:02X} (open) or {dialect.valve_close:02X} (close)",
                              found=rest.hex(" ").upper() or "nothing")
        return ValveControl(t, a, ser, ValveAction.OPEN if rest[0] == dialect.valve_open else ValveAction.CLOSE)
    if code == WRITE_DATA and di == DI_WRITE_CLOCK and n == 10:
        return WriteClock(t, a, ser, _read_clock(data, 3, at))
    if code == WRITE_ADDRESS and di == DI_WRITE_ADDRESS and n == 3 + dialect.address_bytes:
        return WriteAddress(t, a, ser, _read_address(data, at, dialect.address_bytes))
    return Request(t, a, code, di, ser, rest)
