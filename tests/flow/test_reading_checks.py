"""The daily reading checks (stale IoT meters, zero use, prolonged estimation) over a real database,
SQLite and PostgreSQL: what they find, that each finding is recorded once with its work-order
request, and that running them again writes nothing new; ``gashub readings check`` and the hub's
daily job."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from ulid import ULID

from core.accounts import Privacy
from core.db.tables import outbox, reading, reading_exception
from core.db.tables_billing import bill
from core.reading_checks import run_reading_checks
from core.readings import ReadingsSettings, RuleId, ValidationSettings
from hub import cli
from hub.app import Hub
from hub.migrations import upgrade
from hub.settings import load_settings
from tests.flow.test_readings_db import DAY, T0, account_with_meters, privacy

__all__ = ["privacy"]  # the fixture, shared with test_readings_db
NOW = T0 + 5 * DAY
SETTINGS = ReadingsSettings(request_work_orders=True)  # as with issue 4's route for work_order.requested


async def readings(eng: AsyncEngine, meter_id: str, points: list[tuple[datetime, str]], source: str = "ctwing",
                   quality: str = "valid") -> None:
    async with eng.begin() as conn:
        await conn.execute(insert(reading), [
            {"id": str(ULID()), "meter_id": meter_id, "read_at": at, "volume_m3": Decimal(v), "source": source,
             "quality": quality, "message_id": f"seed-{ULID()}"} for at, v in points])


async def bills(eng: AsyncEngine, account_id: str, meter_id: str, qualities: list[str]) -> None:
    """Monthly bills from January 2026, in order, of the given qualities."""
    rows = []
    for n, quality in enumerate(qualities):
        start, end = date(2026, n + 1, 1), date(2026, n + 2, 1)
        rows.append({"id": str(ULID()), "account_id": account_id, "meter_id": meter_id, "period_start": start,
                     "period_end": end, "reading_start_m3": Decimal(10 * n), "reading_end_m3": Decimal(10 * n + 10),
                     "volume_m3": Decimal(10), "total": Decimal("30.00"), "net_total": Decimal("27.52"),
                     "tax_total": Decimal("2.48"), "cumulative_before": Decimal(10 * n),
                     "cumulative_after": Decimal(10 * n + 10), "category": "residential", "status": "issued",
                     "created_at": T0, "quality": quality})
    async with eng.begin() as conn:
        await conn.execute(insert(bill), rows)


async def check(eng: AsyncEngine, now: datetime = NOW, settings: ReadingsSettings = SETTINGS) -> dict[str, int]:
    async with eng.begin() as conn:
        return (await run_reading_checks(conn, settings=settings, now=now)).recorded


async def exceptions(eng: AsyncEngine) -> list[Any]:
    async with eng.connect() as conn:
        return list((await conn.execute(select(reading_exception).order_by(reading_exception.c.id))).all())


async def orders(eng: AsyncEngine) -> list[dict[str, Any]]:
    async with eng.connect() as conn:
        rows = await conn.execute(select(outbox.c.type, outbox.c.data).order_by(outbox.c.seq))
        return [orjson.loads(data) for type_, data in rows if type_ == "work_order.requested"]


async def test_the_checks_find_each_case_once(engine: AsyncEngine, privacy: Privacy) -> None:
    silent = await account_with_meters(engine, privacy, ("SILENT", "open"))
    await account_with_meters(engine, privacy, ("CHATTY", "open"), ("MANUAL", "open"))
    idle = await account_with_meters(engine, privacy, ("IDLE", "open"))
    await account_with_meters(engine, privacy, ("ONCE", "open"), ("SHUT", "closed"), ("YOUNG", "open"))
    est = await account_with_meters(engine, privacy, ("EST", "open"))
    est1 = await account_with_meters(engine, privacy, ("EST1", "open"))
    # Last heard 73 h before NOW over the link: stale (the limit is 72 h). CHATTY was heard 71 h ago.
    await readings(engine, "SILENT", [(NOW - 73 * timedelta(hours=1), "10.000")])
    await readings(engine, "CHATTY", [(NOW - 71 * timedelta(hours=1), "10.000")])
    await readings(engine, "MANUAL", [(NOW - 60 * DAY, "10.000")], source="manual")  # read by hand: never stale
    # 299 → 300 between 41 and 40 days ago, then nothing: idle since NOW − 40 days (limit 30).
    await readings(engine, "IDLE", [(NOW - 41 * DAY, "299.000"), (NOW - 40 * DAY, "300.000"),
                                    (NOW - DAY, "300.000")])
    await readings(engine, "ONCE", [(NOW - 40 * DAY, "50.000")], source="manual")  # nothing confirms it
    await readings(engine, "SHUT", [(NOW - 40 * DAY, "7.000"), (NOW - DAY, "7.000")], source="manual")
    # Idle for 29 days only, though the register has not moved for longer: a suspect read does not count.
    await readings(engine, "YOUNG", [(NOW - 29 * DAY, "5.000"), (NOW - DAY, "5.000")], source="manual")
    await readings(engine, "YOUNG", [(NOW - 35 * DAY, "5.000")], source="manual", quality="suspect")
    await readings(engine, "YOUNG", [(NOW - 36 * DAY, "4.000")], source="manual")
    await readings(engine, "EST", [(NOW - DAY, "40.000")], source="manual")
    await readings(engine, "EST1", [(NOW - DAY, "40.000")], source="manual")
    await bills(engine, est, "EST", ["actual", "estimated", "estimated"])  # two in a row
    await bills(engine, est1, "EST1", ["estimated", "actual", "estimated"])  # one since the last actual

    assert await check(engine) == {"stale": 1, "zero_use": 1, "prolonged_estimation": 1}
    rows = await exceptions(engine)
    day = "20260607"  # NOW is 7 June, 00:00 in Shanghai
    assert [(r.id, r.kind, r.rules, r.meter_id, r.account_id, r.severity, r.status, r.volume_m3) for r in rows] == [
        (f"prolonged_estimation-{est}-{day}", "check", "prolonged_estimation", "EST", est, "warning", "open", None),
        (f"stale-SILENT-{day}", "check", "stale", "SILENT", silent, "warning", "open", None),
        (f"zero_use-{idle}-{day}", "check", "zero_use", "IDLE", idle, "warning", "open", None),
    ]
    stale = orjson.loads(rows[1].findings)[0]
    assert (stale["action"], stale["work_order"]) == ("open_work_order", "communication")
    assert "silent for 73.00 h" in stale["message"]
    assert "no use for 40.00 days" in orjson.loads(rows[2].findings)[0]["message"]
    assert "2 estimated bills in a row" in orjson.loads(rows[0].findings)[0]["message"]
    sent = await orders(engine)
    assert sorted((o["kind"], o["rule"], o["meter_id"], o["account_id"]) for o in sent) == [
        ("actual_read", "prolonged_estimation", "EST", est),
        ("communication", "stale", "SILENT", silent),
        ("zero_use_check", "zero_use", "IDLE", idle),
    ]
    assert all(o["reading_id"] is None for o in sent)

    # The same day again: nothing new. The next day, what is still open is left alone, and what
    # became true overnight is new: CHATTY has been silent 95 h, YOUNG idle 30 days.
    assert await check(engine) == {"stale": 0, "zero_use": 0, "prolonged_estimation": 0}
    assert await check(engine, NOW + DAY) == {"stale": 1, "zero_use": 1, "prolonged_estimation": 0}
    assert {r.meter_id for r in await exceptions(engine)} == {"EST", "SILENT", "IDLE", "CHATTY", "YOUNG"}
    assert (len(await exceptions(engine)), len(await orders(engine))) == (5, 5)
    assert await check(engine, NOW + DAY) == {"stale": 0, "zero_use": 0, "prolonged_estimation": 0}

    # Once resolved, a finding that is still true is found again, once a day at most: SILENT's (of
    # 7 June) at once, CHATTY's (of today, 8 June) tomorrow.
    async with engine.begin() as conn:
        await conn.execute(update(reading_exception).where(reading_exception.c.rules == "stale")
                           .values(status="resolved"))
    assert await check(engine, NOW + DAY + 2 * timedelta(hours=1)) == {"stale": 1, "zero_use": 0,
                                                                       "prolonged_estimation": 0}
    assert await check(engine, NOW + 2 * DAY) == {"stale": 1, "zero_use": 0, "prolonged_estimation": 0}
    assert sorted(r.id for r in await exceptions(engine) if r.status == "open" and r.rules == "stale") == [
        "stale-CHATTY-20260609", "stale-SILENT-20260608"]
    assert len(await orders(engine)) == 7


async def test_each_check_follows_the_settings(engine: AsyncEngine, privacy: Privacy) -> None:
    await account_with_meters(engine, privacy, ("SILENT", "open"))
    await readings(engine, "SILENT", [(NOW - 100 * timedelta(hours=1), "10.000")])
    patient = ReadingsSettings(rules=ValidationSettings(stale_after=timedelta(hours=120)), request_work_orders=True)
    assert (await check(engine, settings=patient))["stale"] == 0
    off = ReadingsSettings(rules=ValidationSettings(disabled_rules=frozenset({RuleId.STALE})), request_work_orders=True)
    assert (await check(engine, settings=off))["stale"] == 0
    quiet = ReadingsSettings()  # the default until a route takes work_order.requested
    assert (await check(engine, settings=quiet))["stale"] == 1
    assert await orders(engine) == []


async def test_cli_runs_the_checks_once_a_day(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str], privacy: Privacy) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/checks.db"
    await asyncio.to_thread(upgrade, url)
    eng = create_async_engine(url)
    try:
        await account_with_meters(eng, privacy, ("SILENT", "open"))
        await readings(eng, "SILENT", [(datetime.now(UTC) - 5 * DAY, "10.000")])
    finally:
        await eng.dispose()
    monkeypatch.setenv("GASHUB_DATABASE_URL", url)
    assert await asyncio.to_thread(cli.main, ["readings", "check"]) == 0
    out = capsys.readouterr().out
    assert "1 new exceptions" in out
    assert "stale: 1 found, 1 new" in out
    assert "work_order.requested" not in out  # off by default
    assert await asyncio.to_thread(cli.main, ["readings", "check"]) == 0
    assert "stale: 1 found, 0 new" in capsys.readouterr().out
    eng = create_async_engine(url)
    try:
        async with eng.connect() as conn:
            assert await conn.scalar(select(func.count()).select_from(reading_exception)) == 1
    finally:
        await eng.dispose()


def test_the_hub_schedules_the_daily_checks(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path}/h.db"
    vendor = {"vendor": {"kind": "vendor_push", "token": "t"}}
    from core.privacy import generate_key

    keys = {"keys": {"k1": generate_key()}}
    hub = Hub.build(load_settings(database_url=db, connectors=vendor, core=keys))
    jobs = {job["name"]: job for job in hub.scheduler.jobs()}
    assert str(jobs["reading-checks"]["next_run"]).endswith("03:00:00+08:00")
    off = Hub.build(load_settings(database_url=db, connectors=vendor,
                                  core={**keys, "readings": {"daily_check_at": None}}))
    assert "reading-checks" not in {job["name"] for job in off.scheduler.jobs()}
