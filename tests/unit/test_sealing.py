"""Stored bodies with personal data: sealed under the key, bound to their row, or redacted."""

from __future__ import annotations

import orjson
import pytest

from core.catalogue import CATALOGUE
from core.privacy import FieldCipher, KeyRing, generate_key
from hub.envelope import Envelope
from hub.store.sealing import REDACTED, SEALED, BodySealer, SealedBodyError

PHONE = "13812345678"


def notification() -> Envelope:
    return Envelope(type="notification.requested", source="test", data={
        "notification_id": "n1", "kind": "bill", "phone": PHONE, "params": {"amount": "12.00"}})


def reading() -> Envelope:
    return Envelope(type="meter.reading", source="test", data={
        "meter_id": "M1", "read_at": "2026-11-27T08:00:00+08:00", "volume_m3": "1.000", "source": "vendor"})


@pytest.fixture
def sealer() -> BodySealer:
    return BodySealer(CATALOGUE, FieldCipher(KeyRing.from_settings({"k1": generate_key()}, current="k1")))


def test_personal_bodies_are_sealed_and_open_again(sealer: BodySealer) -> None:
    env = notification()
    body = env.to_json()
    stored = sealer.seal("hub_message", env.id, body, env.type, env.version)
    assert stored.startswith(SEALED)
    assert PHONE.encode() not in stored
    assert sealer.open("hub_message", env.id, stored) == body
    with pytest.raises(SealedBodyError, match="does not open"):  # bound to its table and row
        sealer.open("hub_message", "another-id", stored)
    with pytest.raises(SealedBodyError, match="does not open"):
        sealer.open("hub_dead_letter", env.id, stored)
    tampered = stored[:-3] + (b"A" if stored[-3:-2] != b"A" else b"B") + stored[-2:]
    with pytest.raises(SealedBodyError):
        sealer.open("hub_message", env.id, tampered)


def test_bodies_without_personal_data_stay_as_they_are(sealer: BodySealer) -> None:
    env = reading()
    body = env.to_json()
    assert sealer.seal("hub_message", env.id, body, env.type, env.version) is body
    assert sealer.open("hub_message", env.id, body) == body


def test_without_a_key_personal_fields_are_redacted_for_good() -> None:
    sealer = BodySealer(CATALOGUE)
    env = notification()
    stored = sealer.seal("hub_message", env.id, env.to_json(), env.type, None)
    assert stored.startswith(REDACTED)
    assert PHONE.encode() not in stored
    assert orjson.loads(sealer.readable("hub_message", env.id, stored))["data"]["phone"] == "[redacted]"
    with pytest.raises(SealedBodyError, match="redacted"):
        sealer.open("hub_message", env.id, stored)
    # What must be sent again (the inbox) stays whole until it has gone, then is redacted.
    kept = sealer.seal_for_resend("hub_inbox", env.id, env.to_json(), env.type, env.version)
    assert kept == env.to_json()
    redacted = sealer.redact(kept, env.type, env.version)
    assert redacted is not None
    assert PHONE.encode() not in redacted


def test_a_sealed_body_needs_a_key_to_open(sealer: BodySealer) -> None:
    env = notification()
    stored = sealer.seal("hub_message", env.id, env.to_json(), env.type, env.version)
    keyless = BodySealer(CATALOGUE)
    with pytest.raises(SealedBodyError, match="GASHUB_CORE__KEYS__"):
        keyless.open("hub_message", env.id, stored)
    assert "sealed" in orjson.loads(keyless.readable("hub_message", env.id, stored))
