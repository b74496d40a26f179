"""A small synthetic Shaoxing for the demo: households and shops in the six districts, their holders,
meters and a year of monthly gas use. Pure and deterministic by seed: nothing here touches a
database (:mod:`connectors.demo.seed` loads it through the core's services).

Every person is invented: names from common surnames and given-name characters, mobile numbers
``1[3-9]…``, resident ID numbers with a Shaoxing region code, a real birth date and a correct
GB 11643 check digit. Premises lie around each district's centre (domain.md), inside the city's
bounds the schema enforces. Use follows the seasons (more in winter, when water heating and
cooking take more gas); shops use about fifteen times what a household does.
"""

from __future__ import annotations

import calendar
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

from connectors.meters.usage import SEASON
from connectors.vendor_push.simulator import VendorCloudSimulator
from core.accounts import Category, CustomerIn, PremisesIn, Subcategory, id_check_digit
from core.db.tables_accounts import DISTRICTS, LAT_RANGE, LON_RANGE

CITY_SEED = 2026
CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
M3 = Decimal("0.001")


@dataclass(frozen=True, slots=True)
class District:
    name: str
    chinese: str
    centre: tuple[float, float]
    region_code: str
    """The resident-ID region code (GB/T 2260) of the district."""
    share: float
    streets: tuple[str, ...]


SHAOXING: dict[str, District] = {d.name: d for d in (
    District("yuecheng", "越城区", (30.00, 120.58), "330602", 0.26,
             ("解放北路", "人民中路", "胜利东路", "中兴中路", "环城西路", "延安东路", "府山街道稽山路")),
    District("keqiao", "柯桥区", (30.08, 120.49), "330603", 0.23,
             ("笛扬路", "柯桥大道", "金柯桥大道", "湖西路", "华齐路", "鉴湖路")),
    District("shangyu", "上虞区", (30.03, 120.87), "330604", 0.16,
             ("市民大道", "人民大道", "江扬路", "凤鸣路", "百官街")),
    District("zhuji", "诸暨市", (29.71, 120.24), "330681", 0.19,
             ("艮塔西路", "暨阳路", "望云路", "浣纱南路", "东二路")),
    District("shengzhou", "嵊州市", (29.59, 120.82), "330683", 0.09,
             ("官河路", "鹿山路", "北直街", "东南路")),
    District("xinchang", "新昌县", (29.50, 120.90), "330624", 0.07,
             ("鼓山中路", "人民西路", "七星路", "江滨西路")),
)}
assert tuple(SHAOXING) == DISTRICTS, "the demo city must cover exactly the districts the schema knows"

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗钱沈金俞傅鲁谢蒋章宋陆孟丁屠应"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国兰飞玲红燕鑫浩宇晨欣怡子涵梓轩雨婷佳琪志文海峰"
MOBILE_PREFIXES = ("133", "135", "136", "137", "138", "139", "150", "151", "152", "157", "158", "159",
                   "177", "180", "181", "186", "187", "188", "189", "199")
SHOPS = ("面馆", "小吃店", "饭店", "茶餐厅", "酒家", "烘焙坊", "快餐店", "黄酒馆")



@dataclass(frozen=True, slots=True)
class Household:
    """One account to open: its holder, premises, meter and the use of the last year."""

    n: int
    customer: CustomerIn
    premises: PremisesIn
    category: Category
    subcategory: Subcategory | None
    meter_id: str
    meter_model: str
    opened_on: date
    replace_by: date | None
    readings: tuple[tuple[datetime, Decimal], ...]
    """The monthly register readings, on the 1st of each month at 00:00 China time, oldest first: the
    thirteen month starts up to and including this month's."""
    register_now: Decimal
    """The register today: the last monthly reading plus this month's use so far."""

    @property
    def kind(self) -> str:
        return "residential" if self.category == "residential" else str(self.subcategory)


def month_starts(today: date, months: int = 12) -> list[date]:
    """The first days of the ``months`` months before ``today``'s month, then of ``today``'s month."""
    starts = []
    year, month = today.year, today.month
    for _ in range(months + 1):
        starts.append(date(year, month, 1))
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return starts[::-1]


def plan_city(accounts: int, *, today: date, seed: int = CITY_SEED) -> list[Household]:
    """``accounts`` households and shops, the same for the same seed (people do not depend on ``today``)."""
    if accounts < 1:
        raise ValueError("a city needs at least one account")
    people = random.Random(seed)
    use = random.Random(seed + 1)
    phones: set[str] = set()
    ids: set[str] = set()
    districts = list(SHAOXING.values())
    homes = []
    for n in range(accounts):
        district = people.choices(districts, weights=[d.share for d in districts])[0]
        shop = people.random() < 0.15
        customer = _person(people, district, phones, ids)
        premises = _premises(people, district, shop)
        years = people.randint(1, 9)
        opened_on = today.replace(day=1) - timedelta(days=365 * years + people.randint(0, 300))
        homes.append(_household(n, use, customer, premises, shop, opened_on, today))
    return homes


def _person(rng: random.Random, district: District, phones: set[str], ids: set[str]) -> CustomerIn:
    name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))
    phone = ""
    while not phone or phone in phones:
        phone = rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"
    phones.add(phone)
    id_number = ""
    while not id_number or id_number in ids:
        born = date(1950, 1, 1) + timedelta(days=rng.randrange(365 * 52))
        first17 = f"{district.region_code}{born:%Y%m%d}{rng.randrange(1000):03d}"
        id_number = first17 + id_check_digit(first17)
    ids.add(id_number)
    return CustomerIn(name=name, phone=phone, id_number=id_number)


def _premises(rng: random.Random, district: District, shop: bool) -> PremisesIn:
    street = rng.choice(district.streets)
    number = rng.randint(1, 399)
    if shop:
        address = f"绍兴市{district.chinese}{street}{number}号{rng.choice(SHOPS)}"
    else:
        address = (f"绍兴市{district.chinese}{street}{number}号{rng.randint(1, 30)}幢"
                   f"{rng.randint(1, 4)}单元{rng.randint(1, 28)}{rng.randint(1, 4):02d}室")
    lat = _inside(rng.gauss(district.centre[0], 0.025), district.centre[0], LAT_RANGE)
    lon = _inside(rng.gauss(district.centre[1], 0.03), district.centre[1], LON_RANGE)
    return PremisesIn(address=address, district=district.name, lat=lat, lon=lon)


def _inside(value: float, centre: float, bounds: tuple[float, float]) -> float:
    """Within 0.08° of the district's centre and inside the city's bounds, to 6 decimals (~0.1 m)."""
    value = min(max(value, centre - 0.08, bounds[0]), centre + 0.08, bounds[1])
    return round(value, 6)


def _household(n: int, rng: random.Random, customer: CustomerIn, premises: PremisesIn, shop: bool,
               opened_on: date, today: date) -> Household:
    # A household's average month: about 20 m³ (median), a shop's about 300 m³.
    average = Decimal(str(rng.lognormvariate(5.7 if shop else 3.0, 0.4)))
    starts = month_starts(today)
    register = (average * 12 * Decimal((starts[0] - opened_on).days) / 365).quantize(M3)
    readings = []
    for i, start in enumerate(starts):
        readings.append((datetime.combine(start, time(0), tzinfo=CHINA), register))
        if i < len(starts) - 1:
            register += _month_use(rng, average, start)
    this_month = (_month_use(rng, average, starts[-1]) * Decimal(today.day - 1) /
                  calendar.monthrange(today.year, today.month)[1]).quantize(M3)
    return Household(
        n=n, customer=customer, premises=premises,
        category="non_residential" if shop else "residential", subcategory="commercial" if shop else None,
        meter_id=VendorCloudSimulator.meter_id(n), meter_model="G6" if shop else "G2.5", opened_on=opened_on,
        replace_by=None if shop else opened_on.replace(year=opened_on.year + 10, day=1),
        readings=tuple(readings), register_now=readings[-1][1] + this_month,
    )


def _month_use(rng: random.Random, average: Decimal, start: date) -> Decimal:
    season = SEASON[start.month - 1]
    return (average * season * Decimal(str(rng.uniform(0.85, 1.15)))).quantize(M3)


def district_counts(city: Sequence[Household]) -> dict[str, int]:
    counts = dict.fromkeys(DISTRICTS, 0)
    for home in city:
        counts[home.premises.district] += 1
    return counts
