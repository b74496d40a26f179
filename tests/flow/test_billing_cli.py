"""`gashub billing run` (with the tariff book in the database), the tariff file and the hub's daily
billing job."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from core.db.tables_billing import bill
from core.privacy import generate_key
from hub import cli
from hub.app import Hub, check_configuration
from hub.billing import load_tariffs, month_period
from hub.errors import ConfigError
from hub.migrations import upgrade
from hub.settings import load_settings
from tests.flow.test_billing_run import _build_city

REPO = Path(__file__).resolve().parents[2]
VENDOR = {"vendor": {"kind": "vendor_push", "token": "t"}}
KEYS = {"keys": {"k1": generate_key()}}


def test_month_period() -> None:
    assert month_period("2026-02") == (date(2026, 2, 1), date(2026, 3, 1))
    assert month_period("2026-12") == (date(2026, 12, 1), date(2027, 1, 1))
    assert month_period(None, today=date(2026, 1, 15)) == (date(2025, 12, 1), date(2026, 1, 1))
    assert month_period(None, today=date(2026, 11, 27)) == (date(2026, 10, 1), date(2026, 11, 1))
    with pytest.raises(ValueError, match="YYYY-MM"):
        month_period("October")


def test_the_shipped_tariffs_load() -> None:
    book = load_tariffs(REPO / "config" / "tariffs.toml")
    assert {str(v.category) for v in book.versions} == {"residential", "commercial", "industrial", "heating"}


@pytest.mark.parametrize(("text", "expected"), [
    ("[[versions]]\nversion = 'R'\ncategory = 'residential'\neffective_from = 2025-01-01\n"
     "thresholds_m3 = ['300', '200']\nprices = ['3', '3.6', '4.5']\n", "strictly rising"),
    ("[[versions]]\nversion = 'R'\ncategory = 'residential'\neffective_from = 2025-01-01\n"
     "thresholds_m3 = ['300']\nprices = ['3']\n", "need 2 prices"),
    ("versions = [", "not valid TOML"),
])
def test_a_broken_tariff_file_is_named_with_its_problem(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "tariffs.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected) as caught:
        load_tariffs(path)
    assert str(path) in str(caught.value)
    problems = check_configuration(load_settings(billing={"tariffs_file": path}, connectors=VENDOR))
    assert any(expected in str(p) for p in problems)


async def test_cli_bills_a_month_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/billing.db"
    await asyncio.to_thread(upgrade, url)
    eng = create_async_engine(url)
    try:
        async with eng.begin() as conn:
            await _build_city(conn)
    finally:
        await eng.dispose()
    monkeypatch.setenv("GASHUB_DATABASE_URL", url)
    assert await asyncio.to_thread(cli.main, ["tariffs", "import", str(REPO / "config" / "tariffs.toml")]) == 0
    assert await asyncio.to_thread(cli.main, ["billing", "run", "2026-02"]) == 0
    out = capsys.readouterr().out
    assert "period 2026-02-01..2026-03-01 (end exclusive): 5 accounts, 2 bills issued (505.00 yuan)" in out
    assert "skipped 2: no_closing_reading" in out  # A4, and A7's first meter
    assert "skipped 1: no_opening_reading" in out
    assert "bill.issued events are in the outbox" in out
    assert await asyncio.to_thread(cli.main, ["billing", "run", "2026-02"]) == 0
    assert "0 bills issued (0.00 yuan), 2 already billed" in capsys.readouterr().out
    assert await asyncio.to_thread(cli.main, ["billing", "run", "Feb"]) == 2
    assert "YYYY-MM" in capsys.readouterr().err
    eng = create_async_engine(url)
    try:
        async with eng.connect() as conn:
            assert await conn.scalar(select(func.count()).select_from(bill)) == 2
    finally:
        await eng.dispose()


def test_the_hub_schedules_the_daily_run(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path}/h.db"
    hub = Hub.build(load_settings(database_url=db, connectors=VENDOR, core=KEYS))
    jobs = {job["name"]: job for job in hub.scheduler.jobs()}
    assert str(jobs["billing"]["next_run"]).endswith("02:30:00+08:00")
    off = Hub.build(load_settings(database_url=db, billing={"daily_at": None}, connectors=VENDOR, core=KEYS))
    assert "billing" not in {job["name"] for job in off.scheduler.jobs()}


async def test_a_run_in_parallel_parts_bills_what_one_run_would(postgres_url: str) -> None:
    """Three processes, each a share of the accounts in its own transaction: the same bills as one run,
    and running it again bills nothing twice."""
    from hub.billing import bill_in_parallel, shares
    from hub.store.db import Database
    from tests.flow.conftest import fresh_postgres_database
    from tests.flow.test_billing_run import BOOK, FEB, MAR

    url, drop = await fresh_postgres_database(postgres_url)
    try:
        await asyncio.to_thread(upgrade, url)
        db = Database(url)
        try:
            async with db.begin() as conn:
                await _build_city(conn)
            parts = await shares(db, 3)
            assert len(parts) == 3
            assert parts[0][0] == ""
            assert parts[-1][1] is None
            seen: list[int] = []
            result = await bill_in_parallel(db, BOOK, FEB, MAR, workers=3, progress=seen.append)
            assert (result.accounts_seen, result.bills_issued) == (5, 2)
            assert sorted(s.account_id for s in result.skipped) == ["A3", "A4", "A7"]
            again = await bill_in_parallel(db, BOOK, FEB, MAR, workers=3)
            assert (again.bills_issued, again.already_billed) == (0, 2)
            async with db.read() as conn:
                billed = sorted((await conn.execute(select(bill.c.account_id))).scalars())
            assert billed == ["A1", "A2"]
        finally:
            await db.aclose()
    finally:
        await drop()
