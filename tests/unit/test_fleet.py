"""The meter fleet simulator: its layout, reproducible household use (peaks, seasons, days away), the
faults' status bits, the fault timetable's syntax and the valve routes it asks the hub for."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.demo.fleet import fleet_routes
from connectors.meters.cjt188 import load_meter_profiles
from connectors.meters.fleet import LEAK_M3H, TZ, Fault, MeterFleet, day_use, meter_id, parse_fault
from hub.routing.expr import compile_predicate
from hub.routing.loader import read_specs


def test_meters_are_spread_over_ctwing_and_several_per_dtu_bus() -> None:
    fleet = MeterFleet.plan(100, dtus=8, ctwing=30, seed=1)
    assert len(fleet.meters) == 100
    assert sorted(fleet.layout.devices.values()) == [meter_id(n) for n in range(30)]
    on_buses = [m for ids in fleet.layout.buses.values() for m in ids]
    assert sorted(on_buses) == [meter_id(n) for n in range(30, 100)]
    assert len(fleet.layout.buses) == 8
    assert all(len(ids) in (8, 9) for ids in fleet.layout.buses.values())  # 70 meters on 8 buses
    settings = fleet.dtu_settings(port=0)
    assert len(settings["meters"]) == 70
    assert {m["profile"] for m in settings["meters"]} == {"iot-alarm"}
    ctwing = fleet.ctwing_settings("http://127.0.0.1:1")
    assert [d["meter_id"] for d in ctwing["devices"]] == [meter_id(n) for n in range(30)]
    assert fleet.meters[meter_id(0)].via.startswith("ctwing:")
    assert fleet.meters[meter_id(99)].via.startswith("dtu:")


def test_the_same_seed_gives_the_same_fleet_and_the_same_use() -> None:
    a, b = MeterFleet.plan(20, dtus=2, seed=5), MeterFleet.plan(20, dtus=2, seed=5)
    other = MeterFleet.plan(20, dtus=2, seed=6)
    day = date(2026, 1, 15)
    uses = [day_use(m, day) for m in a.meters.values()]
    assert uses == [day_use(m, day) for m in b.meters.values()]
    assert uses != [day_use(m, day) for m in other.meters.values()]


def test_residential_use_peaks_morning_and_evening_is_higher_in_winter_and_stops_some_days() -> None:
    fleet = MeterFleet.plan(200, dtus=10, seed=3)
    meters = list(fleet.meters.values())
    day = datetime(2026, 1, 14, tzinfo=TZ)

    def hour(h: int) -> float:
        return sum(m.rate_m3h(day + timedelta(hours=h, minutes=30)) for m in meters)

    assert hour(7) > 4 * hour(3)
    assert hour(18) > 4 * hour(3)
    assert hour(18) > hour(14)
    winter = sum(day_use(m, date(2026, 1, d)) for m in meters[:80] for d in range(1, 15))
    summer = sum(day_use(m, date(2026, 7, d)) for m in meters[:80] for d in range(1, 15))
    assert winter > Decimal("1.8") * summer
    days = [day_use(m, date(2026, 3, 1) + timedelta(days=d)) for m in meters[:20] for d in range(60)]
    zero = sum(1 for u in days if u == 0)
    assert 0.02 * len(days) < zero < 0.15 * len(days)  # days away
    average = sum(days, Decimal(0)) / len(days)
    assert Decimal("0.3") < average < Decimal("1.5")  # m³ a day: a household


def test_the_register_grows_with_use_and_a_leak_flows_at_night_too() -> None:
    fleet = MeterFleet.plan(1, dtus=1, seed=2)
    m = next(iter(fleet.meters.values()))
    night = datetime(2026, 1, 14, 3, 0, tzinfo=TZ)
    assert m.rate_m3h(night) < 0.05
    m.leak = True
    assert m.rate_m3h(night) >= float(LEAK_M3H)
    start = m.volume_m3
    m._at = night.timestamp()
    m.advance(night.timestamp() + 7200)
    assert m.volume_m3 - start >= 2 * LEAK_M3H - Decimal("0.000001")
    m.valve_closed = True
    closed_at = m.volume_m3
    m.advance(night.timestamp() + 3 * 7200)
    assert m.volume_m3 == closed_at  # no gas through a closed valve


def test_faults_set_the_profiles_status_bits() -> None:
    profile = load_meter_profiles().get("iot-alarm")
    fleet = MeterFleet.plan(1, dtus=1, seed=2)
    m = next(iter(fleet.meters.values()))
    assert m.status() == profile.status.valve_open
    m.leak, m.tamper, m.battery_low = True, True, True
    word = m.status()
    assert profile.status.leaking(word)
    assert {e.value for e in profile.status.events(word)} == {"tamper", "low_battery"}
    m.valve_closed = True
    assert profile.status.valve(m.status()).value == "closed"


def test_fault_timetable_syntax() -> None:
    known = {meter_id(n) for n in range(100, 200)}
    assert parse_fault("leak:M123@10", known) == (Fault.LEAK, meter_id(123), 10.0)
    assert parse_fault("garble:150", known) == (Fault.GARBLE, meter_id(150), None)
    assert parse_fault(f"silence:{meter_id(199)}@2.5s", known) == (Fault.SILENCE, meter_id(199), 2.5)
    for bad, why in (("leak", "KIND:METER"), ("flood:M150", "unknown fault"), ("leak:M12", "not in the fleet"),
                     ("leak:meter", "is no meter"), ("tamper:M150@soon", "not a number")):
        with pytest.raises(ValueError, match=why):
            parse_fault(bad, known)


def test_valve_routes_split_the_fleet_by_path(tmp_path: Path) -> None:
    fleet = MeterFleet.plan(50, dtus=5, ctwing=20, seed=1, first=100)
    (tmp_path / "fleet.toml").write_text(fleet_routes(fleet))
    specs, problems = read_specs(tmp_path)
    assert not problems
    routes = {spec.name: spec for _, spec in specs}
    assert {name: spec.to for name, spec in routes.items()} == {
        "fleet-valves-dtu": "meters:valve", "fleet-valves-ctwing": "ctwing:valve"}
    where = {name: compile_predicate(spec.where or "", where=name) for name, spec in routes.items()}
    for n in range(90, 160):
        env = {"data": {"meter_id": meter_id(n)}}
        want = ["fleet-valves-ctwing"] if 100 <= n < 120 else ["fleet-valves-dtu"] if 120 <= n < 150 else []
        assert [name for name, fn in where.items() if fn(env)] == want, n


def test_simulate_fleet_takes_its_options_and_refuses_a_bad_fault_before_starting_anything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from connectors.demo import run_demo
    from hub.cli import build_parser

    args = build_parser().parse_args(["simulate", "fleet", "--meters", "20", "--dtus", "2", "--ctwing", "5",
                                      "--fault", "leak:M3@2", "--fault", "garble:M12", "--duration", "5"])
    assert (args.meters, args.dtus, args.ctwing, args.fault, args.duration) == (
        20, 2, 5, ["leak:M3@2", "garble:M12"], 5.0)
    monkeypatch.chdir(tmp_path)
    assert asyncio.run(run_demo(accounts=0, meters=20, dtus=2, ctwing=5, faults=["flood:M3"], story=False)) == 2
    assert asyncio.run(run_demo(accounts=0, meters=20, dtus=2, ctwing=5, faults=["leak:M30"], story=False)) == 2
    assert asyncio.run(run_demo(accounts=0, meters=0, story=False)) == 2  # no fleet, no city
    assert list(tmp_path.iterdir()) == []  # refused before any database, route or server
