"""Settings: ``GASHUB_*`` environment variables over ``config/*.toml`` over defaults.

Nesting uses ``__`` (``GASHUB_HTTP__PORT``); the common ones also have flat names
(``GASHUB_DATABASE_URL``, ``GASHUB_AMQP_URL``, ``GASHUB_HTTP_PORT``). Unknown keys are an error.
Secrets are ``SecretStr`` and come from the environment or a secrets folder, never from a committed
file. Settings are built once at start-up (``load_settings``) and passed down.
"""

from __future__ import annotations

import os
from datetime import time
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from core.alarms import AlarmPolicy
from core.payments import PaymentSettings
from core.prepaid import PrepaidSettings
from core.readings import ReadingsSettings
from core.workorders import WorkOrderSettings
from hub.errors import ConfigError

DEFAULT_CONFIG = Path("config/gashub.toml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)


class ConsumerSettings(_Section):
    prefetch: int = Field(default=2000, ge=1)
    max_batch: int = Field(default=500, ge=1)
    max_message_bytes: int = Field(default=1_048_576, ge=1024)
    connector_concurrency: int = Field(default=32, ge=1)
    parallel: int = Field(default=2, ge=1, le=16)
    """Consumers per route in each process."""
    run_routes: Literal["all", "held"] = "all"
    """What ``gashub run`` consumes. ``all`` (the default): every route, so one process is a whole hub.
    ``held``, for a deployment with ``gashub worker`` processes beside it: only the safety lane's routes
    and those whose connector delivers over connections ``gashub run`` holds (DTUs); the workers take
    the rest, and ``gashub run``'s event loop is left to the partners' pushes (measured: 1,746 → 1,978
    CTWing pushes/s answered with one worker, ``docs/performance.md``). Needs RabbitMQ. ``gashub run``'s
    ``/ready`` speaks for its own routes; the ops dashboard flags a route that no process consumes."""


class OpsSettings(_Section):
    token: SecretStr | None = None
    """Bearer token for ``/ops``. Without one, ``/ops`` answers 503 and says how to set it."""


class AuditSettings(_Section):
    flush_interval_ms: int = Field(default=50, ge=1)


class BreakerSettings(_Section):
    failure_threshold: int = Field(default=5, ge=1)
    reset_after_s: float = Field(default=10.0, gt=0)


class OutboxSettings(_Section):
    poll_interval_ms: int = Field(default=200, ge=10)
    batch: int = Field(default=500, ge=1)


class CoreSettings(_Section):
    keys: dict[str, SecretStr] = Field(default={}, repr=False)
    """Master keys for personal data at rest, id → base64 of 32 bytes (``GASHUB_CORE__KEYS__K1=…``).
    Generate one with ``python -c "import secrets, base64; print(base64.b64encode(secrets.token_bytes(32))
    .decode())"`` (one line)."""
    current_key: str | None = None
    """The key new data is written with; may be left out when there is only one key."""
    payments: PaymentSettings = PaymentSettings()
    """Invoice policy of the payment handlers (``[core.payments]``, ``GASHUB_CORE__PAYMENTS__INVOICE_PER``…)."""
    readings: ReadingsSettings = ReadingsSettings()
    """Reading validation (VEE): every rule's switch and threshold, and what ``core:record_reading``
    does with findings (``GASHUB_CORE__READINGS__RULES__DISABLED_RULES='["zero_use"]'``,
    ``[core.readings] notify = ["leak"]``). See ``core.readings.ReadingsSettings``."""
    prepaid: PrepaidSettings = PrepaidSettings()
    """Prepaid accounts (``[core.prepaid]``, ``GASHUB_CORE__PREPAID__ENABLED=true``): each accepted reading
    of a prepaid meter is priced with the tariff book in the database (``core.tariffs``) and deducted; a
    low balance is told once until the next top-up (``low_balance_yuan``, ``low_balance_days``); the
    valve closes at zero (``valve.command`` on the safety lane) and reopens only with an on-site
    confirmation (``POST /api/v1/meters/{id}/valve/reopen``). Off by default: routes must take
    ``valve.command`` and ``notification.requested``. See ``core.prepaid.PrepaidSettings``."""
    alarms: AlarmPolicy = AlarmPolicy()
    """What each alarm kind makes ``core:record_alarm`` do (``[core.alarms.leak] close_valve = true``,
    ``notify_user = "alarm"``, ``work_order = {category = "emergency_repair", priority = "emergency"}``,
    ``severity = 5``); a kind's section overrides only the keys it gives. See ``core.alarms.AlarmPolicy``."""
    work_orders: WorkOrderSettings = WorkOrderSettings()
    """Work-order categories with their SLA commitment (``minutes`` or ``working_days``, until ``on_site``
    or ``handled``) and the calendar (``holidays``, ``extra_working_days``, ``timezone``). See
    ``core.workorders.WorkOrderSettings``."""

    @model_validator(mode="after")
    def _alarm_orders_have_categories(self) -> Self:
        self.alarms.check(self.work_orders)
        return self


class BillingSettings(_Section):
    tariffs_file: Path = Path("config/tariffs.toml")
    """The tariff book's seed (versions by effective date, see config/tariffs.toml): imported into a
    database that has no tariff yet; afterwards ``gashub tariffs import`` adds its new versions."""
    daily_at: time | None = time(2, 30)
    """Local time (Asia/Shanghai) of the daily run that bills the month before; empty = no daily run.
    Runs are idempotent: a daily run bills only what earlier runs could not (a late reading)."""


class Settings(BaseSettings):
    """Everything a hub process needs to start."""

    model_config = SettingsConfigDict(
        env_prefix="GASHUB_",
        env_nested_delimiter="__",
        extra="forbid",
        secrets_dir=os.environ.get("GASHUB_SECRETS_DIR") or None,
    )

    database_url: str = "sqlite+aiosqlite:///var/gashub.db"
    database_pool_size: int = Field(default=10, ge=1, le=200)
    """PostgreSQL connections per pool and process (``GASHUB_DATABASE_POOL_SIZE``). The hub's pool and
    the API's page-reads pool each hold this many; PostgreSQL's ``max_connections`` must cover every
    process's pools."""
    amqp_url: SecretStr | None = None
    """RabbitMQ URL (``amqp://user:pass@host:5672/vhost``). Unset: the in-memory transport."""
    exchange: str = "gashub"
    queue_prefix: str = "gashub"
    routes_dir: Path = Path("routes")
    mappings_dir: Path = Path("mappings")
    log_level: str = "INFO"
    log_json: bool = True
    http: HttpSettings = HttpSettings()
    consumer: ConsumerSettings = ConsumerSettings()
    ops: OpsSettings = OpsSettings()
    audit: AuditSettings = AuditSettings()
    breaker: BreakerSettings = BreakerSettings()
    outbox: OutboxSettings = OutboxSettings()
    core: CoreSettings = CoreSettings()
    billing: BillingSettings = BillingSettings()
    connectors: dict[str, dict[str, Any]] = Field(default={}, repr=False)
    """Per-connector settings, validated by each connector's own settings model."""

    @model_validator(mode="before")
    @classmethod
    def _flat_http_port(cls, values: Any) -> Any:
        port = os.environ.get("GASHUB_HTTP_PORT")
        if port and isinstance(values, dict):
            http = dict(values.get("http") or {})
            http["port"] = port
            values["http"] = http
        return values

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        named = os.environ.get("GASHUB_CONFIG")
        config_file = Path(named or DEFAULT_CONFIG)
        if named and not config_file.is_file():
            raise ConfigError(f"GASHUB_CONFIG names {config_file}, which is not a file: fix the path or unset it")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, file_secret_settings]
        if config_file.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @model_validator(mode="after")
    def _held_routes_need_workers(self) -> Self:
        if self.consumer.run_routes == "held" and self.amqp_url is None:
            raise ValueError("consumer.run_routes = 'held' leaves routes to `gashub worker` processes, which need "
                             "RabbitMQ: set GASHUB_AMQP_URL, or leave run_routes at 'all'")
        return self

    @property
    def uses_broker(self) -> bool:
        return self.amqp_url is not None

    def redacted_database_url(self) -> str:
        from sqlalchemy.engine import make_url

        return make_url(self.database_url).render_as_string(hide_password=True)


def load_settings(**overrides: Any) -> Settings:
    """Build settings once; configuration mistakes become a ``ConfigError`` that names the key."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(
            f"{problems}. Check config/*.toml and GASHUB_* environment variables "
            "(see config/production.example.toml)."
        ) from None
