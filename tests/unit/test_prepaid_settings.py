"""``[core.prepaid]`` from the environment reaches the hub: the core prices with the tariff book in the
database (a database without one refuses to start), and what charging may emit decides which routes
it needs."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest

from core.billing import TariffCategory
from hub.app import Hub, Role, check_configuration
from hub.errors import ConfigError
from hub.routing.loader import RouteErrors
from hub.settings import load_settings
from hub.tariffs import current_book

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith("GASHUB_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no config/gashub.toml here
    (tmp_path / "routes").mkdir()
    (tmp_path / "routes" / "r.toml").write_text(
        '[[route]]\nname = "readings"\nfrom = "meter.reading"\nto = "core:record_reading"\n')
    monkeypatch.setenv("GASHUB_CORE__PREPAID__ENABLED", "true")
    monkeypatch.setenv("GASHUB_CORE__PREPAID__LOW_BALANCE_YUAN", "30.00")
    # The reading rules' own events off: what is left to route is what charging emits.
    monkeypatch.setenv("GASHUB_CORE__READINGS__RAISE_ALARMS", "false")
    monkeypatch.setenv("GASHUB_CORE__READINGS__NOTIFY", "[]")
    monkeypatch.setenv("GASHUB_CORE__READINGS__FLAG_EVENTS", "false")
    monkeypatch.setenv("GASHUB_ROUTES_DIR", str(tmp_path / "routes"))
    monkeypatch.setenv("GASHUB_MAPPINGS_DIR", str(REPO / "mappings"))
    return monkeypatch


async def test_prepaid_charging_needs_the_tariffs_and_routes_for_what_it_emits(env: pytest.MonkeyPatch,
                                                                              tmp_path: Path) -> None:
    s = load_settings(billing={"tariffs_file": tmp_path / "no-such-tariffs.toml", "daily_at": None})
    assert (s.core.prepaid.enabled, s.core.prepaid.low_balance_yuan) == (True, Decimal("30.00"))
    assert any("no tariff file" in str(p) for p in check_configuration(s))

    s = load_settings(billing={"tariffs_file": REPO / "config" / "tariffs.toml", "daily_at": None})
    with pytest.raises(RouteErrors) as info:
        Hub.build(s)
    assert sorted(str(p).split("'")[1] for p in info.value.problems) == ["notification.requested", "valve.command"]

    env.setenv("GASHUB_CORE__PREPAID__NOTIFY", "false")
    env.setenv("GASHUB_CORE__PREPAID__CLOSE_VALVE", "false")
    hub = Hub.build(load_settings(billing={"tariffs_file": REPO / "config" / "tariffs.toml", "daily_at": None}))
    try:
        (route,) = hub.routes
        assert route.core_handler is not None
        assert route.core_handler.emits == ()
    finally:
        await hub.db.aclose()


async def test_prepaid_charging_prices_with_the_book_in_the_database(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The core reads the book from the database batch by batch: a database without tariffs (and no
    file to seed it from) refuses to start; with the shipped file, starting seeds it."""
    env.setenv("GASHUB_CORE__PREPAID__NOTIFY", "false")
    env.setenv("GASHUB_CORE__PREPAID__CLOSE_VALVE", "false")
    url = f"sqlite+aiosqlite:///{tmp_path}/prepaid.db"
    hub = Hub.build(load_settings(database_url=url, billing={"tariffs_file": tmp_path / "none.toml", "daily_at": None}))
    try:
        with pytest.raises(ConfigError, match="the database has no tariffs"):
            await hub.start(Role.WORKER)
    finally:
        await hub.stop()
    hub = Hub.build(load_settings(database_url=url, billing={"tariffs_file": REPO / "config" / "tariffs.toml",
                                                             "daily_at": None}))
    try:
        await hub.start(Role.WORKER)
        assert [v.version for v in (await current_book(hub.db)).of(TariffCategory.RESIDENTIAL)] == ["RES-2025"]
    finally:
        await hub.stop()
