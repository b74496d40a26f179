"""A synthetic but plausible Shaoxing for the benchmarks: people, premises, accounts, meters and a
year of monthly readings, the same for the same seed.

Nothing here touches a database or a key: :func:`generate` yields plaintext records, and
``bench/gen_accounts.py`` encrypts and loads them. Accounts are made in chunks of ``CHUNK``, each
with its own random generator seeded from ``(seed, chunk)``, so account *i* is the same whatever the
number of accounts asked for, and any chunk can be made on its own.

The figures (domain.md where it has them, plausible guesses where it does not):

* districts weighted by population (2020 census, rounded), premises scattered around the district
  centres and kept inside the city's box (29.2–30.3 N, 119.9–121.2 E);
* 95 % residential (tiered), 5 % non-residential: commercial/catering 3.5 %, industrial 1 %,
  heating 0.5 %; a third of residential accounts prepaid (IoT prepaid meters), the rest postpaid;
* residential use: log-normal, median 220 m³ a year, σ 0.9, so that about 80 % of households stay
  under the first threshold of ``TARIFFS`` (480 m³) and about 95 % under the second (960 m³), the
  national guidance for tiers; more gas in winter (``SEASON``) and ±15 % noise per month;
* readings on the last day of each month between 06:00 and 22:00 local time, from 31 December of
  the year before to 30 November (12 readings), by IoT platforms or by hand (whole m³);
* mobile numbers on real prefixes; resident ID numbers with Shaoxing region codes, a birth date and
  the GB 11643 check digit.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from core.accounts.validation import id_check_digit
from core.billing import FlatTariff, ResidentialTariff, TariffBook, TariffCategory
from core.billing_run import CHINA_TZ
from core.ids import encode_ulid

CHUNK = 2000
"""Accounts per chunk (one random generator each); fixed so that the data depends only on the seed."""

YEAR = 2026
READ_DAYS: tuple[date, ...] = (
    date(YEAR - 1, 12, 31), *(date(YEAR, month + 1, 1) - timedelta(days=1) for month in range(1, 12)))
"""The 12 reading days: the last day of December of the year before, then of January to November."""

OPENING_PERIOD = (date(YEAR, 1, 1), date(YEAR, 11, 1))
"""The cycle to date, billed as one period so that the monthly run has real cumulative volumes."""
MONTHLY_PERIOD = (date(YEAR, 11, 1), date(YEAR, 12, 1))
"""The monthly billing run the benchmark measures."""

TARIFFS = TariffBook(
    versions=(
        # domain.md's example (Hangzhou): no Shaoxing figures were found.
        ResidentialTariff(
            version="SX-RES-2024",
            effective_from=date(2024, 1, 1),
            thresholds_m3=(Decimal(480), Decimal(960)),
            prices=(Decimal("2.40"), Decimal("2.88"), Decimal("3.60")),
        ),
        FlatTariff(version="SX-COM-2024", effective_from=date(2024, 1, 1), category=TariffCategory.COMMERCIAL,
                   price=Decimal("3.85")),
        FlatTariff(version="SX-IND-2024", effective_from=date(2024, 1, 1), category=TariffCategory.INDUSTRIAL,
                   price=Decimal("3.42")),
        FlatTariff(version="SX-HEA-2024", effective_from=date(2024, 1, 1), category=TariffCategory.HEATING,
                   price=Decimal("3.10")),
    )
)
"""The tariffs the benchmarks bill with."""


@dataclass(frozen=True, slots=True)
class District:
    code: str
    """As stored in ``core_premises.district``."""
    name: str
    lat: float
    lon: float
    population: int
    region_codes: tuple[str, ...]
    """The first six digits of resident ID numbers issued there."""
    roads: tuple[str, ...]


DISTRICTS: tuple[District, ...] = (
    District("yuecheng", "越城区", 30.00, 120.58, 2_230_000, ("330602",),
             ("解放北路", "解放南路", "人民中路", "中兴中路", "胜利东路", "延安东路", "环城西路", "鲁迅中路")),
    District("keqiao", "柯桥区", 30.08, 120.49, 1_090_000, ("330603", "330621"),
             ("笛扬路", "湖西路", "金柯桥大道", "群贤路", "裕民路", "鉴湖路")),
    District("shangyu", "上虞区", 30.03, 120.87, 830_000, ("330604", "330682"),
             ("市民大道", "百官街道人民路", "江扬路", "舜江路", "五星路")),
    District("zhuji", "诸暨市", 29.71, 120.24, 1_220_000, ("330681",),
             ("暨阳路", "浣纱路", "望云路", "艮塔路", "西施大街")),
    District("shengzhou", "嵊州市", 29.59, 120.82, 680_000, ("330683",),
             ("剡湖路", "官河路", "北直街", "三江街道领带路")),
    District("xinchang", "新昌县", 29.50, 120.90, 430_000, ("330624",),
             ("鼓山中路", "人民中路", "七星路", "江滨西路")),
)
_DISTRICT_WEIGHTS = list(itertools.accumulate(d.population for d in DISTRICTS))
LAT_BOX = (29.2, 30.3)
LON_BOX = (119.9, 121.2)

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦"
    "付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
GIVEN = (
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉萍红娥建国建华志强海燕晓东文博子涵浩然欣怡梓萱宇轩"
    "俊杰雨桐佳琪嘉怡一诺思远天佑晨曦锦程雅婷新民国平立新振华永红春梅金凤德明"
)
MOBILE_PREFIXES = (
    "130", "131", "132", "133", "134", "135", "136", "137", "138", "139", "150", "151", "152", "153", "155",
    "156", "157", "158", "159", "166", "173", "175", "176", "177", "180", "181", "182", "183", "185", "186",
    "187", "188", "189", "191", "198", "199",
)

SEASON = (1.55, 1.45, 1.15, 0.90, 0.75, 0.65, 0.60, 0.60, 0.70, 0.85, 1.10, 1.40)
"""Relative gas use per month, January first (winter water heating and some space heating)."""
_SEASON_MEAN = sum(SEASON) / 12

# (category, subcategory, cumulative weight, median m³ a year, sigma, meter models)
_KINDS: tuple[tuple[str, str | None, float, float, float, tuple[str, ...]], ...] = (
    ("residential", None, 0.950, 220.0, 0.9, ("G1.6", "G2.5", "G2.5", "G4")),
    ("non_residential", "commercial", 0.985, 6_000.0, 1.0, ("G6", "G10", "G16", "G25")),
    ("non_residential", "industrial", 0.995, 60_000.0, 1.2, ("G25", "G40", "G65", "G100")),
    ("non_residential", "heating", 1.000, 30_000.0, 0.8, ("G16", "G25", "G40")),
)
_KIND_WEIGHTS = [kind[2] for kind in _KINDS]

IMPORT_AT = datetime(YEAR, 12, 1, 2, tzinfo=UTC)
"""When the synthetic city was 'imported': the time part of every generated id and ``created_at``."""
_IMPORT_MS = int(IMPORT_AT.timestamp() * 1000)

@dataclass(frozen=True, slots=True)
class Person:
    name: str
    phone: str
    id_number: str
    address: str | None


@dataclass(frozen=True, slots=True)
class Reading:
    id: str
    read_at: datetime
    volume_milli: int
    """The register in 0.001 m³."""
    source: str

    @property
    def volume_m3(self) -> Decimal:
        return Decimal(self.volume_milli).scaleb(-3)


@dataclass(frozen=True, slots=True)
class SeedAccount:
    """One account with everything that belongs to it, in clear."""

    index: int
    account_id: str
    account_number: str
    customer_id: str
    premises_id: str
    holder_row_id: str
    status_row_id: str
    meter_id: str
    person: Person
    premises_address: str
    district: str
    lat: float
    lon: float
    category: str
    subcategory: str | None
    billing: str
    opened_at: datetime
    meter_model: str
    installed_at: date
    prepaid_balance: Decimal
    readings: tuple[Reading, ...]

    @property
    def replace_by(self) -> date:
        """Ten years' service life (JJG 577); 29 February moves to 1 March."""
        installed = self.installed_at
        if (installed.month, installed.day) == (2, 29):
            return date(installed.year + 10, 3, 1)
        return installed.replace(year=installed.year + 10)


def generate(n: int, seed: int, start: int = 0) -> Iterator[SeedAccount]:
    """Accounts ``start`` … ``n - 1`` of the city made from ``seed``."""
    chunk = start // CHUNK
    while chunk * CHUNK < n:
        yield from chunk_accounts(seed, chunk, start, n)
        chunk += 1


def chunk_accounts(seed: int, chunk: int, start: int = 0, stop: int | None = None) -> list[SeedAccount]:
    """The accounts of chunk ``chunk`` (``CHUNK`` of them) whose index is in ``[start, stop)``."""
    rng = random.Random(f"gashub-city:{seed}:{chunk}")
    first = chunk * CHUNK
    last = first + CHUNK if stop is None else min(first + CHUNK, stop)
    out = []
    for index in range(first, last):
        account = _account(rng, index)
        if index >= start:
            out.append(account)
    return out


def _id(rng: random.Random, index: int, slot: int) -> str:
    # Time-ordered by account (and by slot within it), so that indexes fill from the right.
    return encode_ulid(_IMPORT_MS + index * 32 + slot, rng.getrandbits(80))


def _account(rng: random.Random, index: int) -> SeedAccount:
    district = DISTRICTS[bisect.bisect(_DISTRICT_WEIGHTS, rng.random() * _DISTRICT_WEIGHTS[-1])]
    category, subcategory, _, median, sigma, models = _KINDS[bisect.bisect(_KIND_WEIGHTS, rng.random())]
    residential = category == "residential"
    lat = min(max(rng.gauss(district.lat, 0.05), LAT_BOX[0]), LAT_BOX[1])
    lon = min(max(rng.gauss(district.lon, 0.06), LON_BOX[0]), LON_BOX[1])
    road = rng.choice(district.roads)
    if residential:
        address = (f"浙江省绍兴市{district.name}{road}{rng.randint(1, 899)}号{rng.randint(1, 30)}幢"
                   f"{rng.randint(1, 4)}单元{rng.randint(1, 33)}{rng.randint(1, 4):02d}室")
    else:
        address = f"浙江省绍兴市{district.name}{road}{rng.randint(1, 899)}号{rng.choice('一二三')}楼"
    opened = datetime(2005, 1, 1, tzinfo=CHINA_TZ) + timedelta(seconds=rng.randrange(20 * 365 * 86400))
    opened_at = opened.astimezone(UTC)
    installed_at = max(opened.date(), date(2016, 1, 1) + timedelta(days=rng.randrange(9 * 365)))
    billing = "prepaid" if residential and rng.random() < 1 / 3 else "postpaid"
    balance = Decimal(rng.randrange(0, 60_000)).scaleb(-2) if billing == "prepaid" else Decimal("0.00")
    person = _person(rng, district, address if residential and rng.random() < 0.7 else None)
    return SeedAccount(
        index=index,
        account_id=_id(rng, index, 0),
        account_number=f"SX{DISTRICTS.index(district) + 1}{10_000_000 + index:011d}",
        customer_id=_id(rng, index, 1),
        premises_id=_id(rng, index, 2),
        holder_row_id=_id(rng, index, 3),
        status_row_id=_id(rng, index, 4),
        meter_id=f"{'R' if residential else 'C'}{33060000000 + index:011d}",
        person=person,
        premises_address=address,
        district=district.code,
        lat=round(lat, 6),
        lon=round(lon, 6),
        category=category,
        subcategory=subcategory,
        billing=billing,
        opened_at=opened_at,
        meter_model=rng.choice(models),
        installed_at=installed_at,
        prepaid_balance=balance,
        readings=_readings(rng, index, median, sigma, installed_at, residential),
    )


def _person(rng: random.Random, district: District, address: str | None) -> Person:
    given = rng.choice(GIVEN) if rng.random() < 0.3 else rng.choice(GIVEN) + rng.choice(GIVEN)
    phone = rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"
    born = date(1940, 1, 1) + timedelta(days=rng.randrange(65 * 365))
    first17 = f"{rng.choice(district.region_codes)}{born:%Y%m%d}{rng.randrange(1000):03d}"
    return Person(name=rng.choice(SURNAMES) + given, phone=phone, id_number=first17 + id_check_digit(first17),
                  address=address)


def _readings(rng: random.Random, index: int, median: float, sigma: float, installed_at: date,
              residential: bool) -> tuple[Reading, ...]:
    annual = min(rng.lognormvariate(0.0, sigma), 25.0) * median  # m³ a year
    years = max(0.1, (READ_DAYS[0] - installed_at).days / 365.25)
    register = int(annual * years * rng.uniform(0.7, 1.3) * 1000)
    manual = residential and rng.random() < 0.4
    source = "manual" if manual else rng.choice(("ctwing", "onenet") if residential else ("dtu", "ctwing"))
    out = []
    for n, day in enumerate(READ_DAYS):
        if n:
            share = annual * SEASON[day.month - 1] / _SEASON_MEAN / 12
            register += int(share * rng.uniform(0.85, 1.15) * 1000)
        value = register // 1000 * 1000 if manual else register
        local = datetime(day.year, day.month, day.day, 6, tzinfo=CHINA_TZ) + timedelta(
            seconds=rng.randrange(16 * 3600))
        out.append(Reading(_id(rng, index, 5 + n), local.astimezone(UTC), value, source))
    return tuple(out)
