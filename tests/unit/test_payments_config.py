"""How the payment handlers get their configuration: ``[core.payments]`` and the personal-data keys,
bound into the handler table by the composition root; routes to them are refused without keys."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from core.handlers import HANDLERS
from core.handlers.payments import PaymentHandlers
from core.payments import InvoiceScope
from core.privacy import generate_key
from hub.app import Hub, check_configuration
from hub.errors import ConfigError
from hub.settings import Settings, load_settings
from tests.flow.tax_stand_in import registry

REPO = Path(__file__).resolve().parents[2]
ROUTE = """
[[route]]
name = "payments"
from = "payment.received"
to = "core:record_payment"

[[route]]
name = "tax-issue"
from = "invoice.requested"
to = "tax:issue"

[[route]]
name = "tax-answers"
from = "invoice.failed"
to = "core:record_invoice_failed"
"""


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No GASHUB_* variable from outside; the tax stand-in known to ``gashub check`` as a connector kind."""
    for key in list(os.environ):
        if key.startswith("GASHUB_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("hub.app.ConnectorRegistry", registry)
    return monkeypatch


def _settings(tmp_path: Path, routes: str, **overrides: Any) -> Settings:
    (tmp_path / "routes").mkdir(exist_ok=True)
    (tmp_path / "routes" / "pay.toml").write_text(routes)
    return load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/h.db", routes_dir=tmp_path / "routes",
                         mappings_dir=REPO / "mappings", connectors={"tax": {"kind": "tax_stand_in"}}, **overrides)


def test_the_invoice_scope_comes_from_settings_and_the_environment(env: pytest.MonkeyPatch) -> None:
    assert load_settings().core.payments.invoice_per is InvoiceScope.PAYMENT
    assert load_settings(core={"payments": {"invoice_per": "bill"}}).core.payments.invoice_per is InvoiceScope.BILL
    env.setenv("GASHUB_CORE__PAYMENTS__INVOICE_PER", "bill")
    env.setenv("GASHUB_CORE__PAYMENTS__TAX_CODE", "1" * 19)
    s = load_settings()
    assert (s.core.payments.invoice_per, s.core.payments.tax_code) == (InvoiceScope.BILL, "1" * 19)
    with pytest.raises(ConfigError, match=r"core\.payments\.invoice_per"):
        load_settings(core={"payments": {"invoice_per": "month"}})
    with pytest.raises(ConfigError, match=r"core\.payments\.vat"):
        load_settings(core={"payments": {"vat": "0.09"}})


async def test_a_route_to_a_payment_handler_needs_the_core_keys(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = _settings(tmp_path, ROUTE)
    with pytest.raises(ConfigError, match="GASHUB_CORE__KEYS__") as caught:
        Hub.build(settings, registry=registry())
    assert "'payments'" in str(caught.value)
    problems = check_configuration(settings)
    assert [p.where for p in problems] == ["core.keys"]
    assert "core:record_payment" in str(problems[0])


async def test_the_hub_binds_its_settings_and_keys_into_the_handlers(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = _settings(tmp_path, ROUTE, core={"keys": {"k1": generate_key()}, "payments": {"invoice_per": "bill"}})
    assert check_configuration(settings) == []
    hub = Hub.build(settings, registry=registry())
    try:
        handler = hub.runtimes["payments"].route.core_handler
        assert handler is not None
        bound = getattr(handler.fn, "__self__", None)
        assert isinstance(bound, PaymentHandlers)
        assert bound.payments.settings.invoice_per is InvoiceScope.BILL
        assert bound.payments.privacy is hub.privacy is not None
        assert handler is not HANDLERS["record_payment"]  # the default table has no keys
    finally:
        await hub.db.aclose()


def test_handlers_that_touch_personal_data_say_so() -> None:
    assert {name for name, h in HANDLERS.items() if h.personal_data} == {
        "record_payment", "record_refund", "record_invoice_issued", "notify_bill", "record_sms_reply"}
    assert HANDLERS["record_payment"].emits == ("invoice.requested",)
