"""The UnionPay connector's protocol code: against a notification UnionPay itself signed, against an
independent computation of the 5.1.0 scheme, and against the simulator's certificate chain."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from connectors.payments.notify import Refused
from connectors.payments.unionpay import signing
from connectors.payments.unionpay.client import UnionPayClient, UnionPayError, parse_answer
from connectors.payments.unionpay.connector import parse_form
from connectors.payments.unionpay.settings import UnionPaySettings
from connectors.payments.unionpay.simulator import UnionPaySimulator
from connectors.payments.unionpay.transaction import NotPaid, NotPayable, payment_from
from hub.connectors.registry import ConnectorRegistry
from hub.errors import ConfigError, PermanentError
from tests.unionpay_peer import (
    ACP_TEST_SIGNED_AT,
    MER_ID,
    MERCHANT_CERT_ID,
    acp_test_fields,
    connector_settings,
    forger,
    merchant_key,
    simulator,
)

ACCOUNT = "01JQ3ZK8W6V4T2R0P8N6M4K2H0"


def chain() -> signing.UnionPayTrust:
    sim = simulator()
    return signing.UnionPayTrust.from_pem(root=sim.root_pem, middle=sim.middle_pem)


# --- what UnionPay itself signed -----------------------------------------------------------------------


def test_a_notification_signed_by_unionpay_verifies_with_its_certificate_pinned() -> None:
    fields = acp_test_fields()
    trust = signing.UnionPayTrust.from_pem(root=None, middle=None, pinned=[fields["signPubKeyCert"]])
    signing.verify(fields, trust, now=ACP_TEST_SIGNED_AT)
    payment = payment_from({**fields, "reqReserved": ACCOUNT}, mer_id="700000000000001")
    assert (payment.transaction_id, payment.out_trade_no, payment.amount) == (
        "951807261002324791038", "201807251814000000175473", Decimal("1.36"))
    assert payment.paid_at == datetime(2018, 7, 26, 2, 2, 32, tzinfo=UTC)


@pytest.mark.parametrize("field", ["txnAmt", "queryId", "respCode", "orderId"])
def test_changing_any_field_of_unionpays_notification_breaks_its_signature(field: str) -> None:
    fields = acp_test_fields()
    trust = signing.UnionPayTrust.from_pem(root=None, middle=None, pinned=[fields["signPubKeyCert"]])
    fields[field] = fields[field][:-1] + ("1" if fields[field][-1] != "1" else "2")
    with pytest.raises(signing.SignatureError, match="does not verify"):
        signing.verify(fields, trust, now=ACP_TEST_SIGNED_AT)


def test_unionpays_test_certificate_is_refused_now_that_it_expired() -> None:
    fields = acp_test_fields()
    trust = signing.UnionPayTrust.from_pem(root=None, middle=None, pinned=[fields["signPubKeyCert"]])
    with pytest.raises(signing.SignatureError, match="not valid now"):
        signing.verify(fields, trust, now=datetime(2026, 11, 27, tzinfo=UTC))


def test_the_digest_is_what_an_independent_computation_of_the_scheme_gives() -> None:
    """Sorted ``k=v&…`` without ``signature``, SHA-256 as lower-case hex, SHA256withRSA over the hex:
    computed here step by step with hashlib and cryptography, and checked against UnionPay's signature."""
    fields = acp_test_fields()
    text = "&".join(f"{k}={fields[k]}" for k in sorted(fields) if k != "signature")
    assert signing.signing_string(fields) == text
    assert text.startswith("accNo=6221558812340000&accessType=0&bizType=000201&")
    hexdigest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert signing.digest(fields) == hexdigest.encode()
    key = signing.load_certificate(fields["signPubKeyCert"]).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(base64.b64decode(fields["signature"]), hexdigest.encode(), padding.PKCS1v15(), hashes.SHA256())


def test_empty_fields_take_part_in_the_signature() -> None:
    fields = simulator().pay("GAS20260305A1", 100, ACCOUNT)
    signed = simulator().signed({**fields, "reserved": ""})
    assert "&reserved=&" in signing.signing_string(signed)
    signing.verify(signed, chain())
    with pytest.raises(signing.SignatureError, match="does not verify"):
        signing.verify({k: v for k, v in signed.items() if k != "reserved"}, chain())


# --- the simulator's chain ------------------------------------------------------------------------------


def test_the_simulators_notification_verifies_through_the_chain_and_maps_to_a_payment() -> None:
    fields = simulator().pay("GAS20260305A1", 20050, ACCOUNT)
    signing.verify(fields, chain())
    payment = payment_from(fields, mer_id=MER_ID)
    assert (payment.channel, payment.transaction_id, payment.out_trade_no, payment.account_id, payment.amount) == (
        "unionpay", fields["queryId"], "GAS20260305A1", ACCOUNT, Decimal("200.50"))
    assert payment.payer_ref == "6221****0000"
    subject = signing.load_certificate(fields["signPubKeyCert"]).subject.rfc4514_string()
    assert "@中国银联股份有限公司@" in subject


def test_a_forged_chain_another_key_or_another_signer_name_is_refused() -> None:
    fields = simulator().pay("GAS20260305A2", 100, ACCOUNT)
    with pytest.raises(signing.SignatureError, match="not issued by"):
        signing.verify(forger().signed(fields), chain())
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(signing.SignatureError, match="does not verify"):
        signing.verify(simulator().signed(fields, key=stranger), chain())
    named = signing.UnionPayTrust.from_pem(root=simulator().root_pem, middle=simulator().middle_pem,
                                           signer_name="00040000:SIGN")
    with pytest.raises(signing.SignatureError, match="does not name 00040000:SIGN"):
        signing.verify(fields, named)
    with pytest.raises(signing.SignatureError, match="not a certificate we pinned"):
        signing.verify(fields, signing.UnionPayTrust.from_pem(root=None, middle=None, pinned=[forger().sign_cert_pem]))
    with pytest.raises(signing.SignatureError, match="not a PEM certificate"):
        signing.verify({**fields, "signPubKeyCert": "garbage"}, chain())


def test_an_expired_signing_certificate_is_refused_even_when_verified_before() -> None:
    fields = simulator().pay("GAS20260305A3", 100, ACCOUNT)
    trust = chain()
    signing.verify(fields, trust)
    with pytest.raises(signing.SignatureError, match="not valid now"):
        signing.verify(fields, trust, now=datetime.now(UTC) + timedelta(days=400))


@pytest.mark.parametrize(("field", "value", "words"), [
    ("version", "5.0.0", "is not 5.1.0"), ("signMethod", "11", "is not 01"), ("signature", "", "missing")])
def test_other_versions_and_sign_methods_are_refused(field: str, value: str, words: str) -> None:
    fields = {**simulator().pay("GAS20260305A4", 100, ACCOUNT), field: value}
    with pytest.raises(signing.SignatureError, match=words):
        signing.verify(fields, chain())


# --- mapping --------------------------------------------------------------------------------------------


def test_a6_is_money_received_and_failures_are_not_paid() -> None:
    assert payment_from(simulator().pay("GAS20260305B1", 100, ACCOUNT, resp_code="A6"), mer_id=MER_ID).amount == \
        Decimal("1.00")
    with pytest.raises(NotPaid, match="respCode '01'"):
        payment_from(simulator().pay("GAS20260305B2", 100, ACCOUNT, resp_code="01"), mer_id=MER_ID)


@pytest.mark.parametrize(("change", "words"), [
    ({"merId": "777290058110099"}, "not ours"), ({"txnType": "04"}, "not 01"), ({"reqReserved": ""}, "no account"),
    ({"txnAmt": "1.00"}, "whole number"), ({"currencyCode": "840"}, "not 156"), ({"txnTime": "2026-03-05"}, "txnTime"),
    ({"queryId": ""}, "transaction_id"), ({"reqReserved": "账户"}, "account_id")])
def test_what_cannot_be_credited_says_why(change: dict[str, str], words: str) -> None:
    fields = {**simulator().pay("GAS20260305B3", 100, ACCOUNT), **change}
    with pytest.raises(NotPayable, match=words):
        payment_from(fields, mer_id=MER_ID)


def test_the_form_is_parsed_strictly() -> None:
    assert parse_form(simulator().form({"a": "1 2", "b": ""})) == {"a": "1 2", "b": ""}
    for body, words in ((b"a=1&a=2", "repeated"), (b"\xff\xfe=1", "UTF-8"), (b"just text", "form")):
        with pytest.raises(Refused, match=words) as err:
            parse_form(body)
        assert err.value.status == 400


# --- settings and registry ------------------------------------------------------------------------------


def test_settings_need_a_chain_or_pinned_certificates() -> None:
    registry = ConnectorRegistry()
    cls, settings = registry.settings_for("unionpay", connector_settings())
    assert cls.kind == "unionpay"
    assert isinstance(settings, UnionPaySettings)
    assert settings.path == "/partners/unionpay/notify"
    pinned = registry.settings_for("unionpay", connector_settings(root_cert=None, middle_cert=None,
                                                                   sign_certs=[simulator().sign_cert_pem]))[1]
    assert isinstance(pinned, UnionPaySettings)
    with pytest.raises(ConfigError, match="root_cert and middle_cert"):
        registry.settings_for("unionpay", connector_settings(root_cert=None, middle_cert=None))
    with pytest.raises(ConfigError, match="go together"):
        registry.settings_for("unionpay", connector_settings(middle_cert=None, sign_certs=[simulator().sign_cert_pem]))
    with pytest.raises(ConfigError, match="mer_id"):
        registry.settings_for("unionpay", connector_settings(mer_id="12-34"))


def test_the_simulator_signs_as_it_is_told() -> None:
    sim = UnionPaySimulator(mer_id=MER_ID, signer_name="00040000:SIGN")
    fields = sim.pay("GAS20260305C1", 1, ACCOUNT)
    trust = signing.UnionPayTrust.from_pem(root=sim.root_pem, middle=sim.middle_pem, signer_name="00040000:SIGN")
    signing.verify(fields, trust)
    assert sim.paid["GAS20260305C1"]["txnAmt"] == "1"


# --- transaction queries against the simulator, over TCP -----------------------------------------------


def test_unionpays_answers_are_read_as_its_sdks_read_them() -> None:
    raw = "a=1&respMsg=成功[0000000]&cert=-----BEGIN CERTIFICATE-----\r\nAB+/cd==\r\n-----END&x=".encode()
    assert parse_answer(raw) == {"a": "1", "respMsg": "成功[0000000]",
                                 "cert": "-----BEGIN CERTIFICATE-----\r\nAB+/cd==\r\n-----END", "x": ""}
    assert parse_answer(b"reserved={a=1&b=2}&c=3") == {"reserved": "{a=1&b=2}", "c": "3"}
    for bad in (b"a=1&a=2", b"a=1&novalue", b"=1", b"\xff=1"):
        assert parse_answer(bad) is None


@pytest.fixture
async def served() -> AsyncIterator[UnionPaySimulator]:
    sim = UnionPaySimulator(mer_id=MER_ID, merchant_key=merchant_key().public_key())
    await sim.start()
    yield sim
    await sim.aclose()


def query_client(sim: UnionPaySimulator, *, key: rsa.RSAPrivateKey | None = None,
                 trust: signing.UnionPayTrust | None = None) -> UnionPayClient:
    return UnionPayClient(base_url=sim.url, mer_id=MER_ID, cert_id=MERCHANT_CERT_ID, private_key=key or merchant_key(),
                          trust=trust or signing.UnionPayTrust.from_pem(root=sim.root_pem, middle=sim.middle_pem),
                          in_call_attempts=1)


async def test_a_query_is_signed_with_our_key_and_its_answer_verified(served: UnionPaySimulator) -> None:
    paid = served.pay("GAS20260305Q1", 16800, ACCOUNT)
    client = query_client(served)
    try:
        answer = await client.query("GAS20260305Q1", paid["txnTime"])
        assert (answer["origRespCode"], answer["queryId"], answer["txnAmt"], answer["reqReserved"]) == (
            "00", paid["queryId"], "16800", ACCOUNT)
        assert "\n" in answer["signPubKeyCert"]  # read unencoded, as UnionPay sends it
        with pytest.raises(UnionPayError) as err:
            await client.query("GAS20260305Q9", paid["txnTime"])
        assert err.value.code == "34"
    finally:
        await client.aclose()
    assert served.queries == [("GAS20260305Q1", True), ("GAS20260305Q9", True)]


async def test_a_query_with_another_key_or_an_answer_from_another_chain_is_refused(served: UnionPaySimulator) -> None:
    paid = served.pay("GAS20260305Q2", 100, ACCOUNT)
    stranger = query_client(served, key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    fooled = query_client(served, trust=chain())  # trusts the tests' usual chain, not this simulator's
    try:
        with pytest.raises(UnionPayError) as err:
            await stranger.query("GAS20260305Q2", paid["txnTime"])
        assert err.value.code == "11"
        with pytest.raises(PermanentError, match="signature is not valid: the signing certificate is not issued"):
            await fooled.query("GAS20260305Q2", paid["txnTime"])
    finally:
        await stranger.aclose()
        await fooled.aclose()


def test_querying_needs_the_key_and_its_certificate_id_together() -> None:
    registry = ConnectorRegistry()
    with pytest.raises(ConfigError, match="go together"):
        registry.settings_for("unionpay", connector_settings(merchant_cert_id=None))
    with pytest.raises(ConfigError, match="not a PEM RSA private key") as err:
        registry.settings_for("unionpay", connector_settings(merchant_private_key="-----BEGIN PRIVATE KEY-----x"))
    assert "BEGIN PRIVATE KEY-----x" not in str(err.value)
    receive_only = registry.settings_for("unionpay", connector_settings(merchant_private_key=None,
                                                                        merchant_cert_id=None))[1]
    assert isinstance(receive_only, UnionPaySettings)
