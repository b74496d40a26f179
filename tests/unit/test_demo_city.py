"""The demo's pieces without running it: the city it plans, the payments its customers make, the
routes and connectors it configures (valid for `gashub check`, while production's stay without them)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

import pytest

from connectors.demo.city import SHAOXING, month_starts, plan_city
from connectors.demo.payments import Due, PaymentChannelSimulator
from connectors.demo.run import PROJECT, demo_routes, demo_settings
from connectors.demo.wechat import DemoWeChat
from connectors.vendor_push.simulator import VendorCloudSimulator
from core.accounts import valid_id_number, valid_phone, valid_place
from core.catalogue.messages import PaymentReceived
from hub.app import check_configuration
from hub.envelope import Envelope

TODAY = date(2026, 11, 27)


def test_the_city_is_the_same_for_the_same_seed_and_its_people_are_valid() -> None:
    city = plan_city(300, today=TODAY)
    assert city == plan_city(300, today=TODAY)
    assert [h.customer for h in plan_city(300, today=date(2027, 3, 5))] == [h.customer for h in city]
    assert [h.customer for h in plan_city(300, today=TODAY, seed=1)] != [h.customer for h in city]
    assert len({h.customer.phone for h in city}) == len({h.customer.id_number for h in city}) == 300
    for home in city:
        assert valid_phone(home.customer.phone) == home.customer.phone
        assert valid_id_number(home.customer.id_number) == home.customer.id_number
        district = SHAOXING[home.premises.district]
        assert home.customer.id_number.startswith(district.region_code)
        assert valid_place(home.premises.district, home.premises.lat, home.premises.lon) == district.name
        assert abs(home.premises.lat - district.centre[0]) <= 0.08 + 1e-9
        assert abs(home.premises.lon - district.centre[1]) <= 0.08 + 1e-9
        assert home.premises.address.startswith(f"绍兴市{district.chinese}")
    assert {h.premises.district for h in city} == set(SHAOXING)
    kinds = [h.kind for h in city]
    assert 0.05 < kinds.count("commercial") / len(city) < 0.3
    assert set(kinds) == {"residential", "commercial"}
    assert [h.meter_id for h in city] == [VendorCloudSimulator.meter_id(n) for n in range(300)]


def test_each_meter_has_a_year_of_monthly_readings_that_only_go_up() -> None:
    city = plan_city(100, today=TODAY)
    starts = month_starts(TODAY)
    assert starts[0] == date(2025, 11, 1)
    assert starts[-1] == date(2026, 11, 1)
    for home in city:
        times = [at for at, _ in home.readings]
        assert [t.date() for t in times] == starts
        assert all(t.utcoffset() == timedelta(hours=8) and t.hour == 0 for t in times)
        volumes = [v for _, v in home.readings] + [home.register_now]
        assert all(b > a for a, b in pairwise(volumes))
        assert home.opened_on < starts[0]
    residential = [h for h in city if h.kind == "residential"]
    shops = [h for h in city if h.kind == "commercial"]
    yearly = [h.readings[-1][1] - h.readings[0][1] for h in residential]
    assert Decimal(100) < sorted(yearly)[len(yearly) // 2] < Decimal(450)  # a household's year, m³
    winter = sum(h.readings[3][1] - h.readings[2][1] for h in residential)  # January
    summer = sum(h.readings[9][1] - h.readings[8][1] for h in residential)  # July
    assert winter > Decimal("1.5") * summer
    assert min(h.readings[-1][1] - h.readings[-2][1] for h in shops) > max(
        h.readings[-1][1] - h.readings[-2][1] for h in residential) / 3
    with pytest.raises(ValueError, match="at least one account"):
        plan_city(0, today=TODAY)


class Published:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def __call__(self, envelopes: Sequence[Envelope]) -> None:
        self.envelopes.extend(envelopes)


def _dues(n: int) -> list[Due]:
    return [Due(f"B{i:03d}", f"A{i:03d}", f"SX1{i:011d}", Decimal("37.42") + i) for i in range(n)]


async def test_customers_pay_bills_and_some_payments_are_notified_twice() -> None:
    published = Published()
    payer = PaymentChannelSimulator(published, seed=5)
    payments = payer.plan(_dues(200), datetime(2026, 11, 28, 9, tzinfo=UTC))
    assert len(payments) == 140
    assert len({p.account_id for p in payments}) == 140
    hows = [p.how for p in payments]
    assert hows.count("the bill") > hows.count("more than the bill") > 0
    assert hows.count("part of the bill") > 0
    for p in payments:
        assert len(p.transaction_id) == 28
        assert p.transaction_id.isdigit()
        assert p.transaction_id.startswith("4200" if p.channel == "wechat" else "20261128")
        if p.how == "more than the bill":
            assert p.amount % 10 == 0
        if p.how == "part of the bill":
            assert 0 < p.amount < p.bill_total
    assert {p.channel for p in payments} == {"wechat", "alipay"}
    assert len({p.transaction_id for p in payments}) == len({p.out_trade_no for p in payments}) == 140

    stop = asyncio.Event()
    await payer.run(payments[:40], per_second=1000, stop=stop)
    assert len(payer.sent) == 40
    assert 0 < len(payer.repeated) < 20
    assert len(published.envelopes) == payer.messages == 40 + len(payer.repeated)
    for env in published.envelopes:
        assert env.type == "payment.received"
        PaymentReceived.model_validate(env.data)  # what core:record_payment takes
    by_transaction: dict[str, list[Envelope]] = {}
    for env in published.envelopes:
        by_transaction.setdefault(env.data["transaction_id"], []).append(env)
    twice = [envs for envs in by_transaction.values() if len(envs) == 2]
    assert len(twice) == len(payer.repeated)
    assert all(a.data == b.data and a.id != b.id for a, b in twice)  # the same notification, a new message
    stop.set()
    await payer.run(payments[40:], per_second=1000, stop=stop)
    assert len(payer.sent) == 40


def test_the_demo_runs_the_production_routes_with_its_connectors_configured(tmp_path: Path) -> None:
    routes = demo_routes(tmp_path / "routes")
    assert demo_routes(tmp_path / "routes") == routes  # written afresh, not added to
    names = sorted(p.name for p in routes.glob("*.toml"))
    assert names == sorted(p.name for p in (PROJECT / "routes").glob("*.toml"))
    assert "payments.toml" in names
    settings = demo_settings(database_url="sqlite+aiosqlite:///:memory:", http_port=0, ops_token="t" * 20,
                             vendor_token="v", routes_dir=routes, sms_url="http://127.0.0.1:1",
                             valves_url="http://127.0.0.1:2", tax_url="http://127.0.0.1:3/einvoice",
                             wechatpay=DemoWeChat.create().connector_settings)
    assert check_configuration(settings) == []
    assert (settings.connectors["tax"]["kind"], settings.connectors["tax"]["provider"]) == ("tax", "soap")
    assert settings.connectors["wechatpay"]["kind"] == "wechatpay"
    # Without a tax connector the production routes do not check: nobody takes invoice.requested.
    without_tax = settings.model_copy(update={"connectors": {
        k: v for k, v in settings.connectors.items() if k != "tax"}})
    problems = [str(p) for p in check_configuration(without_tax)]
    assert any("'tax'" in p and "invoices-tax" in p for p in problems), problems


def test_the_demo_can_send_its_invoices_through_the_tax_connectors_rest_provider(tmp_path: Path) -> None:
    routes = demo_routes(tmp_path / "routes")
    settings = demo_settings(database_url="sqlite+aiosqlite:///:memory:", http_port=0, ops_token="t" * 20,
                             vendor_token="v", routes_dir=routes, sms_url="http://127.0.0.1:1",
                             valves_url="http://127.0.0.1:2", tax_url="http://127.0.0.1:3/einvoice", tax="rest",
                             tax_secret="demo-secret")
    assert check_configuration(settings) == []
    assert (settings.connectors["tax"]["kind"], settings.connectors["tax"]["provider"]) == ("tax", "rest")
