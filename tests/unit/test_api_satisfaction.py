"""/api/v1/satisfaction (read-only satisfaction records) and /api/v1/announcements (a notice to the
accounts of a district through the outbox, once per request id): the matrix on every role, filters and
paging, idempotency, no phone in the audit, 503 without the personal-data keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import insert, select

from core.accounts import Privacy
from core.api import Role
from core.api.permissions import Action, Resource, allowed
from core.db.tables import outbox
from core.db.tables_sms import satisfaction
from core.privacy import KeyRing, generate_key
from tests.unit.test_api_accounts import ALICE, BOB, HOME, Api, _build

KEQIAO = {"address": "绍兴市柯桥区笛扬路1号", "district": "keqiao", "lat": 30.08, "lon": 120.49}
T = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    privacy = Privacy.from_ring(KeyRing.from_settings({"k1": generate_key()}, current="k1"))
    async for built in _build(tmp_path, privacy):
        yield built


def announce(request_id: str = "ann-req-0001", **changes: Any) -> dict[str, Any]:
    return {"request_id": request_id, "district": "yuecheng", "kind": "outage",
            "params": {"area": "解放北路", "start": "11-28 09:00", "end": "11-28 15:00"}, **changes}


async def _notifications(api: Api) -> list[dict[str, Any]]:
    async with api.engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.data, outbox.c.correlation_id, outbox.c.subject)
                                   .where(outbox.c.type == "notification.requested"))).all()
    return [{**orjson.loads(r.data), "correlation_id": r.correlation_id, "subject": r.subject} for r in rows]


async def test_every_role_follows_the_matrix(api: Api) -> None:
    first = True
    for role in Role:
        resp = await api.client.get("/api/v1/satisfaction", headers=api.auth[role])
        assert resp.status == (200 if allowed(role, Resource.SATISFACTION, Action.READ) else 403), role
        resp = await api.client.post("/api/v1/announcements", json=announce(), headers=api.auth[role])
        if allowed(role, Resource.ANNOUNCEMENTS, Action.WRITE):
            assert resp.status == (201 if first else 200), (role, await resp.text())
            first = False
        else:
            assert resp.status == 403, role
    assert not first, "some role may announce"
    assert not allowed(Role.FIELD_ENGINEER, Resource.ANNOUNCEMENTS, Action.WRITE)
    assert not any(allowed(r, Resource.SATISFACTION, Action.WRITE) for r in Role), "records are the core's alone"


async def test_an_announcement_tells_each_active_account_of_the_district_once(api: Api) -> None:
    alice = await api.open()
    await api.open(customer=BOB, premises=KEQIAO)  # another district: not told
    resp = await api.client.post("/api/v1/announcements", json=announce(), headers=api.auth[Role.DISPATCHER])
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert (body["recipients"], body["district"], body["kind"], body["created_by"]) == (1, "yuecheng", "outage",
                                                                                         "dispatcher")
    [note] = await _notifications(api)
    assert note["phone"] == ALICE["phone"]
    assert note["account_id"] == note["subject"] == alice["account_id"]
    assert (note["kind"], note["params"]["area"], note["safety"]) == ("outage", "解放北路", False)
    assert note["notification_id"] == f"ann-{body['id']}-{alice['account_id']}"
    assert note["correlation_id"] == body["id"]
    again = await api.client.post("/api/v1/announcements", json=announce(params={"area": "changed"}),
                                  headers=api.auth[Role.ADMIN])
    assert again.status == 200
    assert (await again.json())["id"] == body["id"]
    assert len(await _notifications(api)) == 1
    audit = [a for a in await api.audit() if a["path"] == "/api/v1/announcements"]
    assert [a["status"] for a in audit] == [201, 200]
    assert "1 notifications" in audit[0]["detail"]
    assert all("13812345678" not in str(a) for a in audit)
    assert HOME["district"] == "yuecheng"


@pytest.mark.parametrize(("change", "field"), [
    ({"district": "nowhere"}, "district"), ({"kind": "spam"}, "kind"), ({"request_id": "x"}, "request_id"),
    ({"extra": 1}, "extra"),
])
async def test_a_bad_announcement_is_a_400_naming_the_field(api: Api, change: dict[str, Any], field: str) -> None:
    resp = await api.client.post("/api/v1/announcements", json=announce(**change), headers=api.auth[Role.ADMIN])
    assert resp.status == 400
    assert (await resp.json())["parameter"] == field
    assert await _notifications(api) == []


async def test_announcements_need_the_personal_data_keys(tmp_path: Path) -> None:
    async for api in _build(tmp_path, None):
        resp = await api.client.post("/api/v1/announcements", json=announce(), headers=api.auth[Role.ADMIN])
        assert resp.status == 503
        assert await _notifications(api) == []


async def test_satisfaction_records_are_listed_newest_first_filtered_and_paged(api: Api) -> None:
    async with api.engine.begin() as conn:
        await conn.execute(insert(satisfaction), [
            {"id": f"aliyun-{n}", "rating": 1 + n % 5, "channel": "sms", "account_id": "A1" if n % 2 else "A2",
             "work_order_id": f"WO{n}", "notification_id": None, "received_at": T + timedelta(minutes=n),
             "recorded_at": T + timedelta(minutes=n)} for n in range(7)])
    headers = api.auth[Role.CUSTOMER_SERVICE]
    resp = await api.client.get("/api/v1/satisfaction?limit=3", headers=headers)
    page = await resp.json()
    assert [i["id"] for i in page["items"]] == ["aliyun-6", "aliyun-5", "aliyun-4"]
    seen = [i["id"] for i in page["items"]]
    while page["next_cursor"]:
        resp = await api.client.get(f"/api/v1/satisfaction?limit=3&cursor={page['next_cursor']}", headers=headers)
        page = await resp.json()
        seen += [i["id"] for i in page["items"]]
    assert seen == [f"aliyun-{n}" for n in range(6, -1, -1)]
    resp = await api.client.get("/api/v1/satisfaction?account_id=A1&rating=2", headers=headers)
    assert [(i["id"], i["rating"], i["work_order_id"]) for i in (await resp.json())["items"]] == [
        ("aliyun-1", 2, "WO1")]
    resp = await api.client.get("/api/v1/satisfaction?rating=6", headers=headers)
    assert resp.status == 400
