"""CJ/T 188 (户用计量仪表数据传输技术条件, 2004 and 2018 editions): frames, messages, meter-model profiles.

``frame`` cuts bytes into link frames and back (and splits a TCP stream); ``messages`` reads what a
frame means; ``profiles`` holds what differs per meter model; ``reading`` turns metering data into
the canonical ``meter.reading``. Bad input raises :class:`DecodeError` and nothing else.
"""

from connectors.meters.cjt188.errors import DecodeError, EncodeError
from connectors.meters.cjt188.frame import Frame, FrameSplitter, Garbage, decode_frame, encode_frame
from connectors.meters.cjt188.messages import (
    STANDARD,
    AddressReply,
    ClockData,
    Dialect,
    DiOrder,
    ErrorReply,
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
    decode_message,
    encode_message,
)
from connectors.meters.cjt188.profiles import MeterProfile, MeterProfiles, StatusBits, load_meter_profiles
from connectors.meters.cjt188.reading import MeterReport, meter_report, reading_data

__all__ = [
    "STANDARD", "AddressReply", "ClockData", "DecodeError", "DiOrder", "Dialect", "EncodeError", "ErrorReply",
    "Frame", "FrameSplitter", "Garbage", "Message", "MeterClock", "MeterProfile", "MeterProfiles", "MeterReport",
    "MeteringData", "ReadAddress", "ReadData", "Reply", "Request", "StatusBits", "ValveAction", "ValveControl",
    "Volume", "WriteAddress", "WriteClock", "WriteReply", "decode_frame", "decode_message", "encode_frame",
    "encode_message", "load_meter_profiles", "meter_report", "reading_data",
]
