"""The benchmark city generator (``bench/gen_accounts.py``) at 200 accounts, on PostgreSQL.

What the 1,000,000-account benchmarks rely on: personal fields are really encrypted (no plaintext
in any raw row) under the row-bound contexts the accounts service uses, the blind index finds a
generated phone, every account has a meter with 12 readings (every tenth here a second one, a quarter of
the first's register), and a billing run bills every account, those with two meters on their sum.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench.city import CHUNK, MONTHLY_PERIOD, OPENING_PERIOD, READ_DAYS, TARIFFS, generate
from bench.gen_accounts import TABLES, load
from core.accounts import Privacy, find_by_id_number, find_by_phone, get_account
from core.billing_run import run_billing
from core.privacy import KeyRing, field_context, generate_key
from hub.migrations import upgrade
from tests.flow.conftest import fresh_postgres_database

N, SEED, SECOND_EVERY = 200, 7, 10


@pytest.fixture
async def city(postgres_url: str) -> AsyncIterator[tuple[AsyncEngine, Privacy]]:
    url, drop = await fresh_postgres_database(postgres_url)
    privacy = Privacy.from_ring(KeyRing.from_settings({"t1": generate_key()}, current="t1"))
    try:
        await asyncio.to_thread(upgrade, url)
        stats = await load(url, privacy, N, SEED, workers=1, second_every=SECOND_EVERY)
        assert stats.accounts == N
        meters = N + N // SECOND_EVERY
        assert stats.rows == {name: {"core_reading": 12 * meters, "core_meter": meters}.get(name, N) for name in TABLES}
        engine = create_async_engine(url)
        try:
            yield engine, privacy
        finally:
            await engine.dispose()
    finally:
        await drop()


def test_the_same_seed_makes_the_same_city_whatever_its_size() -> None:
    small, large = list(generate(50, SEED)), list(generate(N, SEED))
    assert small == large[:50]
    assert list(generate(N, SEED)) == large
    assert list(generate(N, SEED, start=120)) == large[120:]
    across = list(generate(CHUNK + 3, SEED))  # two chunks, each with its own generator
    assert across[:N] == large
    assert list(generate(CHUNK + 3, SEED, start=CHUNK - 2)) == across[CHUNK - 2:]
    assert [a.person for a in generate(N, SEED + 1)] != [a.person for a in large]
    assert {a.category for a in large} == {"residential", "non_residential"}
    assert len({a.district for a in large}) == 6


async def test_personal_fields_are_encrypted_and_bound_to_their_rows(city: tuple[AsyncEngine, Privacy]) -> None:
    engine, privacy = city
    people = {a.customer_id: a for a in generate(N, SEED)}
    async with engine.connect() as conn:
        customers = (await conn.execute(text("SELECT * FROM core_customer"))).mappings().all()
        places = (await conn.execute(text("SELECT id, address_enc FROM core_premises"))).mappings().all()
    assert len(customers) == N
    raw = "\n".join(str(v) for row in [*customers, *places] for v in row.values())
    for a in people.values():
        for secret in (a.person.name, a.person.phone, a.person.id_number, a.premises_address):
            assert secret not in raw
    for row in customers:
        a = people[row["id"]]
        for column, value in (("name", a.person.name), ("phone", a.person.phone), ("id_number", a.person.id_number)):
            token = row[f"{column}_enc"]
            assert token.startswith("v1:t1:")
            assert privacy.cipher.decrypt(token, context=field_context("core_customer", column, row["id"])) == value
        assert row["phone_bidx"] == privacy.index.phone(a.person.phone)
        assert (row["address_enc"] is None) == (a.person.address is None)


async def test_the_blind_index_finds_generated_people(city: tuple[AsyncEngine, Privacy]) -> None:
    engine, privacy = city
    accounts = list(generate(N, SEED))
    async with engine.connect() as conn:
        for a in (accounts[0], accounts[137], accounts[-1]):
            spaced = f"+86 {a.person.phone[:3]} {a.person.phone[3:7]} {a.person.phone[7:]}"
            assert a.account_id in [v.account_id for v in await find_by_phone(conn, privacy, spaced)]
            by_id = await find_by_id_number(conn, privacy, a.person.id_number, reveal=True)
            assert [(v.account_id, v.holder.name) for v in by_id] == [(a.account_id, a.person.name)]
        view = await get_account(conn, privacy, accounts[5].account_id, reveal=True)
    assert view.premises.address == accounts[5].premises_address
    assert (view.category, view.status, view.holder.phone) == (
        accounts[5].category, "active", accounts[5].person.phone)


async def test_every_account_has_a_meter_with_a_year_of_readings_and_is_billed(
    city: tuple[AsyncEngine, Privacy],
) -> None:
    engine, _ = city
    async with engine.connect() as conn:
        per_meter = (await conn.execute(text(
            "SELECT m.id, count(r.id) AS n, bool_and(r.volume_m3 >= 0) AS positive, "
            "array_agg(DISTINCT (r.read_at AT TIME ZONE 'Asia/Shanghai')::date) AS days "
            "FROM core_meter m JOIN core_reading r ON r.meter_id = m.id GROUP BY m.id"))).all()
        rising = await conn.scalar(text(
            "SELECT count(*) FROM (SELECT volume_m3 < lag(volume_m3) OVER (PARTITION BY meter_id ORDER BY read_at) "
            "AS down FROM core_reading) t WHERE down"))
    assert len(per_meter) == N + N // SECOND_EVERY
    assert {row.n for row in per_meter} == {12}
    assert all(row.positive for row in per_meter)
    assert rising == 0  # registers never go backwards
    assert all(sorted(row.days) == list(READ_DAYS) for row in per_meter)  # one a month, local month ends

    now = datetime(2026, 12, 1, 2, tzinfo=UTC)
    async with engine.connect() as conn:
        postpaid = int(await conn.scalar(text("SELECT count(*) FROM core_account WHERE billing = 'postpaid'")) or 0)
    assert N // 2 < postpaid < N  # a third of residential accounts are prepaid: charged per reading, never billed
    for start, end in (OPENING_PERIOD, MONTHLY_PERIOD):
        async with engine.begin() as conn:
            result = await run_billing(conn, book=TARIFFS, period_start=start, period_end=end, now=now,
                                       batch_size=64)
        assert (result.accounts_seen, result.bills_issued, result.skipped) == (postpaid, postpaid, [])
    async with engine.connect() as conn:
        chained = await conn.scalar(text(
            "SELECT count(*) FROM core_bill WHERE period_start = :s AND cumulative_before > 0"),
            {"s": MONTHLY_PERIOD[0]})
        tiered = await conn.scalar(text("SELECT count(DISTINCT bill_id) FROM core_bill_line WHERE tier > 1"))
        two_meter_bills = (await conn.execute(text(
            "SELECT b.volume_m3, sum(m.volume_m3) AS summed, count(*) AS meters FROM core_bill b "
            "JOIN core_bill_meter m ON m.bill_id = b.id WHERE b.period_start = :s GROUP BY b.id, b.volume_m3"),
            {"s": MONTHLY_PERIOD[0]})).all()
    residential = sum(1 for a in generate(N, SEED) if a.category == "residential" and a.billing == "postpaid")
    assert chained == residential  # November's residential (postpaid) bills carry the cycle to date
    assert tiered > 0  # some households use more than 480 m³ in the year
    two_meters = sum(1 for a in generate(N, SEED) if a.index % SECOND_EVERY == SECOND_EVERY - 1
                     and a.billing == "postpaid")
    assert len(two_meter_bills) == two_meters > 0
    assert all(row.meters == 2 and row.volume_m3 == row.summed for row in two_meter_bills)
