"""The bank's side of the e-CNY adapter, for the tests: keys per scheme, settings, and the published
SM2/SM3 reference vectors (GB/T 32905 for SM3; GB/T 32918.2 / GM/T 0003.2 Appendix A on the
recommended curve for SM2), which no code of ours produced."""

from __future__ import annotations

from functools import cache
from typing import Any

from connectors.payments.ecny.signing import SignType
from connectors.payments.ecny.simulator import new_key_pair

MERCHANT_NO = "EC0571000123"

SM3_ABC = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
SM3_ABCD16 = "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
SM2_D = "3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8"
SM2_PUBLIC = ("09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
              "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13")
SM2_MESSAGE = b"message digest"
SM2_K = 0x59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21
SM2_ZA = "B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3"
SM2_E = "F0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640"
SM2_R = 0xF5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3
SM2_S = 0xB1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA
SM2_KG_X = "04EBFC718E8D1798620432268E77FEB6415E2EDE0E073C0F4F640ECD2E149A73"
"""x of k·G in the same example: the public key of private key ``k`` starts with ``04``."""


@cache
def merchant_keys(sign_type: SignType) -> tuple[str, str]:
    """Our (private, public) key pair of a scheme, made once per test run."""
    return new_key_pair(sign_type)


@cache
def stranger_keys(sign_type: SignType) -> tuple[str, str]:
    return new_key_pair(sign_type)


def connector_settings(sign_type: SignType, bank_public_key: str, base_url: str, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "kind": "ecny", "merchant_no": MERCHANT_NO, "sign_type": sign_type.value, "bank_public_key": bank_public_key,
        "merchant_private_key": merchant_keys(sign_type)[0], "base_url": base_url, "in_call_attempts": 2,
    }
    values.update(overrides)
    return values
