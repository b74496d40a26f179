"""Concurrent partner pushes are written in groups (one transaction, one publish) and still each
stored once, answered once and audited once; a faulty push fails alone (both transports)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

import hub.connectors.inbound as inbound_module
from hub.connectors.contract import ReceiveResult
from hub.envelope import Envelope
from hub.store.tables import hop, inbox, message
from tests.flow.conftest import Stack, eventually


def _push(name: str, n: int) -> Envelope:
    doc = {"event": "reading", "devId": f"3000000{n:05d}", "seq": n, "ts": 1_795_752_000_000 + n, "totalLitres": n}
    return Envelope(type="vendor.demo.reading", source=name, subject=doc["devId"], data=doc)


async def _scalar(hub: Any, stmt: Any) -> Any:
    async with hub.db.read() as conn:
        return await conn.scalar(stmt)


async def test_three_hundred_concurrent_pushes_of_a_hundred_messages_are_stored_once_each(stack: Stack) -> None:
    hub = await stack.start_hub()
    context = hub.connectors["vendor"].context
    name = context.name
    groups_before = context.writer.groups
    # 100 partner messages, each sent three times (as a partner resending before it heard OK would).
    copies = [(n, _push(name, n)) for n in range(100) for _ in range(3)]
    results: list[ReceiveResult] = await asyncio.gather(
        *(context.receive(env, partner_key=f"k{n}") for n, env in copies))

    by_key: dict[int, list[ReceiveResult]] = {}
    for (n, _env), result in zip(copies, results, strict=True):
        by_key.setdefault(n, []).append(result)
    for n, answers in by_key.items():
        assert len({a.message_id for a in answers}) == 1, f"key k{n} got different message ids"
        assert sum(not a.duplicate for a in answers) == 1, f"key k{n}: {answers}"
    groups = context.writer.groups - groups_before
    assert groups < len(copies) / 2, f"{groups} groups for {len(copies)} concurrent pushes: not grouped"

    ids = {a.message_id for answers in by_key.values() for a in answers}
    assert await _scalar(hub, select(func.count()).select_from(inbox).where(inbox.c.source == name)) == 100

    async def all_marked() -> bool:  # marked published by the write lane right after the confirms
        return await _scalar(hub, select(func.count()).select_from(inbox).where(
            inbox.c.source == name, inbox.c.published_us.is_(None))) == 0

    await eventually(all_marked, what="every inbox entry marked published")
    assert await _scalar(hub, select(func.count()).select_from(message).where(message.c.id.in_(ids))) == 100
    assert await _scalar(hub, select(func.count()).select_from(hop).where(
        hop.c.route == f"in:{name}", hop.c.outcome == "received")) == 100

    async def routed_once() -> bool:  # each published message reaches its route once
        got = await _scalar(hub, select(func.count(func.distinct(hop.c.message_id))).where(
            hop.c.message_id.in_(ids), hop.c.route != f"in:{name}"))
        return bool(got == 100)

    await eventually(routed_once, what="every pushed message routed")
    assert await _scalar(hub, select(func.count()).select_from(hop).where(
        hop.c.message_id.in_(ids), hop.c.route != f"in:{name}")) == 100


async def test_a_faulty_push_fails_alone_and_the_rest_of_its_group_is_stored(
    stack: Stack, monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub = await stack.start_hub()
    context = hub.connectors["vendor"].context
    real_admit = inbound_module.inbox.admit_many

    async def admit_many(conn: Any, arrivals: Any, sealer: Any) -> Any:
        if any(a.partner_key == "poison" for a in arrivals):
            raise RuntimeError("this push cannot be stored")
        return await real_admit(conn, arrivals, sealer)

    monkeypatch.setattr(inbound_module.inbox, "admit_many", admit_many)
    envelopes = [(f"good{n}", _push(context.name, n)) for n in range(20)]
    envelopes.insert(7, ("poison", _push(context.name, 999)))
    outcomes = await asyncio.gather(*(context.receive(env, partner_key=key) for key, env in envelopes),
                                    return_exceptions=True)
    for (key, env), outcome in zip(envelopes, outcomes, strict=True):
        if key == "poison":
            assert isinstance(outcome, RuntimeError)
        else:
            assert isinstance(outcome, ReceiveResult), f"{key}: {outcome!r}"
            assert outcome.message_id == env.id
            assert not outcome.duplicate
    stored = await _scalar(hub, select(func.count()).select_from(message).where(
        message.c.id.in_([env.id for _, env in envelopes])))
    assert stored == 20
    assert await _scalar(hub, select(func.count()).select_from(inbox).where(inbox.c.partner_key == "poison")) == 0


async def test_refusals_at_the_door_are_grouped_and_each_audited(stack: Stack) -> None:
    hub = await stack.start_hub()
    context = hub.connectors["vendor"].context
    await asyncio.gather(*(context.reject(f"forged signature #{n}", body=b"x" * n, source="test")
                           for n in range(50)))
    rejected = await _scalar(hub, select(func.count()).select_from(hop).where(
        hop.c.route == f"in:{context.name}", hop.c.outcome == "rejected"))
    assert rejected == 50


class _HeldPublisher:
    """The writer's publisher, holding every publish until ``gate`` is set (then failing the held ones
    with ``fail_with`` when given)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.gate = asyncio.Event()
        self.held = 0
        self.published: list[str] = []
        self.fail_with: Exception | None = None

    async def publish(self, envelopes: Any, **options: Any) -> None:
        self.held += 1
        await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        self.published += [e.id for e in envelopes]
        await self.real.publish(envelopes, **options)


async def _held_writer(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any, _HeldPublisher]:
    """A hub whose vendor connector's inbound writer publishes through a ``_HeldPublisher``."""
    hub = await stack.start_hub()
    context = hub.connectors["vendor"].context
    held = _HeldPublisher(context.writer.publisher)
    monkeypatch.setattr(context.writer, "publisher", held)
    return hub, context, held


async def test_the_next_group_is_written_while_the_one_before_waits_for_its_confirm(
    stack: Stack, monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub, context, held = await _held_writer(stack, monkeypatch)
    first, second, copy = _push(context.name, 1), _push(context.name, 2), _push(context.name, 1)
    answer_first = asyncio.ensure_future(context.receive(first, partner_key="p1"))
    await eventually(lambda: held.held == 1, what="the first group stored and waiting for its confirm")
    answer_second = asyncio.ensure_future(context.receive(second, partner_key="p2"))
    # The same partner message again while its first copy waits: it must not be published twice.
    answer_copy = asyncio.ensure_future(context.receive(copy, partner_key="p1"))
    await eventually(lambda: held.held == 2, what="the second group written meanwhile")
    assert await _scalar(hub, select(func.count()).select_from(message).where(message.c.id == second.id)) == 1
    assert [a.done() for a in (answer_first, answer_second, answer_copy)] == [False] * 3  # no OK before a confirm

    held.gate.set()
    one, two, again = await asyncio.gather(answer_first, answer_second, answer_copy)
    assert (one.message_id, one.duplicate) == (first.id, False)
    assert (two.message_id, two.duplicate) == (second.id, False)
    assert (again.message_id, again.duplicate) == (first.id, True)
    assert sorted(held.published) == sorted([first.id, second.id])
    assert await _scalar(hub, select(func.count()).select_from(message).where(message.c.id == copy.id)) == 0

    await context.writer.aclose()  # the marks are written by the lane before it stops
    assert await _scalar(hub, select(func.count()).select_from(inbox).where(
        inbox.c.source == context.name, inbox.c.published_us.is_(None))) == 0
    resent = await context.receive(_push(context.name, 2), partner_key="p2")  # after its OK: a duplicate
    assert (resent.message_id, resent.duplicate) == (second.id, True)


async def test_a_copy_waiting_for_a_failed_first_copy_fails_with_it_and_is_published_when_sent_again(
    stack: Stack, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _hub, context, held = await _held_writer(stack, monkeypatch)
    first = _push(context.name, 1)
    answer_first = asyncio.ensure_future(context.receive(first, partner_key="p1"))
    await eventually(lambda: held.held == 1, what="the first copy waiting for its confirm")
    answer_copy = asyncio.ensure_future(context.receive(_push(context.name, 1), partner_key="p1"))
    await eventually(lambda: context.writer.groups == 2, what="the copy written (nothing new), waiting")
    held.fail_with = ConnectionError("the broker went away")
    held.gate.set()
    outcomes = await asyncio.gather(answer_first, answer_copy, return_exceptions=True)
    assert all(isinstance(o, ConnectionError) for o in outcomes), outcomes
    assert held.published == []

    held.fail_with = None
    again = await context.receive(_push(context.name, 1), partner_key="p1")  # the partner never heard OK
    assert (again.message_id, again.duplicate) == (first.id, False)  # the stored first copy, published now
    assert held.published == [first.id]
