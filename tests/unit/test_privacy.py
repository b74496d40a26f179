"""core.privacy: field encryption with a key ring, blind indexes, key rotation and masking for API output."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import CoreError
from core.privacy import (
    GENERATE_COMMAND,
    BlindIndex,
    DecryptionError,
    FieldCipher,
    KeyRing,
    KeyRingError,
    RowRotation,
    field_context,
    generate_key,
    key_id_of,
    mask_address,
    mask_id_number,
    mask_name,
    mask_phone,
    normalise_id_number,
    normalise_phone,
    rotate,
    rotate_rows,
)
from core.privacy.crypto import NONCE_BYTES, TAG_BYTES

K1 = generate_key()
K2 = generate_key()
CTX = field_context("customers", "phone", "01HZX3K5Q9T7Y2B8C4D6E0F1G2")
TOKEN_SHAPE = re.compile(r"v1:[a-z0-9_]{1,16}:[A-Za-z0-9_-]+")


@pytest.fixture
def old_ring() -> KeyRing:
    return KeyRing.from_settings({"k1": K1}, current="k1")


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.from_settings({"k1": K1, "k2": K2}, current="k2")


@pytest.fixture
def cipher(ring: KeyRing) -> FieldCipher:
    return FieldCipher(ring)


def b64url_blob(token: str) -> bytes:
    data = token.split(":")[2]
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def with_blob(token: str, blob: bytes) -> str:
    version, key_id, _ = token.split(":")
    return f"{version}:{key_id}:{base64.urlsafe_b64encode(blob).rstrip(b'=').decode()}"


# --- key ring -----------------------------------------------------------------------------------


def test_key_ring_from_settings() -> None:
    ring = KeyRing.from_settings({"K1": K1, "k2": K2.encode()}, current="K2")
    assert ring.current == "k2"
    assert ring.ids == ("k2", "k1")
    assert "K1" in ring
    assert "k1" in ring
    assert "k3" not in ring
    assert len(ring) == 2


def test_key_ring_accepts_secret_str_and_urlsafe_base64() -> None:
    from pydantic import SecretStr

    urlsafe = base64.urlsafe_b64encode(base64.b64decode(K1)).decode()
    ring = KeyRing.from_settings({"a": SecretStr(K1), "b": urlsafe.rstrip("=")}, current="a")
    assert set(ring.ids) == {"a", "b"}


@pytest.mark.parametrize("nbytes", [0, 16, 31, 33, 64])
def test_key_of_wrong_length_refused_with_generate_command(nbytes: int) -> None:
    bad = base64.b64encode(bytes(range(1, nbytes + 1))).decode()
    with pytest.raises(KeyRingError, match="exactly 32") as info:
        KeyRing.from_settings({"k1": bad}, current="k1")
    assert GENERATE_COMMAND in str(info.value)
    assert "secrets.token_bytes(32)" in str(info.value)


def test_bad_keys_refused_without_echoing_them() -> None:
    with pytest.raises(KeyRingError, match="not valid base64") as info:
        KeyRing.from_settings({"k1": "not*base64!"}, current="k1")
    assert "not*base64!" not in str(info.value)
    with pytest.raises(KeyRingError, match="placeholder"):
        KeyRing.from_settings({"k1": base64.b64encode(bytes(32)).decode()}, current="k1")
    with pytest.raises(KeyRingError, match="empty"):
        KeyRing.from_settings({}, current="k1")
    with pytest.raises(KeyRingError, match="not in the ring"):
        KeyRing.from_settings({"k1": K1}, current="k9")
    with pytest.raises(KeyRingError, match="not valid"):
        KeyRing.from_settings({"k:1": K1}, current="k:1")
    with pytest.raises(KeyRingError, match="twice"):
        KeyRing.from_settings({"k1": K1, "K1": K2}, current="k1")
    with pytest.raises(KeyRingError, match="32 raw bytes"):
        KeyRing({"k1": b"short"}, current="k1")


def test_generated_key_and_command_agree() -> None:
    assert len(base64.b64decode(generate_key())) == 32
    assert generate_key() != generate_key()


def test_repr_never_shows_key_material(ring: KeyRing, cipher: FieldCipher) -> None:
    for text in (repr(ring), repr(cipher), repr(BlindIndex(ring))):
        assert K1 not in text
        assert K2 not in text
        assert "k1" in text
        assert "k2" in text


# --- field cipher -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["13812345678", "330602199001011234", "张三丰", "浙江省绍兴市越城区人民中路123号3幢201室", "", "a"]
)
def test_round_trip(cipher: FieldCipher, value: str) -> None:
    token = cipher.encrypt(value, context=CTX)
    assert TOKEN_SHAPE.fullmatch(token)
    assert token.startswith("v1:k2:")
    assert len(b64url_blob(token)) == NONCE_BYTES + len(value.encode()) + TAG_BYTES
    assert cipher.decrypt(token, context=CTX) == value


def test_nonces_differ_for_the_same_plaintext(cipher: FieldCipher) -> None:
    tokens = {cipher.encrypt("13812345678", context=CTX) for _ in range(50)}
    assert len(tokens) == 50
    assert len({b64url_blob(t)[:NONCE_BYTES] for t in tokens}) == 50


@pytest.mark.parametrize(
    "other",
    [
        field_context("customers", "phone", "01HZX3K5Q9T7Y2B8C4D6E0F1G3"),  # another row
        field_context("customers", "id_number", "01HZX3K5Q9T7Y2B8C4D6E0F1G2"),  # another column
        field_context("contacts", "phone", "01HZX3K5Q9T7Y2B8C4D6E0F1G2"),  # another table
    ],
)
def test_wrong_context_fails(cipher: FieldCipher, other: str) -> None:
    token = cipher.encrypt("13812345678", context=CTX)
    with pytest.raises(DecryptionError) as info:
        cipher.decrypt(token, context=other)
    assert info.value.reason == "authentication_failed"
    assert "13812345678" not in str(info.value)


def test_decryption_error_is_a_non_retriable_core_error() -> None:
    assert issubclass(DecryptionError, CoreError)
    assert DecryptionError.retriable is False


def test_flipping_any_byte_of_the_blob_fails(cipher: FieldCipher) -> None:
    token = cipher.encrypt("张三丰", context=CTX)
    blob = b64url_blob(token)
    for i in range(len(blob)):
        tampered = bytearray(blob)
        tampered[i] ^= 0x01
        with pytest.raises(DecryptionError) as info:
            cipher.decrypt(with_blob(token, bytes(tampered)), context=CTX)
        assert info.value.reason == "authentication_failed"


def test_editing_any_character_of_the_token_fails(cipher: FieldCipher) -> None:
    """Including the last base64 character, whose low bits are padding: non-canonical base64 is refused."""
    token = cipher.encrypt("13812345678", context=CTX)
    for i, char in enumerate(token):
        for replacement in {"A", "B", "x", "-", ":"} - {char}:
            edited = token[:i] + replacement + token[i + 1 :]
            with pytest.raises(DecryptionError):
                cipher.decrypt(edited, context=CTX)


def test_truncated_and_extended_tokens_fail(cipher: FieldCipher) -> None:
    token = cipher.encrypt("13812345678", context=CTX)
    blob = b64url_blob(token)
    for bad in (blob[:-1], blob[: NONCE_BYTES + TAG_BYTES - 1], blob + b"\x00", blob[NONCE_BYTES:]):
        with pytest.raises(DecryptionError):
            cipher.decrypt(with_blob(token, bad), context=CTX)


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "malformed"),
        ("13812345678", "malformed"),
        ("v1:k2", "malformed"),
        ("v1:k2:abc:def", "malformed"),
        ("v1:k2:" + "A" * 10, "malformed"),
        ("v1:k2:not base64!", "malformed"),
        ("v2:k2:" + "A" * 40, "unsupported_version"),
        ("v1:k9:" + "A" * 40, "unknown_key"),
    ],
)
def test_malformed_tokens_give_a_clear_error(cipher: FieldCipher, token: str, reason: str) -> None:
    with pytest.raises(DecryptionError) as info:
        cipher.decrypt(token, context=CTX)
    assert info.value.reason == reason


def test_unknown_key_id_fails(ring: KeyRing) -> None:
    other = KeyRing.from_settings({"k3": generate_key()}, current="k3")
    token = FieldCipher(other).encrypt("13812345678", context=CTX)
    with pytest.raises(DecryptionError, match="not in the key ring") as info:
        FieldCipher(ring).decrypt(token, context=CTX)
    assert info.value.reason == "unknown_key"


def test_same_key_id_but_another_key_fails(cipher: FieldCipher) -> None:
    impostor = FieldCipher(KeyRing.from_settings({"k2": generate_key()}, current="k2"))
    with pytest.raises(DecryptionError) as info:
        cipher.decrypt(impostor.encrypt("13812345678", context=CTX), context=CTX)
    assert info.value.reason == "authentication_failed"


def test_key_id_in_the_header_is_authenticated() -> None:
    """A token moved under another id holding the same key material does not decrypt."""
    twin = FieldCipher(KeyRing.from_settings({"k1": K1, "k2": K1}, current="k1"))
    token = twin.encrypt("13812345678", context=CTX)
    with pytest.raises(DecryptionError):
        twin.decrypt(token.replace("v1:k1:", "v1:k2:"), context=CTX)


def test_encrypt_refuses_bad_arguments(cipher: FieldCipher) -> None:
    with pytest.raises(ValueError, match="context"):
        cipher.encrypt("13812345678", context="")
    with pytest.raises(ValueError, match="surrogate"):
        cipher.encrypt("\ud800", context=CTX)
    with pytest.raises(ValueError, match="context"):
        cipher.decrypt(cipher.encrypt("x", context=CTX), context="")


def test_field_context() -> None:
    assert field_context("customers", "phone", 42) == "customers.phone:42"
    assert field_context("core.customers", "phone", "a:b") == "core.customers.phone:a:b"
    for table, column, row in [("", "phone", 1), ("customers", "a.b", 1), ("customers", "phone", ""), ("a:b", "c", 1)]:
        with pytest.raises(ValueError, match=r"identifier|row id"):
            field_context(table, column, row)


@pytest.mark.parametrize("value", ["13812345678", "330602199001011234", "张三丰", "浙江省绍兴市越城区人民中路123号"])
def test_ciphertext_never_contains_the_plaintext(cipher: FieldCipher, value: str) -> None:
    for _ in range(20):
        token = cipher.encrypt(value, context=CTX)
        assert value not in token
        assert value.encode() not in b64url_blob(token)
        assert base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")[:8] not in token


@settings(max_examples=200, deadline=None)
@given(value=st.text(), context=st.text(min_size=1))
def test_round_trip_over_arbitrary_unicode(value: str, context: str) -> None:
    cipher = FieldCipher(KeyRing.from_settings({"k1": K1, "k2": K2}, current="k2"))
    token = cipher.encrypt(value, context=context)
    assert token.isascii()
    assert TOKEN_SHAPE.fullmatch(token)
    assert cipher.decrypt(token, context=context) == value
    if len(value) >= 6:
        assert value not in token
        assert value.encode() not in b64url_blob(token)


# --- rotation -----------------------------------------------------------------------------------


def test_old_key_tokens_decrypt_and_rotate_to_the_current_key(old_ring: KeyRing, ring: KeyRing) -> None:
    old_token = FieldCipher(old_ring).encrypt("13812345678", context=CTX)
    assert key_id_of(old_token) == "k1"
    cipher = FieldCipher(ring)
    assert cipher.decrypt(old_token, context=CTX) == "13812345678"
    assert cipher.needs_rotation(old_token)

    new_token = rotate(old_token, context=CTX, ring=ring)
    assert key_id_of(new_token) == "k2"
    assert not cipher.needs_rotation(new_token)
    assert cipher.decrypt(new_token, context=CTX) == "13812345678"
    # once k1 is retired, only the rotated token is readable
    retired = FieldCipher(KeyRing.from_settings({"k2": K2}, current="k2"))
    assert retired.decrypt(new_token, context=CTX) == "13812345678"
    with pytest.raises(DecryptionError, match="not in the key ring"):
        retired.decrypt(old_token, context=CTX)


def test_rotate_is_a_no_op_under_the_current_key(cipher: FieldCipher, ring: KeyRing) -> None:
    token = cipher.encrypt("13812345678", context=CTX)
    assert rotate(token, context=CTX, ring=ring) is token


def test_rotate_refuses_tampered_or_misplaced_old_tokens(old_ring: KeyRing, ring: KeyRing) -> None:
    old_token = FieldCipher(old_ring).encrypt("13812345678", context=CTX)
    with pytest.raises(DecryptionError):
        rotate(old_token, context=field_context("customers", "phone", "other"), ring=ring)


def test_rotate_rows(old_ring: KeyRing, ring: KeyRing) -> None:
    old, new = FieldCipher(old_ring), FieldCipher(ring)

    def ctx(row: int, column: str) -> str:
        return field_context("customers", column, row)

    rows: list[tuple[int, dict[str, str | None]]] = [
        (
            1,
            {
                "name": old.encrypt("张三丰", context=ctx(1, "name")),
                "phone": old.encrypt("13812345678", context=ctx(1, "phone")),
            },
        ),
        (2, {"name": new.encrypt("李四", context=ctx(2, "name")), "phone": None}),
        (
            3,
            {
                "name": old.encrypt("王五", context=ctx(3, "name")),
                "phone": new.encrypt("13912345678", context=ctx(3, "phone")),
            },
        ),
    ]
    results = list(rotate_rows(iter(rows), table="customers", ring=ring))
    assert [r.row_id for r in results] == [1, 2, 3]
    assert all(isinstance(r, RowRotation) for r in results)
    assert set(results[0].tokens) == {"name", "phone"}
    assert not results[1].changed
    assert results[1].tokens == {}
    assert set(results[2].tokens) == {"name"}
    for result in results:
        for column, token in result.tokens.items():
            assert key_id_of(token) == "k2"
            assert new.decrypt(token, context=ctx(result.row_id, column))
    assert new.decrypt(results[0].tokens["phone"], context=ctx(1, "phone")) == "13812345678"


def test_rotate_rows_rebuilds_blind_indexes(old_ring: KeyRing, ring: KeyRing) -> None:
    old = FieldCipher(old_ring)
    old_index, new_index = BlindIndex(old_ring), BlindIndex(ring)
    ctx = field_context("customers", "phone", 7)
    token = old.encrypt("+86 138 1234 5678", context=ctx)
    assert old_index.phone("+86 138 1234 5678").startswith("k1:")
    [result] = rotate_rows([(7, {"phone": token})], table="customers", ring=ring, reindex={"phone": new_index.phone})
    assert result.indexes == {"phone": new_index.phone("13812345678")}
    assert result.indexes["phone"].startswith("k2:")
    assert key_id_of(result.tokens["phone"]) == "k2"


def test_rotate_rows_strict_and_lenient(old_ring: KeyRing, ring: KeyRing) -> None:
    old = FieldCipher(old_ring)
    good = old.encrypt("张三丰", context=field_context("customers", "name", 1))
    misplaced = old.encrypt("13812345678", context=field_context("customers", "phone", 99))
    rows: list[tuple[int, dict[str, str | None]]] = [(1, {"name": good, "phone": misplaced})]
    with pytest.raises(DecryptionError):
        list(rotate_rows(rows, table="customers", ring=ring))
    [result] = rotate_rows(rows, table="customers", ring=ring, strict=False)
    assert result.failures == {"phone": "authentication_failed"}
    assert set(result.tokens) == {"name"}

    blank = old.encrypt("  ", context=field_context("customers", "phone", 2))
    [indexed] = rotate_rows(
        [(2, {"phone": blank})], table="customers", ring=ring, reindex={"phone": BlindIndex(ring).phone}, strict=False
    )
    assert indexed.failures == {"phone": "index_failed"}


# --- blind index --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    ["13812345678", "138 1234 5678", "138-1234-5678", "+86 138 1234 5678", "+8613812345678", "0086 13812345678",
     "8613812345678", "１３８１２３４５６７８", "(+86) 138-1234-5678"],
)  # fmt: skip
def test_phone_index_stable_across_normalisations(ring: KeyRing, variant: str) -> None:
    index = BlindIndex(ring)
    assert index.phone(variant) == index.phone("13812345678")


def test_landline_international_and_domestic_forms_match(ring: KeyRing) -> None:
    assert normalise_phone("+86 575 8512 3456") == normalise_phone("0575-85123456") == "057585123456"
    assert normalise_phone("+86 10 1234 5678") == normalise_phone("010-12345678")
    index = BlindIndex(ring)
    assert index.phone("+86 575 8512 3456") == index.phone("0575-85123456")


@pytest.mark.parametrize(
    "variant", ["33060219900101123X", "33060219900101123x", "330602 19900101 123x", "330602-19900101-123X"]
)
def test_id_number_index_stable_across_normalisations(ring: KeyRing, variant: str) -> None:
    assert normalise_id_number(variant) == "33060219900101123X"
    index = BlindIndex(ring)
    assert index.id_number(variant) == index.id_number("33060219900101123X")


def test_index_shape_and_distinctness(ring: KeyRing) -> None:
    index = BlindIndex(ring)
    value = index.phone("13812345678")
    assert re.fullmatch(r"k2:[0-9a-f]{32}", value)
    assert index.phone("13812345679") != value
    assert "13812345678" not in value


def test_index_differs_across_purposes_and_keys(old_ring: KeyRing, ring: KeyRing) -> None:
    digits = "330602199001011234"
    index = BlindIndex(ring)
    by_phone = index.compute(digits, purpose="phone")
    by_id = index.compute(digits, purpose="id_number")
    assert by_phone.split(":")[1] != by_id.split(":")[1]
    under_k1 = index.compute(digits, purpose="id_number", key_id="k1")
    assert under_k1.startswith("k1:")
    assert under_k1.split(":")[1] != by_id.split(":")[1]
    assert BlindIndex(old_ring).id_number(digits) == under_k1  # same key, same index: rebuilds are reproducible
    other = BlindIndex(KeyRing.from_settings({"k2": generate_key()}, current="k2"))
    assert other.id_number(digits) != by_id


def test_index_is_independent_of_the_cipher_key(ring: KeyRing) -> None:
    """The HMAC key is derived per purpose, never the master key itself."""
    import hashlib
    import hmac

    raw = base64.b64decode(K2)
    direct = hmac.new(raw, b"13812345678", hashlib.sha256).hexdigest()[:32]
    assert BlindIndex(ring).phone("13812345678").split(":")[1] != direct


def test_candidates_and_rebuild(old_ring: KeyRing, ring: KeyRing) -> None:
    index = BlindIndex(ring)
    stored = BlindIndex(old_ring).phone("13812345678")
    candidates = index.candidates("138 1234 5678", purpose="phone")
    assert len(candidates) == 2
    assert candidates[0].startswith("k2:")
    assert stored in candidates
    assert index.needs_rebuild(stored)
    assert not index.needs_rebuild(index.phone("13812345678"))
    assert index.matches("+86 13812345678", stored, purpose="phone")
    assert not index.matches("13812345679", stored, purpose="phone")
    assert not index.matches("13812345678", "k9:" + "0" * 32, purpose="phone")
    assert not index.matches("13812345678", "垃圾", purpose="phone")


def test_index_refuses_empty_values_and_unknown_purposes_or_keys(ring: KeyRing) -> None:
    index = BlindIndex(ring)
    for empty in ("", "  ", " - "):
        with pytest.raises(ValueError, match="empty"):
            index.phone(empty)
    with pytest.raises(ValueError, match="purpose"):
        index.compute("13812345678", purpose="email")  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        index.compute("13812345678", purpose="phone", key_id="k9")


# --- masking ------------------------------------------------------------------------------------


def test_masking_examples() -> None:
    assert mask_phone("13812345678") == "138****5678"
    assert mask_id_number("330602199001011234") == "330602********1234"
    assert mask_name("张三丰") == "张**"
    assert mask_address("浙江省绍兴市越城区人民中路123号3幢201室") == "浙江省绍兴市越城区****"


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("+86 138-1234-5678", "138****5678"),
        ("１３８１２３４５６７８", "138****5678"),
        ("0575-85123456", "057*****3456"),
        ("12345678", "123*5678"),
        ("1234567", "*******"),
        ("123", "***"),
        ("", ""),
        ("  ", ""),
        ("not a phone", "not**hone"),
    ],
)
def test_mask_phone(value: str, masked: str) -> None:
    assert mask_phone(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("33060219900101123x", "330602********123X"),
        ("330602 19900101 1234", "330602********1234"),
        ("330602900101123", "330602*****1123"),  # the old 15-digit form
        ("3306021234", "**********"),
        ("12", "**"),
        ("", ""),
    ],
)
def test_mask_id_number(value: str, masked: str) -> None:
    assert mask_id_number(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("张三", "张*"),
        ("欧阳娜娜", "欧***"),
        ("买买提·艾力", "买*****"),
        ("张", "*"),
        (" 张三 ", "张*"),
        ("Li Lei", "L*****"),
        ("", ""),
        ("   ", ""),
        ("😀x", "😀*"),
    ],
)
def test_mask_name(value: str, masked: str) -> None:
    assert mask_name(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("绍兴市诸暨市暨阳街道东二路5号", "绍兴市诸暨市****"),
        ("北京市朝阳区建国路88号", "北京市朝阳区****"),
        ("上海市浦东新区张江路1号", "上海市浦东新区****"),
        ("新疆维吾尔自治区乌鲁木齐市天山区解放路1号", "新疆维吾尔自治区乌鲁木齐市天山区****"),
        ("浙江省 绍兴市 柯桥区 笛扬路 1 号", "浙江省 绍兴市 柯桥区****"),
        ("越城区", "越城区"),
        ("越城区阳光小区3幢201室", "越城区****"),
        ("12 Main Street", "****"),
        ("人民中路123号", "人民****"),
        ("3幢201室", "****"),
        ("", ""),
        ("  ", ""),
    ],
)
def test_mask_address(value: str, masked: str) -> None:
    assert mask_address(value) == masked


def test_masking_keeps_null_as_null() -> None:
    assert mask_phone(None) is None
    assert mask_id_number(None) is None
    assert mask_name(None) is None
    assert mask_address(None) is None


@settings(max_examples=300, deadline=None)
@given(value=st.text())
def test_masking_is_total(value: str) -> None:
    for mask in (mask_phone, mask_id_number, mask_name, mask_address):
        assert isinstance(mask(value), str)


@settings(max_examples=200, deadline=None)
@given(digits=st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True))
def test_masked_phone_hides_the_middle_four(digits: str) -> None:
    masked = mask_phone(digits)
    assert masked == digits[:3] + "****" + digits[7:]


@settings(max_examples=200, deadline=None)
@given(value=st.from_regex(r"[0-9]{17}[0-9X]", fullmatch=True))
def test_masked_id_number_hides_the_birth_date(value: str) -> None:
    masked = mask_id_number(value)
    assert masked == value[:6] + "*" * 8 + value[-4:]
    assert value[6:14] not in masked[6:14]
