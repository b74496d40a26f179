"""Input rules of the account use cases: GB 11643 check digit, mobile phones, places in Shaoxing."""

from __future__ import annotations

import pytest

from core.accounts import id_check_digit, valid_id_number, valid_phone, valid_place
from core.errors import DomainRejected


def with_check(first17: str) -> str:
    return first17 + id_check_digit(first17)


@pytest.mark.parametrize(
    ("first17", "check"),
    [
        ("11010519491231002", "X"),  # the standard's own example
        ("44052418800101001", "4"),
        ("33060219900101123", with_check("33060219900101123")[-1]),
    ],
)
def test_check_digit(first17: str, check: str) -> None:
    assert id_check_digit(first17) == check


def test_check_digit_covers_every_remainder() -> None:
    seen = {id_check_digit(f"3306021990010{n:04d}") for n in range(200)}
    assert seen == set("0123456789X")


@pytest.mark.parametrize("bad", ["1101051949123100", "110105194912310021", "a1010519491231002"])
def test_check_digit_needs_17_digits(bad: str) -> None:
    with pytest.raises(ValueError, match="17"):
        id_check_digit(bad)


def test_valid_id_number_normalises_lower_case_x_and_spaces() -> None:
    assert valid_id_number("110105 19491231 002x") == "11010519491231002X"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("11010519491231002", "18 characters"),
        ("1101051949123100XX", "18 characters"),
        ("110105194912310021", "check digit"),
        (with_check("11010519491331002"), "birth date"),  # month 13
        ("", "18 characters"),
    ],
)
def test_invalid_id_numbers_are_rejected(value: str, message: str) -> None:
    with pytest.raises(DomainRejected, match=message) as caught:
        valid_id_number(value)
    if value:
        assert value not in str(caught.value)  # the message never repeats the number


@pytest.mark.parametrize(
    "value", ["13812345678", "+86 138 1234 5678", "0086-138-1234-5678", "8613812345678", "138 1234 5678"]
)
def test_phone_variants_normalise_to_eleven_digits(value: str) -> None:
    assert valid_phone(value) == "13812345678"


@pytest.mark.parametrize("value", ["1381234567", "138123456789", "12812345678", "0575-85123456", "abc", ""])
def test_invalid_phones_are_rejected(value: str) -> None:
    with pytest.raises(DomainRejected, match="11 digits"):
        valid_phone(value)


def test_places_inside_shaoxing() -> None:
    assert valid_place("Yuecheng", 30.00, 120.58) == "yuecheng"
    assert valid_place("xinchang", 29.50, 120.90) == "xinchang"


@pytest.mark.parametrize(("lat", "lon"), [(31.23, 121.47), (29.1, 120.5), (30.0, 119.8), (30.0, 121.3)])
def test_places_outside_the_city_are_rejected(lat: float, lon: float) -> None:
    with pytest.raises(DomainRejected, match="outside Shaoxing"):
        valid_place("yuecheng", lat, lon)


def test_unknown_district_is_rejected() -> None:
    with pytest.raises(DomainRejected, match="unknown district"):
        valid_place("hangzhou", 30.0, 120.5)
