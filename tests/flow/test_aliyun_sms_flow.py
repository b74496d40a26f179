"""Aliyun SMS through the whole hub, on both stacks (embedded; RabbitMQ + PostgreSQL): notifications
go out as signed SendSms calls to the simulator, its delivery receipts and the users' replies come back
over HTTP as Aliyun pushes them, and a rating reply becomes a satisfaction record."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from connectors.aliyun_sms.simulator import SIM_KEY_ID, SIM_KEY_SECRET, AliyunSmsSimulator
from core.accounts import open_account
from core.api import Role, create_user
from core.catalogue.messages import NotificationDelivered
from core.db.tables import notification_status
from core.db.tables_sms import satisfaction, sms_reply
from core.db.tables_workorders import work_order
from core.handlers.notifications import record_notification_delivery
from core.messages import Event, Incoming
from core.outbox import emit
from hub.store.tables import hop, message
from tests.flow.conftest import VENDOR_TOKEN, Stack, eventually
from tests.flow.test_accounts_db import ALICE, BOB, HOME

TOKEN = "callback-token-0123"
PASSWORD = "correct horse battery staple"
REPLIES = """
[[route]]
name = "sms-replies"
from = "sms.replied"
to = "core:record_sms_reply"
retry = { max_attempts = 3, backoff = ["100ms"] }
"""


@pytest.fixture
async def aliyun() -> AsyncIterator[AliyunSmsSimulator]:
    sim = AliyunSmsSimulator()
    await sim.start()
    yield sim
    await sim.aclose()


async def _hub(stack: Stack, sim: AliyunSmsSimulator, **sms: Any) -> Any:
    """The hub with notifications routed to the connector ``aliyun`` (kind ``aliyun_sms``)."""
    (stack.routes_dir / "replies.toml").write_text(REPLIES)
    routes = stack.routes_dir / "test.toml"
    routes.write_text(routes.read_text().replace('to = "sms:send"', 'to = "aliyun:send"'))
    settings = {"kind": "aliyun_sms", "endpoint": sim.url, "access_key_id": SIM_KEY_ID,
                "access_key_secret": SIM_KEY_SECRET, "callback_token": TOKEN, "quiet_hours": None, **sms}
    return await stack.start_hub(connectors={
        "vendor": {"kind": "vendor_push", "token": VENDOR_TOKEN},
        "sms": {"kind": "http_sms", "base_url": stack.sms.url},
        "aliyun": settings,
        "valves": {"kind": "valve_http", "base_url": stack.valves.url},
    })


async def _notify(hub: Any, nid: str, *, kind: str = "outage", safety: bool = False,
                  phone: str = "13812345678") -> None:
    data = {"notification_id": nid, "kind": kind, "phone": phone, "safety": safety, "params": {"area": "越城区"}}
    async with hub.db.begin() as conn:
        await emit(conn, [(Event("notification.requested", data), None)])


async def _status(hub: Any, nid: str) -> Any:
    async with hub.db.read() as conn:
        return (await conn.execute(select(notification_status).where(
            notification_status.c.notification_id == nid))).first()


async def _count(hub: Any, table: Any, *where: Any) -> int:
    async with hub.db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table).where(*where)) or 0)


def _url(stack: Stack, hub: Any, what: str, token: str = TOKEN) -> str:
    return f"{stack.base_url(hub)}/partners/aliyun-sms/{what}?token={token}"


async def test_a_notification_is_sent_and_its_receipt_marks_it_delivered_once(
        stack: Stack, aliyun: AliyunSmsSimulator) -> None:
    hub = await _hub(stack, aliyun)
    await _notify(hub, "outage-1")

    async def accepted() -> bool:
        row = await _status(hub, "outage-1")
        return row is not None and row.status == "accepted"
    await eventually(accepted, what="the SendSms acceptance")
    [sent] = aliyun.sent
    assert (sent.out_id, sent.template_code, sent.phone) == ("outage-1", "SMS_OUTAGE", "13812345678")
    assert (await _status(hub, "outage-1")).provider_ref == sent.biz_id

    for _ in range(2):  # Aliyun pushes again when it did not hear us: the second is a duplicate
        status, answer = await aliyun.post_report(_url(stack, hub, "report"))
        assert (status, answer["code"]) == (200, 0)

    async def delivered() -> bool:
        row = await _status(hub, "outage-1")
        return row is not None and row.status == "delivered"
    await eventually(delivered, what="the delivery receipt")
    assert await _count(hub, message, message.c.type == "notification.delivered", message.c.source == "aliyun") == 1
    assert len(aliyun.sent) == 1


async def test_a_failed_receipt_records_aliyuns_error(stack: Stack, aliyun: AliyunSmsSimulator) -> None:
    hub = await _hub(stack, aliyun)
    await _notify(hub, "outage-2")
    await eventually(lambda: _sent(aliyun, 1), what="the SMS")
    status, _ = await aliyun.post_report(_url(stack, hub, "report"), success=False, err_code="MK:0001")

    async def failed() -> bool:
        row = await _status(hub, "outage-2")
        return row is not None and row.status == "failed"
    await eventually(failed, what="the failed receipt")
    assert status == 200
    assert "MK:0001" in (await _status(hub, "outage-2")).error


async def _sent(sim: AliyunSmsSimulator, n: int) -> bool:
    return len(sim.sent) >= n


async def test_quiet_hours_hold_an_ordinary_message_until_they_end_and_let_safety_through(
        stack: Stack, aliyun: AliyunSmsSimulator) -> None:
    routes = (stack.routes_dir / "test.toml").read_text()
    (stack.routes_dir / "test.toml").write_text(
        routes.replace('retry = { max_attempts = 4, backoff = ["200ms", "400ms", "800ms"] }',
                       'retry = { max_attempts = 20, backoff = ["500ms"] }'))
    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    quiet = {"start": (now - timedelta(hours=1)).time().isoformat(),
             "end": (now + timedelta(seconds=10)).time().isoformat()}
    hub = await _hub(stack, aliyun, quiet_hours=quiet)
    await _notify(hub, "outage-3")
    await _notify(hub, "alarm-3", kind="alarm", safety=True, phone="13900001111")
    await eventually(lambda: _sent(aliyun, 1), what="the safety SMS")
    assert [s.out_id for s in aliyun.sent] == ["alarm-3"]  # the outage notice waits for the end of quiet hours
    await eventually(lambda: _sent(aliyun, 2), timeout=30, what="the held SMS, after the quiet hours")
    assert [s.out_id for s in aliyun.sent] == ["alarm-3", "outage-3"]
    async with hub.db.read() as conn:
        held = (await conn.execute(select(hop.c.attempt, hop.c.outcome, hop.c.error)
                                   .where(hop.c.route == "sms-send", hop.c.error.like("%quiet hours%")))).all()
    assert held, "the hold was audited"
    assert all(h.outcome == "retry" for h in held)


async def _city(hub: Any) -> str:
    assert hub.privacy is not None
    async with hub.db.begin() as conn:
        view = await open_account(conn, hub.privacy, "req-sms-1", ALICE, HOME, "residential", "postpaid",
                                  opened_at=datetime(2025, 6, 1, tzinfo=UTC))
        at = datetime(2026, 3, 1, 8, tzinfo=UTC)
        await conn.execute(insert(work_order), [
            {"id": f"WO{n}", "source": f"alarm:A{n}", "category": "leak", "priority": "urgent", "status": "handled",
             "flags": "", "account_id": view.account_id, "opened_at": at + timedelta(hours=n),
             "due_at": at + timedelta(hours=n + 4), "clock_until": "on_site", "updated_at": at,
             "correlation_id": f"c{n}"} for n in (1, 2)])
    return str(view.account_id)


async def test_a_rating_reply_becomes_one_satisfaction_record_for_the_latest_work_order(
        stack: Stack, aliyun: AliyunSmsSimulator) -> None:
    hub = await _hub(stack, aliyun)
    account_id = await _city(hub)
    await _notify(hub, "visit-1", kind="reminder")
    await eventually(lambda: _sent(aliyun, 1), what="the SMS asking for a rating")
    url = _url(stack, hub, "upstream")
    for _ in range(2):  # pushed twice: one record
        status, answer = await aliyun.post_upstream(url, "13812345678", "５", sequence_id=777)
        assert (status, answer["code"]) == (200, 0)
    status, _ = await aliyun.post_upstream(url, "13812345678", "师傅很好，谢谢", sequence_id=778)
    assert status == 200
    status, _ = await aliyun.post_upstream(url, "13700000000", "3", sequence_id=779)  # not a customer

    async def stored() -> bool:
        return await _count(hub, sms_reply) == 3
    await eventually(stored, what="the three replies")
    async with hub.db.read() as conn:
        records = [dict(r._mapping) for r in await conn.execute(select(satisfaction).order_by(satisfaction.c.id))]
        replies = {r.id: r for r in await conn.execute(select(sms_reply))}
    assert [(r["id"], r["rating"], r["account_id"], r["work_order_id"], r["notification_id"]) for r in records] == [
        ("aliyun-777", 5, account_id, "WO2", "visit-1"), ("aliyun-779", 3, None, None, None)]
    assert replies["aliyun-778"].rating is None
    assert replies["aliyun-778"].account_id == account_id
    assert "谢谢" not in replies["aliyun-778"].content_enc  # stored encrypted
    assert hub.privacy.cipher.decrypt(replies["aliyun-778"].content_enc,
                                      context="core_sms_reply.content:aliyun-778") == "师傅很好，谢谢"
    assert await _count(hub, message, message.c.type == "sms.replied") == 3


@pytest.mark.parametrize(("what", "body", "token", "status"), [
    ("report", b'{"not": "an array"}', TOKEN, 400),
    ("upstream", b"not json", TOKEN, 400),
    ("upstream", b"[]", "wrong", 401),
    ("report", b"[" + b'"x",' * 100_000 + b'"x"]', TOKEN, 413),
])
async def test_pushes_aliyun_would_not_send_are_refused_and_audited(
        stack: Stack, aliyun: AliyunSmsSimulator, what: str, body: bytes, token: str, status: int) -> None:
    hub = await _hub(stack, aliyun)
    got, _ = await aliyun.push(_url(stack, hub, what, token), body)
    assert got == status
    async with hub.db.read() as conn:
        rejected = (await conn.execute(select(hop.c.route, hop.c.error).where(hop.c.outcome == "rejected"))).all()
    assert len(rejected) == 1
    assert rejected[0].route == "in:aliyun"
    assert "sha256" in rejected[0].error


async def test_an_unreadable_item_is_audited_and_the_rest_of_the_push_taken(
        stack: Stack, aliyun: AliyunSmsSimulator) -> None:
    hub = await _hub(stack, aliyun)
    good = aliyun.upstream_item("13812345678", "4", sequence_id=900)
    bad = {**aliyun.upstream_item("13812345678", "4", sequence_id=901), "send_time": "yesterday"}
    status, _ = await aliyun.push(_url(stack, hub, "upstream"), [bad, good])
    assert status == 200
    await eventually(lambda: _has(hub, 1), what="the readable reply")
    await asyncio.sleep(0.2)
    assert await _count(hub, sms_reply) == 1
    async with hub.db.read() as conn:
        [error] = (await conn.scalars(select(hop.c.error).where(hop.c.outcome == "rejected"))).all()
    assert "send_time" in error
    assert "13812345678" not in error  # the audit names the field, not the number


async def _has(hub: Any, n: int) -> bool:
    return await _count(hub, sms_reply) >= n


async def test_a_late_acceptance_never_undoes_a_receipt(engine: AsyncEngine) -> None:
    """Aliyun's receipt may overtake the send's own reply: ``accepted`` after ``delivered`` changes nothing."""
    at = datetime(2026, 3, 2, 2, tzinfo=UTC)

    def item(n: int, status: str) -> Incoming:
        data = NotificationDelivered.model_validate({"notification_id": "n-1", "status": status, "provider_ref": "B1",
                                                     "at": at + timedelta(seconds=n)})
        return Incoming(f"m{n}", "notification.delivered", None, f"m{n}", data)

    for n, status in enumerate(["delivered", "accepted"]):
        async with engine.begin() as conn:
            await record_notification_delivery(conn, [item(n, status)])
    async with engine.connect() as conn:
        row = (await conn.execute(select(notification_status))).one()
    assert (row.status, row.updated_at) == ("delivered", at)
    async with engine.begin() as conn:  # the same acceptance redelivered later: still nothing
        await record_notification_delivery(conn, [item(2, "accepted")])
    async with engine.connect() as conn:
        assert (await conn.scalar(select(notification_status.c.status))) == "delivered"


async def test_an_announcement_reaches_the_district_by_sms_and_a_rating_is_read_back_through_the_api(
        stack: Stack, aliyun: AliyunSmsSimulator) -> None:
    hub = await _hub(stack, aliyun)
    account_id = await _city(hub)
    async with hub.db.begin() as conn:
        await open_account(conn, hub.privacy, "req-sms-2", BOB, HOME, "residential", "postpaid",
                           opened_at=datetime(2025, 6, 1, tzinfo=UTC))
    await create_user(hub.db.engine, "dispatcher1", PASSWORD, Role.DISPATCHER)
    base = stack.base_url(hub)
    body = {"request_id": "outage-2026-11-28", "district": "yuecheng", "params": {"area": "解放北路"}}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/api/v1/auth/token",
                             json={"username": "dispatcher1", "password": PASSWORD}) as resp:
            headers = {"Authorization": f"Bearer {(await resp.json())['access_token']}"}
        for expected in (201, 200):  # the dispatcher's retry sends nothing more
            async with http.post(f"{base}/api/v1/announcements", json=body, headers=headers) as resp:
                assert resp.status == expected, await resp.text()
                assert (await resp.json())["recipients"] == 2
        await eventually(lambda: _sent(aliyun, 2), what="the outage notices")
        assert sorted(s.phone for s in aliyun.sent) == ["13812345678", "13900001111"]
        assert {s.template_code for s in aliyun.sent} == {"SMS_OUTAGE"}
        status, _ = await aliyun.post_upstream(_url(stack, hub, "upstream"), "13812345678", "4", sequence_id=4242)
        assert status == 200

        async def rated() -> bool:
            async with http.get(f"{base}/api/v1/satisfaction", headers=headers) as resp:
                return bool((await resp.json())["items"])
        await eventually(rated, what="the rating through the API")
        async with http.get(f"{base}/api/v1/satisfaction?account_id={account_id}", headers=headers) as resp:
            [record] = (await resp.json())["items"]
    assert (record["rating"], record["work_order_id"]) == (4, "WO2")
    assert record["notification_id"].startswith("ann-")
    await asyncio.sleep(0.3)
    assert len(aliyun.sent) == 2
