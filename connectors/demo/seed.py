"""Load the demo city into a fresh database through the core's own services, as production would:
``open_account`` (holders encrypted and blind-indexed with the hub's keys), ``install_meter``, and the
year of monthly readings through ``core:record_reading`` as a backfill (``run_rules = false``: the
readings of a migration from a legacy system, stored as they come with quality ``unvalidated``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from connectors.demo.city import CHINA, Household
from core.accounts import Privacy, open_account
from core.catalogue.messages import MeterReading, ReadingSource
from core.config import CoreConfig
from core.handlers import build_handlers
from core.messages import Incoming
from core.meters import install_meter
from core.readings import ReadingsSettings
from hub.ids import new_id
from hub.store.db import Database

BACKFILL = ReadingsSettings(run_rules=False)


@dataclass(frozen=True, slots=True)
class SeededAccount:
    account_id: str
    account_number: str
    meter_id: str
    kind: str
    district: str


@dataclass(frozen=True, slots=True)
class Seeded:
    accounts: list[SeededAccount]
    readings: int
    seconds: float


async def seed_city(
    db: Database,
    privacy: Privacy,
    city: Sequence[Household],
    *,
    batch: int = 25,
    progress: Callable[[int], None] | None = None,
) -> Seeded:
    """Open every household's account, install its meter and load its readings; ``progress`` gets the
    number of accounts done after each batch (one transaction per batch)."""
    record_reading = build_handlers(CoreConfig(privacy=privacy, readings=BACKFILL))["record_reading"].fn
    started = time.perf_counter()
    accounts: list[SeededAccount] = []
    readings = 0
    for first in range(0, len(city), batch):
        homes = city[first:first + batch]
        items: list[Incoming] = []
        async with db.begin() as conn:
            for home in homes:
                opened_at = datetime.combine(home.opened_on, datetime.min.time(), tzinfo=CHINA) + timedelta(hours=9)
                view = await open_account(conn, privacy, f"demo-city-{home.n:06d}", home.customer, home.premises,
                                          home.category, "postpaid", subcategory=home.subcategory,
                                          opened_at=opened_at)
                await install_meter(conn, home.meter_id, view.account_id, model=home.meter_model,
                                    installed_at=home.opened_on, replace_by=home.replace_by)
                accounts.append(SeededAccount(view.account_id, view.account_number, home.meter_id, home.kind,
                                              home.premises.district))
                items += [_reading(home.meter_id, at, volume) for at, volume in home.readings]
            await record_reading(conn, items)
        readings += len(items)
        if progress is not None:
            progress(len(accounts))
    return Seeded(accounts, readings, time.perf_counter() - started)


def _reading(meter_id: str, at: datetime, volume: object) -> Incoming:
    message_id = new_id()
    data = MeterReading.model_validate({"meter_id": meter_id, "read_at": at, "volume_m3": volume,
                                        "source": ReadingSource.VENDOR})
    return Incoming(message_id=message_id, type="meter.reading", subject=meter_id, correlation_id=message_id,
                    data=data)
