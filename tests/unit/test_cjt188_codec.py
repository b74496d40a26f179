"""The CJ/T 188 codec: the vectors of meters.md byte for byte, round trips of every message kind in
both DI orders, and bad bytes (random, truncated, bit-flipped) that raise ``DecodeError`` and nothing else."""

from __future__ import annotations

import contextlib
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.meters.cjt188 import (
    STANDARD,
    AddressReply,
    ClockData,
    DecodeError,
    Dialect,
    DiOrder,
    EncodeError,
    ErrorReply,
    Frame,
    FrameSplitter,
    Garbage,
    Message,
    MeterClock,
    MeteringData,
    ReadAddress,
    ReadData,
    Reply,
    Request,
    ValveAction,
    ValveControl,
    Volume,
    WriteAddress,
    WriteClock,
    WriteReply,
    decode_frame,
    decode_message,
    encode_frame,
    encode_message,
)
from connectors.meters.cjt188.bcd import decode_digits, decode_int, encode_digits, encode_int
from connectors.meters.cjt188.messages import KNOWN_DIS

HIGH = Dialect(di_order=DiOrder.HIGH_FIRST)
LOW = Dialect(di_order=DiOrder.LOW_FIRST)
GAS_ADDR = "12345678901234"
WATER_ADDR = "00000000000012"

# (name, wire bytes as in meters.md, preamble count, message, dialect that encodes it)
VECTORS = [
    ("read 901F water 2004", "68 10 12 00 00 00 00 00 00 01 03 90 1F 00 3D 16", 0,
     ReadData(0x10, WATER_ADDR, 0x901F, 0), HIGH),
    ("broadcast read address", "FE FE FE FE 68 AA AA AA AA AA AA AA AA 03 03 81 0A 00 49 16", 4,
     ReadAddress(0xAA, "AAAAAAAAAAAAAA", 0), HIGH),
    ("read address reply", "FE FE FE 68 10 12 00 00 00 00 00 00 83 03 81 0A 00 9B 16", 3,
     AddressReply(0x10, WATER_ADDR, 0), HIGH),
    ("901F reply 1000.10 m3", "FE FE FE 68 10 12 00 00 00 00 00 00 81 16 90 1F 00 10 00 10 00 2C 10 00 10 00 2C "
     "00 00 00 00 00 00 00 00 FF 67 16", 3,
     MeteringData(0x10, WATER_ADDR, 0, Volume(Decimal("1000.10"), 0x2C), Volume(Decimal("1000.10"), 0x2C),
                  MeterClock(0, 0, 0, 0, 0, 0), 0xFF00), HIGH),
    ("gas read 901F 2004 order", "68 30 34 12 90 78 56 34 12 01 03 90 1F 01 36 16", 0,
     ReadData(0x30, GAS_ADDR, 0x901F, 1), HIGH),
    ("gas read 901F 2018 order", "68 30 34 12 90 78 56 34 12 01 03 1F 90 01 36 16", 0,
     ReadData(0x30, GAS_ADDR, 0x901F, 1), LOW),
    ("close valve 2018 order", "FE FE FE FE 68 30 34 12 90 78 56 34 12 04 04 17 A0 02 99 DC 16", 4,
     ValveControl(0x30, GAS_ADDR, 2, ValveAction.CLOSE), LOW),
    ("error reply to a read", "68 30 34 12 90 78 56 34 12 C1 01 01 45 16", 0,
     ErrorReply(0x30, GAS_ADDR, 0x01, b"\x01"), HIGH),
]


@pytest.mark.parametrize(("wire", "preamble", "message", "dialect"), [v[1:] for v in VECTORS],
                         ids=[v[0] for v in VECTORS])
def test_vectors_decode_and_encode_exactly(wire: str, preamble: int, message: Message, dialect: Dialect) -> None:
    raw = bytes.fromhex(wire)
    assert encode_frame(encode_message(message, dialect), preamble=preamble) == raw
    # The decoder reads either DI order whatever the dialect says.
    for any_dialect in (HIGH, LOW):
        assert decode_message(decode_frame(raw), any_dialect) == message


def test_both_di_orders_have_the_same_checksum_and_decode_alike() -> None:
    high, low = (encode_frame(encode_message(ReadData(0x30, GAS_ADDR, 0x901F, 1), d)) for d in (HIGH, LOW))
    assert high != low
    assert high[-2] == low[-2] == 0x36


def test_valve_open_and_the_2a_dialect() -> None:
    vendor = Dialect(valve_code=0x2A)
    frame = encode_message(ValveControl(0x30, GAS_ADDR, 7, ValveAction.OPEN), vendor)
    assert frame.control == 0x2A
    assert frame.data == bytes.fromhex("A0 17 07 55")
    reply = decode_message(Frame(0x30, GAS_ADDR, 0xAA, bytes.fromhex("A0 17 07 00")), vendor)
    assert reply == WriteReply(0x30, GAS_ADDR, 0x2A, 0xA017, 7, b"\x00")


@pytest.mark.parametrize("status", ["00", "00 00"])
def test_write_reply_accepts_one_or_two_status_bytes(status: str) -> None:
    data = bytes.fromhex("17 A0 05 " + status)
    message = decode_message(Frame(0x30, GAS_ADDR, 0x84, data))
    assert message == WriteReply(0x30, GAS_ADDR, 0x04, 0xA017, 5, bytes.fromhex(status))


@pytest.mark.parametrize(("wire", "reason", "offset"), [
    ("68 30 34 12 90 78 56 34 12 01 03 90 1F 01 37 16", "checksum mismatch", 14),
    ("68 30 34 12 90 78 56 34 12 01 03 90 1F 01 36 17", "no end byte after the checksum", 15),
    ("68 30 34 12 90 78 56 34 12 01 03 90 1F 01 36", "frame truncated", 15),
    ("FE FE 67 30", "no frame start", 2),
    ("FE FE", "no frame", 2),
    ("68 30 3F 12 90 78 56 34 12 01 03 90 1F 01 41 16", "address byte is not BCD", 2),
    ("68 30 34 12 90 78 56 34 12 01 03 90 1F 01 36 16 00", "bytes after the frame's end", 16),
])
def test_decode_errors_say_where_and_what(wire: str, reason: str, offset: int) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_frame(bytes.fromhex(wire))
    assert caught.value.reason == reason
    assert caught.value.offset == offset
    assert f"offset {offset}" in str(caught.value)


def test_message_errors_name_the_field() -> None:
    with pytest.raises(DecodeError, match=r"valve control payload.*expected one byte 55 \(open\) or 99"):
        decode_message(Frame(0x30, GAS_ADDR, 0x04, bytes.fromhex("A0 17 01 12")))
    with pytest.raises(DecodeError, match="901F metering data too short"):
        decode_message(Frame(0x30, GAS_ADDR, 0x81, bytes.fromhex("90 1F 01 00")))
    with pytest.raises(DecodeError, match=r"not a BCD byte, at offset 14, expected .*, found 0A"):
        decode_message(Frame(0x30, GAS_ADDR, 0x81, bytes.fromhex("90 1F 01 0A 00 00 00 2C") + bytes(16)))
    with pytest.raises(DecodeError, match="data field too short"):
        decode_message(Frame(0x30, GAS_ADDR, 0x01, b"\x90"))


def test_encoder_refuses_what_the_wire_cannot_carry() -> None:
    with pytest.raises(EncodeError, match="byte swap of the defined DI 901F"):
        encode_message(ReadData(0x30, GAS_ADDR, 0x1F90, 1))
    with pytest.raises(EncodeError, match="does not fit 4 BCD bytes"):
        encode_message(MeteringData(0x30, GAS_ADDR, 1, Volume(Decimal("1000000")), Volume(Decimal(0)),
                                    MeterClock(0, 0, 0, 1, 1, 2026), 0))
    with pytest.raises(EncodeError, match="not 14 digits"):
        encode_frame(Frame(0x30, "1234", 0x01, b""))


def test_bcd_helpers() -> None:
    assert encode_digits(GAS_ADDR, 7) == bytes.fromhex("34 12 90 78 56 34 12")
    assert decode_digits(bytes.fromhex("34 12 90 78 56 34 12")) == GAS_ADDR
    assert decode_int(bytes.fromhex("10 00 10 00")) == 100010
    assert encode_int(100010, 4) == bytes.fromhex("10 00 10 00")
    with pytest.raises(DecodeError, match=r"not a BCD byte, at offset 6, expected .*, found 1A"):
        decode_int(bytes.fromhex("10 1A"), offset=5)
    with pytest.raises(EncodeError):
        encode_int(100, 1)
    with pytest.raises(EncodeError):
        encode_digits("12a4", 2)


def test_meter_clock_to_datetime() -> None:
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Asia/Shanghai")
    assert MeterClock(0, 0, 0, 0, 0, 0).to_datetime(tz) is None
    moment = MeterClock(5, 4, 3, 2, 1, 2026).to_datetime(tz)
    assert moment is not None
    assert moment.isoformat() == "2026-01-02T03:04:05+08:00"


# Round trips ----------------------------------------------------------------------------------

byte = st.integers(0, 0xFF)
ser = byte
meter_type = byte
address = st.lists(st.sampled_from([f"{n:02d}" for n in range(100)] + ["AA"]), min_size=7, max_size=7).map("".join)
dialects = st.builds(Dialect, di_order=st.sampled_from(DiOrder), valve_code=st.sampled_from([0x04, 0x2A]))
clock = st.builds(MeterClock, *(st.integers(0, 99) for _ in range(5)), st.integers(0, 9999))
volume = st.builds(Volume, st.integers(0, 99_999_999).map(lambda c: Decimal(c).scaleb(-2)), byte)
defined_di = st.sampled_from(sorted(KNOWN_DIS))
any_di = st.integers(0, 0xFFFF).filter(lambda d: d in KNOWN_DIS or ((d & 0xFF) << 8 | d >> 8) not in KNOWN_DIS)
di = st.one_of(defined_di, any_di)
payload = st.binary(max_size=40)


@st.composite
def messages(draw: st.DrawFn, dialect: Dialect) -> Message:
    t, a, s = draw(meter_type), draw(address), draw(ser)
    kind = draw(st.sampled_from(["read", "read_address", "valve", "write_clock", "write_address", "request",
                                 "metering", "clock", "address_reply", "write_reply", "reply", "error",
                                 "error_with_di"]))
    match kind:
        case "read":
            return ReadData(t, a, draw(di), s)
        case "read_address":
            return ReadAddress(t, a, s)
        case "valve":
            return ValveControl(t, a, s, draw(st.sampled_from(ValveAction)))
        case "write_clock":
            return WriteClock(t, a, s, draw(clock))
        case "write_address":
            return WriteAddress(t, a, s, draw(address))
        case "request":
            specific = (0x01, 0x03, 0x04, 0x15, dialect.valve_code)
            function = draw(st.integers(0, 0x3F).filter(lambda f: f not in specific))
            return Request(t, a, function, draw(di), s, draw(payload))
        case "metering":
            return MeteringData(t, a, s, draw(volume), draw(volume), draw(clock), draw(st.integers(0, 0xFFFF)),
                                draw(st.binary(max_size=8)))
        case "clock":
            return ClockData(t, a, s, draw(clock))
        case "address_reply":
            return AddressReply(t, a, s)
        case "write_reply":
            function = draw(st.sampled_from([0x04, 0x15, 0x16, dialect.valve_code]))
            return WriteReply(t, a, function, draw(di), s, draw(st.binary(max_size=2)))
        case "reply":
            function = draw(st.sampled_from([0x01, 0x09, 0x21]))
            return Reply(t, a, function, draw(di.filter(lambda d: d not in (0x901F, 0x907F))), s, draw(payload))
        case "error":
            return ErrorReply(t, a, draw(st.integers(0, 0x3F)), draw(st.binary(min_size=1, max_size=2)))
    return ErrorReply(t, a, draw(st.integers(0, 0x3F)), draw(st.binary(min_size=1, max_size=2)), draw(di), s)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), dialects, st.integers(0, 4))
def test_decode_of_encode_is_identity(data: st.DataObject, dialect: Dialect, preamble: int) -> None:
    message = data.draw(messages(dialect))
    wire = encode_frame(encode_message(message, dialect), preamble=preamble)
    assert decode_message(decode_frame(wire), dialect) == message


@settings(max_examples=200)
@given(st.integers(1, 7), st.data())
def test_other_address_widths_round_trip(width: int, data: st.DataObject) -> None:
    dialect = Dialect(address_bytes=width)
    addr = data.draw(st.lists(st.sampled_from([f"{n:02d}" for n in range(100)]), min_size=width,
                              max_size=width).map("".join))
    message = WriteAddress(0x30, addr, data.draw(ser), data.draw(st.sampled_from([addr, "0" * (2 * width)])))
    wire = encode_frame(encode_message(message, dialect), preamble=2, address_bytes=width)
    assert len(wire) == 2 + 6 + width + 3 + width
    assert decode_message(decode_frame(wire, address_bytes=width), dialect) == message
    frames = FrameSplitter(address_bytes=width).feed(b"\x00" + wire)
    assert isinstance(frames[-1], Frame)
    assert decode_message(frames[-1], dialect) == message


@given(st.sampled_from([0x901F, 0x907F, 0x810A, 0xA017, 0xD120, 0x8102]), ser)
def test_defined_dis_read_in_either_order_whatever_the_dialect(di_value: int, s: int) -> None:
    sent = encode_message(ReadData(0x30, GAS_ADDR, di_value, s), LOW)
    assert sent.data[:2] == di_value.to_bytes(2, "little")
    assert decode_message(sent, HIGH) == ReadData(0x30, GAS_ADDR, di_value, s)


def test_self_colliding_2018_dis_follow_the_dialect() -> None:
    # D2D3 and D3D2 are both 2018 history-block DIs: only the configured order can tell them apart.
    frame = encode_message(ReadData(0x30, GAS_ADDR, 0xD2D3, 1), LOW)
    assert frame.data[:2] == bytes.fromhex("D3 D2")
    assert decode_message(frame, LOW) == ReadData(0x30, GAS_ADDR, 0xD2D3, 1)
    assert decode_message(frame, HIGH) == ReadData(0x30, GAS_ADDR, 0xD3D2, 1)


# Bad bytes --------------------------------------------------------------------------------------

def _decode_all(raw: bytes, dialect: Dialect) -> Message:
    return decode_message(decode_frame(raw), dialect)


@settings(max_examples=1000)
@given(st.binary(max_size=80), dialects)
def test_random_bytes_raise_only_decode_error(raw: bytes, dialect: Dialect) -> None:
    with contextlib.suppress(DecodeError):
        _decode_all(raw, dialect)


@settings(max_examples=1000)
@given(meter_type, address, byte, st.binary(max_size=40), dialects)
def test_random_frames_decode_to_a_message_or_decode_error(t: int, a: str, c: int, data: bytes,
                                                           dialect: Dialect) -> None:
    try:
        message = decode_message(Frame(t, a, c, data), dialect)
    except DecodeError:
        return
    assert isinstance(message, Message)


@settings(max_examples=300)
@given(st.data(), dialects)
def test_every_truncation_and_every_bit_flip_is_a_decode_error(data: st.DataObject, dialect: Dialect) -> None:
    wire = encode_frame(encode_message(data.draw(messages(dialect)), dialect), preamble=data.draw(st.integers(0, 4)))
    for cut in range(len(wire)):
        with pytest.raises(DecodeError):
            decode_frame(wire[:cut])
    preamble = len(wire) - len(wire.lstrip(b"\xfe"))
    for at in range(preamble, len(wire)):  # a flipped FE in front is only a shorter preamble plus garbage
        for bit in range(8):
            flipped = bytearray(wire)
            flipped[at] ^= 1 << bit
            with pytest.raises(DecodeError):
                decode_frame(bytes(flipped))


# The stream splitter --------------------------------------------------------------------------

def _stream() -> tuple[bytes, list[Frame], int]:
    """Frames with preambles, garbage (including a false 68 start) between them; and the garbage length."""
    frames = [decode_frame(bytes.fromhex(v[1])) for v in VECTORS]
    bad_checksum = b"\xfe\x68\x30" + bytes.fromhex("34 12 90 78 56 34 12 01 03 90 1F 01 00 16")
    garbage = [b"", b"\x00\x13", b"\x68\x30\x99\x99", bad_checksum, b"junk", b"\xfe\xfe\x16", b"", b"\xfe\x68"]
    stream = bytearray()
    for frame, junk, n in zip(frames, garbage, range(len(frames)), strict=True):
        stream += junk + encode_frame(frame, preamble=n % 5)
    return bytes(stream), frames, sum(len(j) for j in garbage)


def _run(splitter: FrameSplitter, chunks: list[bytes]) -> tuple[list[Frame], list[Garbage]]:
    frames: list[Frame] = []
    junk: list[Garbage] = []
    for chunk in chunks:
        for item in splitter.feed(chunk):
            (frames if isinstance(item, Frame) else junk).append(item)  # type: ignore[arg-type]
    return frames, junk


def test_splitter_over_frames_cut_at_every_byte_boundary() -> None:
    stream, expected, garbage_bytes = _stream()
    for cut in range(len(stream) + 1):
        splitter = FrameSplitter()
        frames, junk = _run(splitter, [stream[:cut], stream[cut:]])
        assert frames == expected, f"cut at {cut}"
        assert sum(len(g.data) for g in junk) == garbage_bytes, f"cut at {cut}"
        assert splitter.pending == 0


def test_splitter_byte_by_byte_reports_where_garbage_was() -> None:
    stream, expected, _ = _stream()
    frames, junk = _run(FrameSplitter(), [stream[i:i + 1] for i in range(len(stream))])
    assert frames == expected
    for g in junk:
        assert stream[g.offset:g.offset + len(g.data)] == g.data
    assert any("false frame start" in g.reason for g in junk)
    assert any("checksum mismatch" in g.reason for g in junk)


@settings(max_examples=500)
@given(st.lists(st.binary(max_size=30), max_size=10))
def test_splitter_never_raises_on_random_chunks(chunks: list[bytes]) -> None:
    splitter = FrameSplitter()
    for chunk in chunks:
        for item in splitter.feed(chunk):
            assert isinstance(item, Frame | Garbage)
    assert splitter.pending <= 268


@settings(max_examples=200)
@given(st.data())
def test_splitter_finds_random_messages_between_random_junk(data: st.DataObject) -> None:
    dialect = data.draw(dialects)
    sent = data.draw(st.lists(messages(dialect), min_size=1, max_size=5))
    stream = bytearray()
    for message in sent:
        junk = data.draw(st.binary(max_size=6).filter(lambda b: 0x68 not in b))
        stream += junk + encode_frame(encode_message(message, dialect), preamble=data.draw(st.integers(0, 4)))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    chunks = [bytes(stream[a:b]) for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    frames, _ = _run(FrameSplitter(), chunks)
    assert [decode_message(f, dialect) for f in frames] == sent


def test_standard_dialect_is_the_2004_order() -> None:
    assert STANDARD.di_order is DiOrder.HIGH_FIRST
