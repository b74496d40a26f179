"""The WeChat Pay connector's protocol code against WeChat Pay's own SDK (``wechatpayv3``), and its
client against the platform simulator over real loopback TCP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wechatpayv3.utils import aes_decrypt, rsa_sign, rsa_verify

from connectors.payments.wechatpay import signing
from connectors.payments.wechatpay.client import WeChatPayClient, WeChatPayError, fen
from connectors.payments.wechatpay.settings import WeChatPaySettings
from connectors.payments.wechatpay.simulator import WeChatPayPlatformSimulator, private_pem, public_pem
from connectors.payments.wechatpay.transaction import (
    NotPayable,
    account_of,
    bill_order_no,
    payment_from,
    top_up_order_no,
)
from hub.app import check_configuration
from hub.connectors.registry import ConnectorRegistry
from hub.errors import ConfigError, PermanentError
from hub.settings import load_settings
from tests.wechatpay_peer import (
    API_V3_KEY,
    APPID,
    MCHID,
    MERCHANT_SERIAL,
    PUBLIC_KEY_ID,
    connector_settings,
    keys,
    notification,
    sdk,
    sdk_accepts,
    signed,
    transaction,
)

ACCOUNT = "01JQ3ZK8W6V4T2R0P8N6M4K2H0"  # a ULID, like the core's account ids


def platform_keys() -> signing.PlatformKeys:
    return signing.PlatformKeys.from_pem({PUBLIC_KEY_ID: public_pem(keys()["platform"])})


# --- signatures and the resource, against the SDK ------------------------------------------------------


def test_a_notification_built_with_the_sdk_code_verifies_and_the_sdk_itself_accepts_it() -> None:
    body = notification(transaction(ACCOUNT))
    headers = signed(body)
    assert sdk_accepts(headers, body) is not None  # the peer is genuine: the SDK's own check passes
    got = signing.verify_platform(platform_keys(), headers, body, now=time.time(), window_s=300)
    assert (got.serial, got.nonce) == (PUBLIC_KEY_ID, headers["Wechatpay-Nonce"])
    plain = signing.decrypt_resource(API_V3_KEY.encode(), json.loads(body)["resource"])
    assert json.loads(plain)["out_trade_no"] == f"{ACCOUNT}-B1A2C"


@pytest.mark.parametrize("case", ["tampered", "stranger", "unknown serial", "signtest", "stale", "future"])
def test_what_the_sdk_refuses_we_refuse_with_the_reason(case: str) -> None:
    body = notification(transaction(ACCOUNT))
    headers = {
        "tampered": lambda: signed(body),
        "stranger": lambda: signed(body, signer="stranger"),
        "unknown serial": lambda: signed(body, serial="PUB_KEY_ID_0114999999999999999999999999"),
        "signtest": lambda: signed(body, signature=WeChatPayPlatformSimulator.probe_signature()),
        "stale": lambda: signed(body, timestamp=int(time.time()) - 301),
        "future": lambda: signed(body, timestamp=int(time.time()) + 301),
    }[case]()
    if case == "tampered":
        body = body.replace(b"encrypt-resource", b"encrypt-resourcf")
    with pytest.raises(signing.SignatureError) as err:
        signing.verify_platform(platform_keys(), headers, body, now=time.time(), window_s=300)
    reason = str(err.value)
    expected = {"tampered": "does not verify", "stranger": "does not verify", "unknown serial": "names no platform",
                "signtest": "SIGNTEST", "stale": "stale", "future": "stale"}[case]
    assert expected in reason
    if case in ("tampered", "stranger", "signtest"):
        assert sdk_accepts(headers, body) is None  # the SDK refuses these too


def test_an_unknown_serial_asks_the_fetch_hook_once_and_keeps_its_key() -> None:
    asked: list[str] = []
    platform = keys()["platform"].public_key()

    def fetch(serial: str) -> object:
        asked.append(serial)
        return platform if serial == "5157F09EFDC096DE15EBE81A47057A7232F1B8E1" else None

    ring = signing.PlatformKeys({}, fetch)  # type: ignore[arg-type]
    body = notification(transaction(ACCOUNT))
    for _ in range(2):
        signing.verify_platform(ring, signed(body, serial="5157F09EFDC096DE15EBE81A47057A7232F1B8E1"), body,
                                now=time.time(), window_s=300)
    assert asked == ["5157F09EFDC096DE15EBE81A47057A7232F1B8E1"]
    with pytest.raises(signing.UnknownSerial):
        ring.key_for("PUB_KEY_ID_0114000000000000000000000001")


def test_our_request_signature_is_the_sdks_byte_for_byte() -> None:
    """PKCS#1 v1.5 is deterministic: the SDK signing the same string gives the same signature."""
    merchant = keys()["merchant"]
    body = b'{"appid":"wx","amount":{"total":100}}'
    header = signing.authorization(mchid=MCHID, serial_no=MERCHANT_SERIAL, private_key=merchant, method="POST",
                                   path="/v3/pay/transactions/native", body=body, timestamp=1700000000, nonce="N1")
    fields = signing.parse_authorization(header)
    by_sdk = rsa_sign(merchant, f"POST\n/v3/pay/transactions/native\n1700000000\nN1\n{body.decode()}\n")
    assert fields == {"mchid": MCHID, "nonce_str": "N1", "timestamp": "1700000000", "serial_no": MERCHANT_SERIAL,
                      "signature": by_sdk}


def test_the_sdk_decrypts_our_resource_and_we_decrypt_its_encryption() -> None:
    resource = signing.encrypt_resource(API_V3_KEY.encode(), b'{"a": 1}', associated_data="transaction",
                                        original_type="transaction")
    assert aes_decrypt(resource["nonce"], resource["ciphertext"], resource["associated_data"], API_V3_KEY) == '{"a": 1}'
    with pytest.raises(signing.SignatureError, match="does not decrypt"):
        signing.decrypt_resource(b"X" * 32, resource)
    with pytest.raises(signing.SignatureError, match="does not decrypt"):
        signing.decrypt_resource(API_V3_KEY.encode(), {**resource, "associated_data": "certificate"})


# --- order numbers and the transaction -----------------------------------------------------------------


def test_order_numbers_carry_the_account_and_fit_wechats_limit() -> None:
    first = bill_order_no(ACCOUNT, "01JQ40000000000000000000AB")
    assert first == bill_order_no(ACCOUNT, "01JQ40000000000000000000AB")  # the same bill, the same order
    assert first != bill_order_no(ACCOUNT, "01JQ40000000000000000000AB", attempt=1)
    assert len(first) == 32
    assert account_of(first) == ACCOUNT
    assert account_of(top_up_order_no("A-10023")) == "A-10023"
    assert account_of("GAS2026030500000001") is None  # another system's numbering
    with pytest.raises(ValueError, match="cannot be carried"):
        bill_order_no("X" * 30, "b")


@given(st.from_regex(r"[0-9A-Za-z_-]{1,29}", fullmatch=True), st.text(min_size=1, max_size=40))
def test_any_account_id_survives_its_order_number(account_id: str, bill_id: str) -> None:
    number = bill_order_no(account_id, bill_id)
    assert len(number) <= 32
    assert account_of(number) == account_id


def test_a_paid_transaction_becomes_payment_received_in_yuan() -> None:
    payment = payment_from(transaction(ACCOUNT, fen=12345), mchid=MCHID)
    assert (payment.account_id, payment.amount, payment.channel.value) == (ACCOUNT, Decimal("123.45"), "wechat")
    assert payment.payer_ref == "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
    assert payment.paid_at.utcoffset() is not None
    other = payment_from(transaction("A10023", out_trade_no="GAS2026030500000001"), mchid=MCHID)
    assert other.account_id == "A10023"  # not our numbering: the account from attach


@pytest.mark.parametrize(("change", "reason"), [
    ({"mchid": "1900000001"}, "not ours"),
    ({"trade_state": "NOTPAY"}, "not SUCCESS"),
    ({"amount": {"total": "12.30"}}, "integer number of fen"),
    ({"out_trade_no": "GAS1", "attach": ""}, "names no account"),
    ({"success_time": "yesterday"}, "paid_at"),
])
def test_what_cannot_be_credited_says_why(change: dict[str, object], reason: str) -> None:
    with pytest.raises(NotPayable, match=reason):
        payment_from({**transaction(ACCOUNT), **change}, mchid=MCHID)


# --- settings and registration -------------------------------------------------------------------------


def test_the_connector_is_registered_and_its_settings_are_checked() -> None:
    cls, settings = ConnectorRegistry().settings_for("wechatpay", connector_settings())
    assert cls.kind == "wechatpay"
    assert isinstance(settings, WeChatPaySettings)
    assert settings.timestamp_window_s == 300
    lowered = ConnectorRegistry().settings_for("wechatpay", connector_settings(
        platform_keys={PUBLIC_KEY_ID.lower(): public_pem(keys()["platform"])}))[1]
    assert isinstance(lowered, WeChatPaySettings)
    assert list(lowered.platform_keys) == [PUBLIC_KEY_ID]  # environment variable names may come lower-cased
    with pytest.raises(ConfigError, match="32 bytes"):
        ConnectorRegistry().settings_for("wechatpay", connector_settings(api_v3_key="short"))
    with pytest.raises(ConfigError, match="platform_keys"):
        ConnectorRegistry().settings_for("wechatpay", connector_settings(platform_keys={}))


def test_gashub_check_names_the_missing_secrets() -> None:
    raw = {k: v for k, v in connector_settings().items() if k not in ("api_v3_key", "merchant_private_key")}
    settings = load_settings(connectors={"wechatpay": raw})
    problems = [str(p) for p in check_configuration(settings)]
    assert any("connectors.wechatpay" in p and "api_v3_key" in p and "merchant_private_key" in p for p in problems)


# --- the client against the simulator, over TCP --------------------------------------------------------


@pytest.fixture
async def platform() -> AsyncIterator[WeChatPayPlatformSimulator]:
    sim = WeChatPayPlatformSimulator(mchid=MCHID, appid=APPID, api_v3_key=API_V3_KEY,
                                     merchant_public_key=public_pem(keys()["merchant"]),
                                     platform_key=keys()["platform"], public_key_id=PUBLIC_KEY_ID)
    await sim.start()
    yield sim
    await sim.aclose()


@pytest.fixture
async def client(platform: WeChatPayPlatformSimulator) -> AsyncIterator[WeChatPayClient]:
    c = WeChatPayClient(base_url=platform.url, mchid=MCHID, appid=APPID, serial_no=MERCHANT_SERIAL,
                        private_key=keys()["merchant"], platform=platform_keys(), in_call_attempts=1)
    yield c
    await c.aclose()


async def test_order_query_and_refund_are_signed_verifiably_and_answers_verified(
        platform: WeChatPayPlatformSimulator, client: WeChatPayClient) -> None:
    number = bill_order_no(ACCOUNT, "01JQ40000000000000000000AB")
    code_url = await client.native_order(out_trade_no=number, description="燃气费 2026-02", amount=Decimal("168.00"),
                                         attach=ACCOUNT)
    assert code_url.startswith("weixin://wxpay/bizpayurl?pr=")
    again = await client.native_order(out_trade_no=number, description="燃气费 2026-02", amount=Decimal("168.00"),
                                      attach=ACCOUNT)
    assert again == code_url
    assert (await client.query(number))["trade_state"] == "NOTPAY"
    paid = platform.pay(number)
    queried = await client.query(number)
    assert (queried["trade_state"], queried["transaction_id"], queried["amount"]["total"]) == (
        "SUCCESS", paid["transaction_id"], 16800)
    assert payment_from(queried, mchid=MCHID).amount == Decimal("168.00")
    refund = await client.refund(out_refund_no="R-1", amount=Decimal("68.00"), total=Decimal("168.00"),
                                 transaction_id=paid["transaction_id"])
    assert (refund["status"], refund["amount"]["refund"]) == ("PROCESSING", 6800)
    with pytest.raises(WeChatPayError) as err:
        await client.refund(out_refund_no="R-2", amount=Decimal("100.01"), total=Decimal("168.00"),
                            out_trade_no=number)
    assert (err.value.status, err.value.code) == (403, "NOT_ENOUGH")

    assert [(s.method, s.verified) for s in platform.requests] == [
        ("POST", True), ("POST", True), ("GET", True), ("GET", True), ("POST", True), ("POST", True)]
    merchant = keys()["merchant"].public_key()
    for seen in platform.requests:  # and once more, with the SDK's own verification routine
        auth = signing.parse_authorization(seen.authorization)
        assert auth["serial_no"] == MERCHANT_SERIAL
        assert rsa_verify(f"{seen.method}\n{seen.path}\n{auth['timestamp']}", auth["nonce_str"], seen.body.decode(),
                          auth["signature"], merchant)
    assert platform.requests[2].path == f"/v3/pay/transactions/out-trade-no/{number}?mchid={MCHID}"


async def test_the_sdk_itself_orders_from_the_simulator_and_verifies_its_answer(
        platform: WeChatPayPlatformSimulator) -> None:
    """The simulator is a faithful peer: the SDK's requests pass its check, its answers pass the SDK's."""
    pay = sdk(platform.url)
    code, answer = await asyncio.to_thread(pay.pay, description="燃气费", out_trade_no=f"{ACCOUNT}-SDK01",
                                           amount={"total": 100}, notify_url="https://gas.example.cn/notify")
    assert code == 200
    assert json.loads(answer)["code_url"].startswith("weixin://")
    code, answer = await asyncio.to_thread(pay.query, out_trade_no=f"{ACCOUNT}-SDK01")
    assert (code, json.loads(answer)["trade_state"]) == (200, "NOTPAY")
    assert all(s.verified for s in platform.requests)
    headers, body = platform.notification(platform.pay(f"{ACCOUNT}-SDK01"))
    accepted = sdk_accepts(headers, body)
    assert accepted is not None
    assert accepted["resource"]["out_trade_no"] == f"{ACCOUNT}-SDK01"


async def test_a_wrongly_signed_request_or_answer_is_refused(platform: WeChatPayPlatformSimulator,
                                                             client: WeChatPayClient) -> None:
    stranger = WeChatPayClient(base_url=platform.url, mchid=MCHID, appid=APPID, serial_no=MERCHANT_SERIAL,
                               private_key=keys()["stranger"], platform=platform_keys(), in_call_attempts=1)
    try:
        with pytest.raises(WeChatPayError) as err:
            await stranger.query("nothing-1")
        assert (err.value.status, err.value.code) == (401, "SIGN_ERROR")
    finally:
        await stranger.aclose()
    assert platform.requests[-1].verified is False
    impostor = WeChatPayPlatformSimulator(mchid=MCHID, appid=APPID, api_v3_key=API_V3_KEY,
                                          merchant_public_key=public_pem(keys()["merchant"]),
                                          platform_key=keys()["stranger"], public_key_id=PUBLIC_KEY_ID)
    await impostor.start()
    fooled = WeChatPayClient(base_url=impostor.url, mchid=MCHID, appid=APPID, serial_no=MERCHANT_SERIAL,
                             private_key=keys()["merchant"], platform=platform_keys(), in_call_attempts=1)
    try:
        with pytest.raises(PermanentError, match="signature is not valid"):
            await fooled.native_order(out_trade_no=f"{ACCOUNT}-X1", description="x", amount=Decimal("1.00"))
    finally:
        await fooled.aclose()
        await impostor.aclose()


def test_amounts_go_out_in_fen() -> None:
    assert fen(Decimal("168.00")) == 16800
    assert fen(Decimal("0.01")) == 1
    with pytest.raises(ValueError, match="fen"):
        fen(Decimal("1.005"))
    assert private_pem(keys()["merchant"]).startswith("-----BEGIN PRIVATE KEY-----")
