"""The Alipay connector's protocol code against python-alipay-sdk, and its client against the gateway
simulator over real loopback TCP."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from alipay.exceptions import AliPayValidationError
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from connectors.demo.run import DEMO_ALIPAY_APP_ID, alipay_connector, demo_routes, demo_settings
from connectors.http_sms.connector import HttpSmsConnector
from connectors.payments.alipay import signing
from connectors.payments.alipay.client import AlipayClient, AlipayError, amount_text
from connectors.payments.alipay.settings import AlipaySettings
from connectors.payments.alipay.simulator import AlipayGatewaySimulator, private_pem, public_pem
from connectors.payments.alipay.trade import BEIJING, NotPayable, bill_order_no, payment_from, yuan
from connectors.tax.connector import TaxConnector
from connectors.valve_http.connector import ValveHttpConnector
from core.catalogue import CATALOGUE
from core.handlers import HANDLERS
from hub.app import check_configuration
from hub.connectors.registry import ConnectorRegistry
from hub.errors import ConfigError, PermanentError
from hub.mapping import load_mappings
from hub.routing.loader import TargetCatalog, check_routes, read_specs
from hub.settings import load_settings
from tests.alipay_peer import (
    APP_ID,
    as_alipay,
    as_merchant,
    connector_settings,
    form_params,
    keys,
    sdk_accepts,
    signed_form,
    trade,
)

ACCOUNT = "01JQ3ZK8W6V4T2R0P8N6M4K2H0"


def alipay_key() -> object:
    return keys()["alipay"].public_key()


def verify(params: dict[str, str]) -> None:
    signing.verify_notification(keys()["alipay"].public_key(), params)


# --- notifications, against the SDK --------------------------------------------------------------------


def test_a_notification_signed_by_the_sdk_verifies_and_the_sdk_itself_accepts_it() -> None:
    body = signed_form(trade(ACCOUNT, subject="燃气费 2026-02 & 其他=1+1"))
    assert sdk_accepts(body)
    form = signing.parse_form(body)
    assert form.charset == "utf-8"
    assert form.params["subject"] == "燃气费 2026-02 & 其他=1+1"  # URL-decoded before verifying
    verify(form.params)


@pytest.mark.parametrize("case", ["tampered amount", "stranger", "sign_type signed", "sign missing", "RSA1",
                                  "extra field", "not base64"])
def test_what_does_not_carry_alipays_signature_is_refused(case: str) -> None:
    body = signed_form(trade(ACCOUNT), signer="stranger" if case == "stranger" else "alipay",
                       sign_type="RSA" if case == "RSA1" else "RSA2")
    params = signing.parse_form(body).params
    if case == "tampered amount":
        params["total_amount"] = "923.45"
    elif case == "sign_type signed":  # signed with sign_type inside the string: not how Alipay signs a notify
        unsigned = {k: v for k, v in params.items() if k != "sign"}
        params["sign"] = signing.sign(keys()["alipay"], signing.request_content(unsigned).encode())
    elif case == "sign missing":
        del params["sign"]
    elif case == "extra field":
        params["passback_params"] = "A-666"
    elif case == "not base64":
        params["sign"] = "!!" + params["sign"][2:]
    with pytest.raises(signing.SignatureError) as err:
        verify(params)
    expected = {"sign missing": "no sign", "RSA1": "not RSA2"}.get(case, "does not verify")
    assert expected in str(err.value)
    if case in ("tampered amount", "stranger", "extra field"):
        sdk_params = dict(params)
        assert not as_merchant().verify({k: v for k, v in sdk_params.items() if k != "sign"}, sdk_params["sign"])


def test_empty_values_verify_whether_alipay_signed_them_or_left_them_out() -> None:
    fields = trade(ACCOUNT, body="")
    kept = signing.parse_form(signed_form(fields)).params  # the SDK signs body= as well
    verify(kept)
    left_out = {**fields, "notify_time": kept["notify_time"]}
    sign = signing.sign(keys()["alipay"], signing.notification_content(left_out, drop_empty=True).encode())
    verify({**left_out, "sign": sign, "sign_type": "RSA2"})
    with pytest.raises(signing.SignatureError):  # but an emptied value is still a change
        verify({**kept, "subject": ""})


def test_a_gbk_notification_is_decoded_in_its_charset() -> None:
    fields = trade(ACCOUNT, charset="GBK", notify_time="2026-03-05 09:30:02")
    sign = signing.sign(keys()["alipay"], signing.notification_content(fields).encode())
    body = urlencode({**fields, "sign": sign, "sign_type": "RSA2"}, encoding="gbk").encode()
    form = signing.parse_form(body)
    assert (form.charset, form.params["subject"]) == ("gbk", "燃气费 2026-02")
    verify(form.params)


@pytest.mark.parametrize(("body", "words"), [
    (b"a=1&a=2", "appears twice"),
    ("subject=燃气".encode(), "raw non-ASCII"),
    (b"charset=latin-9&a=1", "not one Alipay uses"),
    (b"subject=%FF%FE", "not a form in utf-8"),
    (b"just text", "not a form"),
])
def test_a_body_alipay_would_not_send_is_a_form_error(body: bytes, words: str) -> None:
    with pytest.raises(signing.FormError, match=words):
        signing.parse_form(body)


@given(st.dictionaries(st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=8),
                       st.text(max_size=20).filter(lambda s: "\x00" not in s), max_size=6))
def test_any_form_survives_encoding_and_verifies(fields: dict[str, str]) -> None:
    fields = {k: v for k, v in fields.items() if k not in ("sign", "sign_type", "charset")}
    sign = signing.sign(keys()["alipay"], signing.notification_content(fields).encode())
    body = urlencode({**fields, "sign": sign, "sign_type": "RSA2"}, quote_via=quote).encode()
    params = signing.parse_form(body).params
    assert {k: v for k, v in params.items() if k not in ("sign", "sign_type")} == fields
    verify(params)


def test_our_request_signature_is_the_sdks_byte_for_byte() -> None:
    client = AlipayClient(gateway_url="http://127.0.0.1:1/gateway.do", app_id=APP_ID, private_key=keys()["app"],
                          alipay_public_key=keys()["alipay"].public_key())  # type: ignore[arg-type]
    params = client.request_params("alipay.trade.query", {"out_trade_no": "A-1"},
                                   now=datetime(2026, 3, 5, 9, 30, tzinfo=BEIJING))
    assert params["timestamp"] == "2026-03-05 09:30:00"
    by_sdk = form_params(as_merchant().sign_data({k: v for k, v in params.items() if k != "sign"}).encode())
    assert by_sdk["sign"] == params["sign"]


def test_keys_load_as_pem_or_the_bare_base64_alipay_hands_out() -> None:
    key = keys()["app"]
    pkcs1 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption())
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    loaded = signing.load_private_key(base64.b64encode(pkcs1).decode())
    assert loaded.private_numbers() == key.private_numbers()
    public = signing.load_public_key(base64.b64encode(spki).decode())
    assert public.public_numbers() == key.public_key().public_numbers()
    with pytest.raises(ValueError, match="PEM or base64"):
        signing.load_public_key("not a key!")


def test_an_answers_signed_text_is_cut_at_the_nodes_own_braces() -> None:
    raw = '{"alipay_trade_query_response" : {"code":"10000","msg":"a } \\" {","x":{"y":[1,{}]}},"sign":"S=="}'
    node, sign = signing.answer_node(raw, "alipay_trade_query_response")
    assert node == '{"code":"10000","msg":"a } \\" {","x":{"y":[1,{}]}}'
    assert sign == "S=="
    assert signing.answer_node('{"error_response":{"code":"40002"}}', "alipay_trade_query_response") == (None, None)
    with pytest.raises(ValueError, match="not a JSON object"):
        signing.answer_node("[1]", "x")


# --- trades --------------------------------------------------------------------------------------------


def test_a_paid_trade_becomes_payment_received_in_yuan() -> None:
    payment = payment_from(trade(ACCOUNT, total="200.50"))
    assert (payment.account_id, payment.amount, payment.channel.value) == (ACCOUNT, Decimal("200.50"), "alipay")
    assert payment.paid_at == datetime(2026, 3, 5, 9, 30, tzinfo=BEIJING)
    assert payment.payer_ref == "2088202954065786"
    finished = payment_from(trade(ACCOUNT, status="TRADE_FINISHED"))
    assert finished.amount == Decimal("123.45")
    other = payment_from(trade("", out_trade_no="GAS2026030500000001", passback_params="A10023"))
    assert other.account_id == "A10023"  # not our numbering: the account from passback_params


@pytest.mark.parametrize(("change", "reason"), [
    ({"trade_status": "WAIT_BUYER_PAY"}, "not TRADE_SUCCESS"),
    ({"total_amount": "12345"}, "yuan"),  # fen would be a hundredfold credit; only "123.45" passes
    ({"total_amount": "1.005"}, "two places"),
    ({"total_amount": "-1.00"}, "yuan"),
    ({"total_amount": "0.00"}, "amount"),
    ({"out_trade_no": "GAS1"}, "names no account"),
    ({"gmt_payment": "2026/03/05"}, "gmt_payment"),
    ({"trade_no": ""}, "transaction_id"),
])
def test_what_cannot_be_credited_says_why(change: dict[str, str], reason: str) -> None:
    with pytest.raises(NotPayable, match=reason):
        payment_from({**trade(ACCOUNT), **change})


def test_amounts_are_yuan_with_two_places_both_ways() -> None:
    assert yuan("168.00") == Decimal("168.00")
    with pytest.raises(ValueError, match="two places"):
        yuan("168")
    assert amount_text(Decimal("168")) == "168.00"
    assert amount_text(Decimal("0.01")) == "0.01"
    with pytest.raises(ValueError, match="two places"):
        amount_text(Decimal("1.005"))
    with pytest.raises(ValueError, match="two places"):
        yuan("1e3")


# --- settings and registration -------------------------------------------------------------------------


def test_the_connector_is_registered_and_its_settings_are_checked() -> None:
    cls, settings = ConnectorRegistry().settings_for("alipay", connector_settings())
    assert cls.kind == "alipay"
    assert isinstance(settings, AlipaySettings)
    assert settings.notify_window_s == 26 * 3600
    with pytest.raises(ConfigError, match="app_id"):
        ConnectorRegistry().settings_for("alipay", connector_settings(app_id="wx123"))
    with pytest.raises(ConfigError, match="app_private_key"):
        ConnectorRegistry().settings_for("alipay", connector_settings(app_private_key="MIIBroken"))
    with pytest.raises(ConfigError, match="alipay_public_key"):
        ConnectorRegistry().settings_for("alipay", connector_settings(alipay_public_key="nonsense"))


def test_gashub_check_names_the_missing_secret() -> None:
    raw = {k: v for k, v in connector_settings().items() if k != "app_private_key"}
    problems = [str(p) for p in check_configuration(load_settings(connectors={"alipay": raw}))]
    assert any("connectors.alipay" in p and "app_private_key" in p for p in problems)


# --- the client against the simulator, over TCP --------------------------------------------------------


@pytest.fixture
async def gateway() -> AsyncIterator[AlipayGatewaySimulator]:
    sim = AlipayGatewaySimulator(app_id=APP_ID, app_public_key=public_pem(keys()["app"]), alipay_key=keys()["alipay"])
    await sim.start()
    yield sim
    await sim.aclose()


def client_for(url: str, *, app_key: str = "app", alipay_key: str = "alipay") -> AlipayClient:
    return AlipayClient(gateway_url=url, app_id=APP_ID, private_key=keys()[app_key],
                        alipay_public_key=keys()[alipay_key].public_key(), in_call_attempts=1,
                        notify_url="https://gas.example.cn/partners/alipay/notify")


async def test_precreate_and_query_are_signed_verifiably_and_answers_verified(gateway: AlipayGatewaySimulator) -> None:
    client = client_for(gateway.gateway_url)
    try:
        number = bill_order_no(ACCOUNT, "01JQ40000000000000000000AB")
        qr = await client.precreate(out_trade_no=number, subject="燃气费 2026-02", amount=Decimal("168.00"))
        assert qr.startswith("https://qr.alipay.com/")
        assert await client.precreate(out_trade_no=number, subject="燃气费 2026-02", amount=Decimal("168")) == qr
        with pytest.raises(AlipayError) as err:
            await client.query(out_trade_no=number)  # not scanned yet: no trade
        assert (err.value.code, err.value.sub_code) == ("40004", "ACQ.TRADE_NOT_EXIST")
        paid = gateway.pay(number)
        answer = await client.query(out_trade_no=number)
        assert (answer["trade_status"], answer["trade_no"], answer["total_amount"]) == (
            "TRADE_SUCCESS", paid["trade_no"], "168.00")
        assert payment_from(answer).amount == Decimal("168.00")
        with pytest.raises(AlipayError) as err:
            await client.precreate(out_trade_no=number, subject="x", amount=Decimal("168.00"))
        assert err.value.sub_code == "ACQ.TRADE_HAS_SUCCESS"
    finally:
        await client.aclose()
    assert [c.verified for c in gateway.calls] == [True] * 5
    assert gateway.notify_urls[number] == "https://gas.example.cn/partners/alipay/notify"
    for call in gateway.calls:  # and once more, with the SDK's own signing routine
        unsigned = {k: v for k, v in call.params.items() if k != "sign"}
        assert form_params(as_merchant().sign_data(unsigned).encode())["sign"] == call.params["sign"]


async def test_the_sdk_itself_calls_the_simulator_and_verifies_its_answers(gateway: AlipayGatewaySimulator) -> None:
    """The simulator is a faithful peer: the SDK's requests pass its check, its answers pass the SDK's."""
    sdk = as_merchant(gateway.gateway_url)
    answer = await asyncio.to_thread(sdk.api_alipay_trade_precreate, subject="燃气费 2026-02",
                                     out_trade_no=f"{ACCOUNT}-SDK01", total_amount="10.00")
    assert answer["code"] == "10000"
    assert answer["qr_code"].startswith("https://qr.alipay.com/")
    gateway.pay(f"{ACCOUNT}-SDK01")
    answer = await asyncio.to_thread(sdk.api_alipay_trade_query, out_trade_no=f"{ACCOUNT}-SDK01")
    assert (answer["trade_status"], answer["total_amount"]) == ("TRADE_SUCCESS", "10.00")
    assert all(c.verified for c in gateway.calls)
    form = gateway.notification(gateway.orders[f"{ACCOUNT}-SDK01"])
    assert as_merchant().verify({k: v for k, v in form.items() if k != "sign"}, form["sign"])


async def test_a_wrongly_signed_request_or_answer_is_refused(gateway: AlipayGatewaySimulator) -> None:
    stranger = client_for(gateway.gateway_url, app_key="stranger")
    try:
        with pytest.raises(AlipayError) as err:
            await stranger.query(out_trade_no="nothing-1")
        assert err.value.sub_code == "isv.invalid-signature"
    finally:
        await stranger.aclose()
    assert gateway.calls[-1].verified is False
    impostor = AlipayGatewaySimulator(app_id=APP_ID, app_public_key=public_pem(keys()["app"]),
                                      alipay_key=keys()["stranger"])
    await impostor.start()
    fooled = client_for(impostor.gateway_url)
    try:
        with pytest.raises(PermanentError, match="signature does not verify"):
            await fooled.precreate(out_trade_no=f"{ACCOUNT}-X1", subject="x", amount=Decimal("1.00"))
        with pytest.raises(AliPayValidationError):  # the SDK refuses it too
            await asyncio.to_thread(as_merchant(impostor.gateway_url).api_alipay_trade_precreate, subject="x",
                                    out_trade_no=f"{ACCOUNT}-X2", total_amount="1.00")
    finally:
        await fooled.aclose()
        await impostor.aclose()


def test_the_simulators_notification_is_what_the_sdk_signs() -> None:
    sim = AlipayGatewaySimulator(app_id=APP_ID, app_public_key=public_pem(keys()["app"]), alipay_key=keys()["alipay"])
    sim.orders["A-1-XY"] = {"out_trade_no": "A-1-XY", "total_amount": "5.00", "trade_status": "WAIT_BUYER_PAY"}
    form = sim.notification(sim.pay("A-1-XY"))
    unsigned = {k: v for k, v in form.items() if k not in ("sign", "sign_type")}
    assert form_params(as_alipay().sign_data(unsigned).encode())["sign"] == form["sign"]


def test_the_production_routes_credit_alipay_payments() -> None:
    """The repository's routes take the Alipay connector's ``payment.received`` to the core: every
    message type, target and output is accounted for."""
    root = Path(__file__).resolve().parents[2]
    folder = root / "routes"
    targets = TargetCatalog(core=HANDLERS, connectors={"sms": dict(HttpSmsConnector.actions),
                                                       "valves": dict(ValveHttpConnector.actions),
                                                       "tax": dict(TaxConnector.actions)})
    problems = check_routes(folder, catalogue=CATALOGUE, mappings=load_mappings(root / "mappings"), targets=targets,
                            queue_prefix="gashub")
    assert [str(p) for p in problems] == []
    specs, _ = read_specs(folder)
    assert [s.to for _, s in specs if s.name == "payments"] == ["core:record_payment"]


def test_the_demo_configures_the_connector_for_its_gateway_simulator(tmp_path: Path) -> None:
    sim = AlipayGatewaySimulator(app_id=DEMO_ALIPAY_APP_ID, app_public_key=public_pem(keys()["app"]))
    settings = demo_settings(database_url="sqlite+aiosqlite:///:memory:", http_port=0, ops_token="t" * 20,
                             vendor_token="v", routes_dir=demo_routes(tmp_path / "routes"),
                             sms_url="http://127.0.0.1:1", valves_url="http://127.0.0.1:2",
                             tax_url="http://127.0.0.1:3", alipay=alipay_connector(sim, private_pem(keys()["app"])))
    assert check_configuration(settings) == []
    _, built = ConnectorRegistry().settings_for("alipay", settings.connectors["alipay"])
    assert isinstance(built, AlipaySettings)
    assert (built.app_id, built.gateway_url) == (DEMO_ALIPAY_APP_ID, sim.gateway_url)
