"""The envelope's parser: one pass for good bodies, the same readable reasons for bad ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.envelope import Envelope
from hub.errors import MalformedMessage
from hub.mapping.converters import epoch_ms_to_iso


def test_a_good_body_parses_to_what_the_model_builds() -> None:
    env = Envelope(type="vendor.demo.reading", source="bench", subject="300000000001",
                   data={"devId": "300000000001", "ts": 1795752000000, "batt": {"mv": 3400}})
    parsed = Envelope.from_json(env.to_json())
    assert parsed == env
    assert parsed.correlation_id == env.id


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "body is not JSON"),
        (b"[1, 2]", "body is JSON list, expected an object (the envelope)"),
        (b'"text"', "body is JSON str, expected an object"),
        (orjson.dumps({"type": "x.y", "source": "s"}), "not a valid envelope: data: Field required"),
        (orjson.dumps({"type": "x.y", "source": "s", "data": {}, "extra": 1}), "extra: Extra inputs"),
        (orjson.dumps({"type": "x.y", "source": "s", "data": {}, "version": "many"}), "version:"),
        (orjson.dumps({"type": "x.y", "source": "s", "data": {}, "time": "2026-11-27T12:00:00"}), "time:"),
    ],
)
def test_a_bad_body_gets_a_readable_reason(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedMessage) as caught:
        Envelope.from_json(body)
    assert reason in str(caught.value)


_ZONES = ["Asia/Shanghai", "UTC", "Europe/London", "America/New_York"]


@given(st.integers(min_value=-62_000_000_000_000, max_value=253_000_000_000_000), st.sampled_from(_ZONES))
def test_epoch_milliseconds_convert_as_a_calendar_would(ms: int, tz: str) -> None:
    """The converter against the plain definition: epoch + the milliseconds, seen in the zone."""
    moment = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)).astimezone(ZoneInfo(tz))
    expected = moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds")
    assert epoch_ms_to_iso(ms, tz=tz) == expected
