"""No personal data on disk in clear: with a key, dead letters are sealed and still replay; without
one, personal fields are redacted before anything is written, and a replay says why it cannot."""

from __future__ import annotations

from typing import Any

import aiohttp
from sqlalchemy import select

from hub.envelope import Envelope
from hub.store.tables import dead_letter, message
from tests.flow.conftest import OPS_TOKEN, Stack, eventually

AUTH = {"Authorization": f"Bearer {OPS_TOKEN}"}
PHONE = "13912345678"


async def _dead_letter(stack: Stack, **overrides: Any) -> tuple[Any, Any]:
    hub = await stack.start_hub(consumer={"max_batch": 50}, **overrides)
    stack.sms.down = True
    env = Envelope(type="notification.requested", source="test", data={
        "notification_id": "n-rest", "kind": "bill", "phone": PHONE})
    await hub.publisher.publish([env])

    async def dead() -> bool:
        async with hub.db.read() as conn:
            return (await conn.execute(select(dead_letter.c.id))).first() is not None
    await eventually(dead, what="the dead letter", timeout=20)
    async with hub.db.read() as conn:
        letter = (await conn.execute(select(dead_letter))).one()
        stored = (await conn.execute(select(message.c.body).where(message.c.id == env.id))).scalar_one()
    assert PHONE.encode() not in letter.body
    assert PHONE.encode() not in stored
    return hub, letter


async def test_sealed_dead_letters_replay_with_the_key(stack: Stack) -> None:
    hub, letter = await _dead_letter(stack)
    assert letter.body.startswith(b"gashub:sealed:1:")
    stack.sms.down = False
    async with aiohttp.ClientSession(headers=AUTH) as http:
        async with http.get(f"{stack.base_url(hub)}/ops/dead-letters") as resp:
            shown = (await resp.json())["items"][0]["body"]
        assert shown["data"]["phone"] == "139****5678"
        async with http.post(f"{stack.base_url(hub)}/ops/dead-letters/{letter.id}/replay") as resp:
            assert resp.status == 202, await resp.text()

    async def sent() -> bool:
        return [s["phone"] for s in stack.sms.sent] == [PHONE]
    await eventually(sent, what="the replayed SMS")


async def test_without_a_key_nothing_personal_is_written_and_replay_says_why(stack: Stack) -> None:
    hub, letter = await _dead_letter(stack, core={})
    assert letter.body.startswith(b"gashub:redacted:1:")
    async with aiohttp.ClientSession(headers=AUTH) as http:
        async with http.post(f"{stack.base_url(hub)}/ops/dead-letters/{letter.id}/replay") as resp:
            assert resp.status == 422
            assert "redacted" in (await resp.json())["detail"]
