"""The e-CNY bank adapter: SM2/SM3 through gmssl against the published reference vectors and against
OpenSSL (a second implementation, both ways), both signature schemes end to end, the mapping, and the
client against the bank simulator over TCP."""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from connectors.payments.ecny import signing, sm2
from connectors.payments.ecny.client import EcnyClient, EcnyError
from connectors.payments.ecny.settings import EcnySettings
from connectors.payments.ecny.simulator import EcnyBankSimulator
from connectors.payments.ecny.transaction import NotPayable, payment_from
from connectors.payments.wechatpay.transaction import bill_order_no
from hub.connectors.registry import ConnectorRegistry
from hub.errors import ConfigError, PermanentError
from tests.ecny_peer import (
    MERCHANT_NO,
    SM2_D,
    SM2_E,
    SM2_K,
    SM2_KG_X,
    SM2_MESSAGE,
    SM2_PUBLIC,
    SM2_R,
    SM2_S,
    SM2_ZA,
    SM3_ABC,
    SM3_ABCD16,
    connector_settings,
    merchant_keys,
    stranger_keys,
)

ACCOUNT = "01JQ3ZK8W6V4T2R0P8N6M4K2H0"
SCHEMES = list(signing.SignType)


# --- SM3 and SM2 against the standards' vectors --------------------------------------------------------


def test_sm3_gives_the_standards_digests() -> None:
    assert sm2.sm3(b"abc").hex() == SM3_ABC
    assert sm2.sm3(b"abcd" * 16).hex() == SM3_ABCD16


def test_sm2_reproduces_the_gbt_32918_signature_example() -> None:
    key = sm2.PrivateKey.from_hex(SM2_D)
    public = key.public_key()
    assert public.xy == SM2_PUBLIC.lower()
    assert public.z().hex() == SM2_ZA.lower()
    assert sm2.sm3(public.z() + SM2_MESSAGE).hex() == SM2_E.lower()
    assert decode_dss_signature(sm2.sign(key, SM2_MESSAGE, k=SM2_K)) == (SM2_R, SM2_S)


def test_the_standards_signature_verifies_and_nothing_near_it_does() -> None:
    public = sm2.PublicKey.from_hex("04" + SM2_PUBLIC)
    good = encode_dss_signature(SM2_R, SM2_S)
    assert sm2.verify(public, SM2_MESSAGE, good)
    assert not sm2.verify(public, SM2_MESSAGE + b"!", good)
    assert not sm2.verify(public, SM2_MESSAGE, encode_dss_signature(SM2_R, SM2_S + 1))
    assert not sm2.verify(public, SM2_MESSAGE, encode_dss_signature(0, SM2_S))
    assert not sm2.verify(public, SM2_MESSAGE, encode_dss_signature(SM2_R, sm2.N))
    assert not sm2.verify(public, SM2_MESSAGE, good + b"\x00")  # trailing bytes: not DER
    assert not sm2.verify(public, SM2_MESSAGE, SM2_R.to_bytes(32, "big") + SM2_S.to_bytes(32, "big"))  # raw r || s
    other = sm2.PrivateKey.generate().public_key()
    assert not sm2.verify(other, SM2_MESSAGE, good)


def test_a_public_key_that_starts_with_04_survives_gmssls_prefix_stripping() -> None:
    """k·G of the example has x = 04EBFC…: gmssl's ``lstrip("04")`` would eat its digits."""
    key = sm2.PrivateKey(SM2_K)
    assert key.public_key().xy.upper().startswith(SM2_KG_X)
    signature = sm2.sign(key, b"gas bill")
    assert sm2.verify(sm2.PublicKey.from_hex(key.public_key().xy), b"gas bill", signature)


def test_signatures_draw_a_fresh_k_each_time() -> None:
    key = sm2.PrivateKey.generate()
    first, second = sm2.sign(key, b"same"), sm2.sign(key, b"same")
    assert first != second
    assert sm2.verify(key.public_key(), b"same", first)
    assert sm2.verify(key.public_key(), b"same", second)


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("openssl")
    assert binary is not None, "the openssl command (OpenSSL 3, with SM2) is the second SM2 implementation here"
    return subprocess.run([binary, "pkeyutl", *args, "-rawin", "-digest", "sm3", "-pkeyopt", "distid:1234567812345678"],
                          capture_output=True, text=True, timeout=30, check=False)


def _sec1_pem(key: sm2.PrivateKey) -> str:
    """The key as OpenSSL reads it: SEC1 ``ECPrivateKey`` on the SM2 curve (OID 1.2.156.10197.1.301)."""
    der = (bytes.fromhex("30770201010420") + key.d.to_bytes(32, "big")
           + bytes.fromhex("a00a06082a811ccf5501822da14403420004") + bytes.fromhex(key.public_key().xy))
    return "-----BEGIN EC PRIVATE KEY-----\n" + base64.encodebytes(der).decode() + "-----END EC PRIVATE KEY-----\n"


def test_sm2_signatures_interoperate_with_openssl_both_ways(tmp_path: Path) -> None:
    key = sm2.PrivateKey.generate()
    pem, message, theirs, ours = (tmp_path / n for n in ("key.pem", "message", "theirs.der", "ours.der"))
    pem.write_text(_sec1_pem(key))
    message.write_bytes("燃气费 2026-03 账户 A1".encode())
    signed = _openssl("-sign", "-inkey", str(pem), "-in", str(message), "-out", str(theirs))
    assert signed.returncode == 0, signed.stderr
    assert sm2.verify(key.public_key(), message.read_bytes(), theirs.read_bytes())
    ours.write_bytes(sm2.sign(key, message.read_bytes()))
    checked = _openssl("-verify", "-inkey", str(pem), "-in", str(message), "-sigfile", str(ours))
    assert (checked.returncode, checked.stdout.strip()) == (0, "Signature Verified Successfully")
    message.write_bytes(message.read_bytes() + b"!")
    assert _openssl("-verify", "-inkey", str(pem), "-in", str(message), "-sigfile", str(ours)).returncode == 1
    assert not sm2.verify(key.public_key(), message.read_bytes(), theirs.read_bytes())


@pytest.mark.parametrize("text", ["04" + "0" * 128, "1" * 128, "xyz", SM2_PUBLIC[:-2]])
def test_public_keys_off_the_curve_or_malformed_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="SM2"):
        sm2.PublicKey.from_hex(text)


# --- the schemes through the headers -------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_each_scheme_signs_and_verifies_what_the_bank_sends(scheme: signing.SignType) -> None:
    private, public = merchant_keys(scheme)
    body = b'{"order": {"orderNo": "A-1"}}'
    headers = signing.bank_headers(signing.signer(scheme, private), body)
    assert headers[signing.SIGN_TYPE] == scheme.value
    got = signing.verify_bank(signing.verifier(scheme, public), headers, body, now=time.time(), window_s=300)
    assert got.nonce == headers[signing.NONCE]
    key = signing.verifier(scheme, public)
    cases = {
        "does not verify": (headers, body + b" "),
        "stale timestamp": (signing.bank_headers(signing.signer(scheme, private), body,
                                                 timestamp=int(time.time()) - 301), body),
        "sign type": ({**headers, signing.SIGN_TYPE: "md5"}, body),
        "missing": ({k: v for k, v in headers.items() if k != signing.NONCE}, body),
    }
    for words, (h, b) in cases.items():
        with pytest.raises(signing.SignatureError, match=words):
            signing.verify_bank(key, h, b, now=time.time(), window_s=300)
    wrong = signing.bank_headers(signing.signer(scheme, stranger_keys(scheme)[0]), body)
    with pytest.raises(signing.SignatureError, match="does not verify"):
        signing.verify_bank(key, wrong, body, now=time.time(), window_s=300)


# --- mapping --------------------------------------------------------------------------------------------


def order(**change: object) -> dict[str, object]:
    values: dict[str, object] = {
        "merchantNo": MERCHANT_NO, "orderNo": bill_order_no(ACCOUNT, "B1"), "txnNo": "EC000000000000000000000001",
        "amount": 16800, "currency": "CNY", "status": "SUCCESS", "paidAt": "2026-03-05T09:30:00+08:00",
        "walletId": "0031****1234", "attach": ""}
    values.update(change)
    return values


def test_a_paid_order_becomes_a_payment_with_the_banks_transaction_number() -> None:
    payment = payment_from(order(), merchant_no=MERCHANT_NO)
    assert (payment.channel, payment.transaction_id, payment.account_id, payment.amount, payment.payer_ref) == (
        "ecny", "EC000000000000000000000001", ACCOUNT, Decimal("168.00"), "0031****1234")
    assert payment_from(order(orderNo="BANKSIDE0001", attach=ACCOUNT), merchant_no=MERCHANT_NO).account_id == ACCOUNT


@pytest.mark.parametrize(("change", "words"), [
    ({"merchantNo": "EC0000000000"}, "not ours"), ({"status": "PENDING"}, "not SUCCESS"),
    ({"orderNo": "X1", "attach": ""}, "no account"), ({"amount": "168.00"}, "integer"), ({"amount": True}, "integer"),
    ({"txnNo": ""}, "transaction_id"), ({"paidAt": "yesterday"}, "paid_at"), ({"amount": 0}, "amount")])
def test_what_cannot_be_credited_says_why(change: dict[str, object], words: str) -> None:
    with pytest.raises(NotPayable, match=words):
        payment_from(order(**change), merchant_no=MERCHANT_NO)


# --- settings -------------------------------------------------------------------------------------------


def test_settings_hold_keys_of_the_configured_scheme_and_never_echo_the_private_one() -> None:
    registry = ConnectorRegistry()
    sm2_private, sm2_public = merchant_keys(signing.SignType.SM2_SM3)
    rsa_private, rsa_public = merchant_keys(signing.SignType.RSA_SHA256)
    settings = registry.settings_for("ecny", connector_settings(signing.SignType.SM2_SM3, sm2_public,
                                                                "https://bank.example"))[1]
    assert isinstance(settings, EcnySettings)
    assert settings.sign_type is signing.SignType.SM2_SM3
    with pytest.raises(ConfigError, match="bank_public_key is not a sm2-sm3 key"):
        registry.settings_for("ecny", connector_settings(signing.SignType.SM2_SM3, rsa_public, "https://bank.example"))
    with pytest.raises(ConfigError, match="merchant_private_key is not a rsa-sha256 private key") as err:
        registry.settings_for("ecny", connector_settings(signing.SignType.RSA_SHA256, rsa_public,
                                                         "https://bank.example", merchant_private_key=sm2_private))
    assert sm2_private not in str(err.value)
    assert rsa_private not in repr(registry.settings_for(
        "ecny", connector_settings(signing.SignType.RSA_SHA256, rsa_public, "https://bank.example"))[1])


# --- the client against the bank simulator, over TCP ----------------------------------------------------


@pytest.fixture(params=SCHEMES)
async def bank(request: pytest.FixtureRequest) -> AsyncIterator[EcnyBankSimulator]:
    scheme: signing.SignType = request.param
    sim = EcnyBankSimulator(merchant_no=MERCHANT_NO, sign_type=scheme, merchant_public_key=merchant_keys(scheme)[1])
    await sim.start()
    yield sim
    await sim.aclose()


def client_for(bank: EcnyBankSimulator, *, private: str | None = None, bank_public: str | None = None) -> EcnyClient:
    scheme = bank.sign_type
    return EcnyClient(base_url=bank.url, merchant_no=MERCHANT_NO,
                      signer=signing.signer(scheme, private or merchant_keys(scheme)[0]),
                      bank=signing.verifier(scheme, bank_public or bank.bank_public_key), in_call_attempts=2)


async def test_orders_are_created_and_queried_with_signatures_both_ways(bank: EcnyBankSimulator) -> None:
    client = client_for(bank)
    try:
        number = bill_order_no(ACCOUNT, "01JQ40000000000000000000AB")
        created = await client.create_order(order_no=number, amount=Decimal("168.00"), subject="燃气费", attach=ACCOUNT)
        assert created["payUrl"].startswith("https://")
        again = await client.create_order(order_no=number, amount=Decimal("168.00"), subject="燃气费", attach=ACCOUNT)
        assert again["payUrl"] == created["payUrl"]
        assert (await client.query(number))["status"] == "PENDING"
        paid = bank.pay(number)
        bank.fail_next = 1  # one 503: retried inside the call
        queried = await client.query(number)
        assert (queried["status"], queried["txnNo"]) == ("SUCCESS", paid["txnNo"])
        assert payment_from(queried, merchant_no=MERCHANT_NO).amount == Decimal("168.00")
        with pytest.raises(EcnyError) as err:
            await client.query("NOSUCHORDER1")
        assert (err.value.status, err.value.code) == (404, "ORDER_NOT_EXIST")
    finally:
        await client.aclose()
    assert [ok for _, _, ok in bank.requests] == [True] * 5
    assert bank.requests[2][1] == f"/ecny/v1/orders/{number}?merchantNo={MERCHANT_NO}"


async def test_a_wrongly_signed_request_or_answer_is_refused(bank: EcnyBankSimulator) -> None:
    scheme = bank.sign_type
    stranger = client_for(bank, private=stranger_keys(scheme)[0])
    fooled = client_for(bank, bank_public=stranger_keys(scheme)[1])
    try:
        with pytest.raises(EcnyError) as err:
            await stranger.query("ANY1")
        assert (err.value.status, err.value.code) == (401, "SIGN_ERROR")
        assert bank.requests[-1][2] is False
        with pytest.raises(PermanentError, match="signature is not valid"):
            await fooled.create_order(order_no="A-X1", amount=Decimal("1.00"), subject="x")
    finally:
        await stranger.aclose()
        await fooled.aclose()
