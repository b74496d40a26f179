"""UnionPay's side of back-end notifications, for the tests.

``ACP_TEST_NOTIFICATION`` is a notification signed by UnionPay itself: its ACP test environment's
back-end notification of 26 July 2018 for test merchant 700000000000001, published in the demo
(``BackReceive.php``) of UnionPay's ACP PHP SDK, verbatim but for one stray character before its
first field name. Its ``signPubKeyCert`` is UnionPay's test signing certificate (CN
``041@Z2017-11-1@00040000:SIGN@00000001``, valid 2017-11-01 to 2020-11-01); the card number is
UnionPay's public test card. It shows our verification agrees with UnionPay's signing, not only with
our own simulator. ``UnionPaySimulator`` signs everything else.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.payments.unionpay.simulator import UnionPaySimulator

MER_ID = "777290058110048"
ACP_TEST_SIGNED_AT = datetime(2018, 7, 26, 2, 2, 40, tzinfo=UTC)
ACP_TEST_NOTIFICATION = (
    "accNo=6221558812340000&accessType=0&bizType=000201&currencyCode=156&encoding=utf-8&merId=700000000000001"
    "&orderId=201807251814000000175473&queryId=951807261002324791038&respCode=00"
    "&respMsg=%E6%88%90%E5%8A%9F%5B0000000%5D&settleAmt=136&settleCurrencyCode=156&settleDate=0726&signMethod=01"
    "&signPubKeyCert=-----BEGIN+CERTIFICATE-----%0D%0AMIIEQzCCAyugAwIBAgIFEBJJZVgwDQYJKoZIhvcNAQEFBQAwWDELMAkGA1UEBhMC"
    "%0D%0AQ04xMDAuBgNVBAoTJ0NoaW5hIEZpbmFuY2lhbCBDZXJ0aWZpY2F0aW9uIEF1dGhv%0D%0Acml0eTEXMBUGA1UEAxMOQ0ZDQSBURVNUIE9DQTEw"
    "HhcNMTcxMTAxMDcyNDA4WhcN%0D%0AMjAxMTAxMDcyNDA4WjB3MQswCQYDVQQGEwJjbjESMBAGA1UEChMJQ0ZDQSBPQ0Ex%0D%0AMQ4wDAYDVQQLEwVD"
    "VVBSQTEUMBIGA1UECxMLRW50ZXJwcmlzZXMxLjAsBgNVBAMU%0D%0AJTA0MUBaMjAxNy0xMS0xQDAwMDQwMDAwOlNJR05AMDAwMDAwMDEwggEiMA0G"
    "CSqG%0D%0ASIb3DQEBAQUAA4IBDwAwggEKAoIBAQDDIWO6AESrg%2B34HgbU9mSpgef0sl6avr1d%0D%0AbD%2FIjjZYM63SoQi3CZHZUyoyzBKodR"
    "zowJrwXmd%2BhCmdcIfavdvfwi6x%2BptJNp9d%0D%0AEtpfEAnJk%2B4quriQFj1dNiv6uP8ARgn07UMhgdYB7D8aA1j77Yk1ROx7%2BLFeo7rZ%0D"
    "%0ADdde2U1opPxjIqOPqiPno78JMXpFn7LiGPXu75bwY2rYIGEEImnypgiYuW1vo9UO%0D%0AG47NMWTnsIdy68FquPSw5FKp5foL825GNX3oJSZui8"
    "d2UDkMLBasf06Jz0JKz5AV%0D%0AblaI%2Bs24%2FiCfo8r%2B6WaCs8e6BDkaijJkR%2FbvRCQeQpbX3V8WoTLVAgMBAAGjgfQw%0D%0AgfEwHwYD"
    "VR0jBBgwFoAUz3CdYeudfC6498sCQPcJnf4zdIAwSAYDVR0gBEEwPzA9%0D%0ABghggRyG7yoBATAxMC8GCCsGAQUFBwIBFiNodHRwOi8vd3d3LmNm"
    "Y2EuY29tLmNu%0D%0AL3VzL3VzLTE0Lmh0bTA5BgNVHR8EMjAwMC6gLKAqhihodHRwOi8vdWNybC5jZmNh%0D%0ALmNvbS5jbi9SU0EvY3JsMjQ4Nz"
    "IuY3JsMAsGA1UdDwQEAwID6DAdBgNVHQ4EFgQU%0D%0AmQQLyuqYjES7qKO%2BzOkzEbvdFwgwHQYDVR0lBBYwFAYIKwYBBQUHAwIGCCsGAQUF%0D%0A"
    "BwMEMA0GCSqGSIb3DQEBBQUAA4IBAQAujhBuOcuxA%2BVzoUH84uoFt5aaBM3vGlpW%0D%0AKVMz6BUsLbIpp1ho5h%2BLaMnxMs6jdXXDh%2Fdu8X"
    "5SKMaIddiLw7ujZy1LibKy2jYi%0D%0AYYfs3tbZ0ffCKQtv78vCgC%2BIxUUurALY4w58fRLLdu8u8p9jyRFHsQEwSq%2BW5%2BbP%0D%0AMTh2w7cD"
    "d9h%2B6KoCN6AMI1Ly7MxRIhCbNBL9bzaxF9B5GK86ARY7ixkuDCEl4XCF%0D%0AJGxeoye9R46NqZ6AA%2Fk97mJun%2F%2FgmUjStmb9PUXA59fR"
    "5suAB5o%2F5lBySZ8UXkrI%0D%0App%2FiLT8vIl1hNgLh0Ghs7DBSx99I%2BS3VuUzjHNxL6fGRhlix7Rb8%0D%0A-----END+CERTIFICATE-----"
    "&traceNo=479103&traceTime=0726100232&txnAmt=136&txnSubType=01&txnTime=20180726100232&txnType=01&version=5.1.0"
    "&signature=Q%2FusKVYN70HrAun5WFUvYpDeE3NtRb0gC3lL38qXrIMIGbutpECmjI%2BuB5X9GQbkPcJreRVz%2Bb9ZErH2L3alPsVUitgDY3gZL"
    "nLRqEmiIreHAG4Th%2FeOml626aNPiAJtjjCMbmmMzilLUrakcpK0zVREjaB%2BsMF2XYVbIAegzHgy1CQgjyEImarx92zchzesmpA%2F3JA%2BK0h9"
    "37B%2Fx1gFvmL0POcO4RpVI%2Fkb%2FxU5TjM2fQlZkFKX40dQrQB6EPjNxnqwZ3eVm4p2Q8L1llZyiat9wq91CU9Ku7X5dIQDbE5JleWzNlC0ikkRV"
    "oxWnqkIFlGeP2%2BITk9%2BHEtI%2B0uHuA%3D%3D"
)


def acp_test_fields() -> dict[str, str]:
    return dict(parse_qsl(ACP_TEST_NOTIFICATION, keep_blank_values=True, strict_parsing=True))


MERCHANT_CERT_ID = "69629715588"


@cache
def merchant_key() -> rsa.RSAPrivateKey:
    """Our merchant signing key (made once per test run)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def merchant_pem() -> str:
    return merchant_key().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode()


@cache
def simulator() -> UnionPaySimulator:
    """UnionPay as the tests' deployments trust it (its chain made once per test run), knowing our key."""
    return UnionPaySimulator(mer_id=MER_ID, merchant_key=merchant_key().public_key())


@cache
def forger() -> UnionPaySimulator:
    """Someone with a chain of their own whose signing certificate names UnionPay all the same."""
    return UnionPaySimulator(mer_id=MER_ID)


def connector_settings(**overrides: Any) -> dict[str, Any]:
    """Settings that trust :func:`simulator`'s chain and can query it (once it is served)."""
    sim = simulator()
    values: dict[str, Any] = {"kind": "unionpay", "mer_id": MER_ID, "root_cert": sim.root_pem,
                              "middle_cert": sim.middle_pem, "merchant_private_key": merchant_pem(),
                              "merchant_cert_id": MERCHANT_CERT_ID, "base_url": sim.url, "in_call_attempts": 1}
    values.update(overrides)
    return values
