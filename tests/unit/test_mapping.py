"""Declarative mappings: converters, the example files against the catalogue, XML safety, load errors."""

from __future__ import annotations

import contextlib
import string
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from core.catalogue import CATALOGUE
from hub.errors import ConfigError, UnmappableMessage
from hub.mapping import (
    CONVERTERS,
    ConversionError,
    FieldChange,
    Mapping,
    MappingSet,
    UnknownMapping,
    check_mappings,
    diff,
    load_mappings,
)

MAPPINGS_DIR = Path(__file__).resolve().parents[2] / "mappings"

VENDOR_V1 = {"devId": "GM-00012345", "seq": 881, "ts": 1795752000000, "totalLitres": 1234567, "valve": "0"}
VENDOR_V2 = {
    "devId": "GM-00012345",
    "seq": 882,
    "ts": 1795752000123,
    "totalLitres": 1234567,
    "total_m3": "1234.568",
    "valve": "2",
    "batt": {"low": "1", "mv": 3310},
    "rsrp": -97,
}
WECHAT = {
    "appid": "wxd678efh567hg6787",
    "mchid": "1230000109",
    "out_trade_no": "GAS202611270001",
    "transaction_id": "4200001234202611271234567890",
    "trade_type": "JSAPI",
    "trade_state": "SUCCESS",
    "trade_state_desc": "支付成功",
    "bank_type": "CMC",
    "attach": "A10023",
    "success_time": "2026-11-27T12:00:05+08:00",
    "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
    "amount": {"total": 10050, "payer_total": 10050, "currency": "CNY", "payer_currency": "CNY"},
}
ALIPAY = {
    "notify_time": "2026-11-27 12:00:09",
    "notify_type": "trade_status_sync",
    "notify_id": "ac05099524730693a8b330c5ecf72da9786",
    "app_id": "2021000000000000",
    "charset": "utf-8",
    "version": "1.0",
    "sign_type": "RSA2",
    "sign": "c2lnbmF0dXJl",
    "trade_no": "2026112722001412345678901234",
    "out_trade_no": "GAS202611270002",
    "buyer_id": "2088102122524333",
    "trade_status": "TRADE_SUCCESS",
    "total_amount": "88.80",
    "receipt_amount": "88.80",
    "gmt_payment": "2026-11-27 12:00:08",
    "subject": "燃气费",
    "passback_params": "A10023",
}
TAX_RESULT = """<?xml version="1.0" encoding="GBK"?>
<interface>
  <globalInfo><interfaceCode>ECXML.FPKJ.BC.E_INV</interfaceCode></globalInfo>
  <returnStateInfo><returnCode>0000</returnCode><returnMessage>成功</returnMessage></returnStateInfo>
  <Data>
    <FPQQLSH>INV-20261127-0001</FPQQLSH>
    <KHBH>A10023</KHBH>
    <GMF_MC>张三</GMF_MC>
    <FPLXDM>82</FPLXDM>
    <FPHM> 26332000000012345678 </FPHM>
    <KPRQ>20261127120000</KPRQ>
    <HJJE>91.74</HJJE>
    <HJSE>8.26</HJSE>
    <JSHJ>100.00</JSHJ>
    <PDF_URL>https://tax.example/inv/26332000000012345678.pdf</PDF_URL>
  </Data>
</interface>"""


@pytest.fixture(scope="module")
def mappings() -> MappingSet:
    return load_mappings(MAPPINGS_DIR)


def write(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text(body, encoding="utf-8")
    return path


# -- converters ---------------------------------------------------------------------------------


def convert(name: str, value: Any, **options: Any) -> Any:
    return CONVERTERS[name](value, **options)


@pytest.mark.parametrize(
    ("fen", "yuan"),
    [
        (10050, "100.50"),
        (1, "0.01"),
        (0, "0.00"),
        ("1234", "12.34"),
        (-500, "-5.00"),
        (Decimal("700"), "7.00"),
    ],
)
def test_fen_to_yuan_is_exact_with_two_places(fen: Any, yuan: str) -> None:
    result = convert("fen_to_yuan", fen)
    assert isinstance(result, Decimal)
    assert str(result) == yuan


@pytest.mark.parametrize("fen", [12.5, "12.5", "1e3", True, None, "abc", [], 10**25, float("nan")])
def test_fen_to_yuan_rejects_non_integer_fen(fen: Any) -> None:
    with pytest.raises(ConversionError):
        convert("fen_to_yuan", fen)


@pytest.mark.parametrize(
    ("yuan", "fen"),
    [("100.50", 10050), ("0.01", 1), ("88", 8800), (Decimal("1.230"), 123), (3, 300), (0.1, 10)],
)
def test_yuan_to_fen(yuan: Any, fen: int) -> None:
    assert convert("yuan_to_fen", yuan) == fen


@pytest.mark.parametrize("yuan", ["1.234", "abc", "", "NaN", "Infinity", False, None])
def test_yuan_to_fen_rejects_fractions_of_fen_and_junk(yuan: Any) -> None:
    with pytest.raises(ConversionError):
        convert("yuan_to_fen", yuan)


def test_bcd_to_int_both_byte_orders() -> None:
    # CJ/T 188 901F volume "10 00 10 00" (lowest byte first, 2 decimals) is 1000.10 m³.
    assert convert("bcd_to_int", "10 00 10 00", little_endian=True) == 100010
    assert convert("bcd_to_int", "00100010") == 100010
    assert convert("bcd_to_int", bytes.fromhex("34129078563412"), little_endian=True) == 12345678901234
    assert convert("decimal", convert("bcd_to_int", "10001000", little_endian=True), scale=2) == Decimal("1000.10")


@pytest.mark.parametrize("value", ["1A", "123", "", "zz", 12, "FF"])
def test_bcd_to_int_rejects_non_bcd(value: Any) -> None:
    with pytest.raises(ConversionError):
        convert("bcd_to_int", value)


def test_int_to_bcd() -> None:
    assert convert("int_to_bcd", 12345678901234, width=7, little_endian=True) == "34129078563412"
    assert convert("int_to_bcd", 5, width=2) == "0005"
    with pytest.raises(ConversionError, match="does not fit"):
        convert("int_to_bcd", 123456, width=2)
    with pytest.raises(ConversionError, match="negative"):
        convert("int_to_bcd", -1)


def test_time_converters() -> None:
    assert convert("epoch_ms_to_iso", 1795752000000) == "2026-11-27T12:00:00+08:00"
    assert convert("epoch_ms_to_iso", "1795752000123", tz="UTC") == "2026-11-27T04:00:00.123+00:00"
    assert convert("epoch_s_to_iso", 1795752000) == "2026-11-27T12:00:00+08:00"
    assert convert("epoch_s_to_iso", "1795752000.5", tz="Europe/London") == "2026-11-27T04:00:00.500+00:00"
    assert convert("iso_to_epoch_ms", "2026-11-27T12:00:00+08:00") == 1795752000000
    assert convert("iso_to_epoch_ms", "2026-11-27T04:00:00.123Z") == 1795752000123
    assert convert("iso_to_epoch_ms", "2026-11-27 12:00:00") == 1795752000000  # naive → Asia/Shanghai
    assert convert("compact_to_iso", "20261127120000") == "2026-11-27T12:00:00+08:00"
    assert convert("compact_to_iso", "2026-11-27 12:00:08") == "2026-11-27T12:00:08+08:00"
    assert convert("compact_to_iso", "20261127120000", tz="UTC") == "2026-11-27T12:00:00+00:00"
    assert convert("iso", "2026-11-27T12:00:05+08:00") == "2026-11-27T12:00:05+08:00"
    assert convert("iso", "2026-11-27T12:00:05") == "2026-11-27T12:00:05+08:00"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("epoch_ms_to_iso", 10**19),
        ("epoch_ms_to_iso", -(10**19)),
        ("epoch_ms_to_iso", "soon"),
        ("epoch_s_to_iso", 10**15),
        ("compact_to_iso", "20261327120000"),
        ("compact_to_iso", "2026-1127 12:00:00"),
        ("compact_to_iso", "2026112712"),
        ("compact_to_iso", 20261127120000),
        ("iso", "27/11/2026"),
        ("iso_to_epoch_ms", None),
    ],
)
def test_time_converters_reject_junk(name: str, value: Any) -> None:
    with pytest.raises(ConversionError):
        convert(name, value)


def test_number_and_text_converters() -> None:
    assert convert("litres_to_m3", 1234567) == Decimal("1234.567")
    assert str(convert("litres_to_m3", "10")) == "0.010"
    assert convert("decimal", "88.80") == Decimal("88.80")
    assert str(convert("decimal", 3310, scale=3)) == "3.310"
    assert convert("decimal", 0.1) == Decimal("0.1")
    assert convert("int", "-97") == -97
    assert convert("int", Decimal("42.0")) == 42
    assert convert("str", Decimal("1E+2")) == "100"
    assert convert("str", True) == "true"
    assert convert("str", 7) == "7"
    assert convert("upper", "cny") == "CNY"
    assert convert("lower", "ABC") == "abc"
    assert convert("strip", "  A1 ") == "A1"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("litres_to_m3", "1,000"),
        ("decimal", "12.3.4"),
        ("decimal", float("inf")),
        ("decimal", "1" * 30),
        ("int", "4.5"),
        ("int", True),
        ("str", {"a": 1}),
        ("upper", 5),
        ("strip", None),
    ],
)
def test_number_and_text_converters_reject_junk(name: str, value: Any) -> None:
    with pytest.raises(ConversionError):
        convert(name, value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("0", False),
        ("true", True),
        ("FALSE", False),
        ("Y", True),
        ("off", False),
        (1, True),
        (False, False),
    ],
)
def test_bool_converter(value: Any, expected: bool) -> None:
    assert convert("bool", value) is expected


@pytest.mark.parametrize("value", ["2", "maybe", 2, None, 1.0])
def test_bool_converter_rejects_junk(value: Any) -> None:
    with pytest.raises(ConversionError):
        convert("bool", value)


def test_enum_converter() -> None:
    values = {"0": "open", "1": "closed"}
    assert convert("enum", "1", values=values) == "closed"
    assert convert("enum", 0, values=values) == "open"
    assert convert("enum", "9", values=values, default="unknown") == "unknown"
    with pytest.raises(ConversionError, match="none of '0', '1'"):
        convert("enum", "9", values=values)


@pytest.mark.parametrize(
    ("phone", "masked"),
    [("13812345678", "138****5678"), ("+8613812345678", "138****5678"), (13812345678, "138****5678"),
     ("0571-87654321", "057*****4321"), ("12345", "*****")],
)  # fmt: skip
def test_mask_phone(phone: Any, masked: str) -> None:
    assert convert("mask_phone", phone) == masked


def test_every_converter_has_a_docstring() -> None:
    for name, function in CONVERTERS.items():
        assert function.__doc__, name


@given(fen=st.integers(min_value=-(10**15), max_value=10**15))
def test_fen_yuan_round_trip_from_fen(fen: int) -> None:
    assert convert("yuan_to_fen", convert("fen_to_yuan", fen)) == fen


@given(yuan=st.decimals(min_value=-(10**12), max_value=10**12, places=2, allow_nan=False, allow_infinity=False))
def test_fen_yuan_round_trip_from_yuan(yuan: Decimal) -> None:
    back = convert("fen_to_yuan", convert("yuan_to_fen", yuan))
    assert back == yuan
    assert str(back) == str(yuan.quantize(Decimal("0.01")))
    assert convert("fen_to_yuan", convert("yuan_to_fen", str(yuan))) == yuan


@given(number=st.integers(min_value=0, max_value=10**20 - 1), little_endian=st.booleans())
def test_bcd_round_trip(number: int, little_endian: bool) -> None:
    encoded = convert("int_to_bcd", number, width=10, little_endian=little_endian)
    assert len(encoded) == 20
    assert convert("bcd_to_int", encoded, little_endian=little_endian) == number


@given(moment=st.integers(min_value=0, max_value=4102444800000), tz=st.sampled_from(["Asia/Shanghai", "UTC"]))
def test_epoch_ms_round_trip(moment: int, tz: str) -> None:
    assert convert("iso_to_epoch_ms", convert("epoch_ms_to_iso", moment, tz=tz)) == moment


# -- the example mapping files ------------------------------------------------------------------


def test_example_files_load(mappings: MappingSet) -> None:
    assert check_mappings(MAPPINGS_DIR) == []
    assert {"alipay-notify", "tax-invoice-result", "vendor-meter-reading", "wechat-transaction"} <= set(
        mappings.names()
    )
    assert mappings.versions("vendor-meter-reading") == [1, 2]
    assert len(mappings) == len(list(MAPPINGS_DIR.glob("*.toml")))
    refs = [m.ref for m in mappings]
    assert refs.index("vendor-meter-reading@2") == refs.index("vendor-meter-reading@1") + 1


@pytest.mark.parametrize(
    ("name", "version", "sample"),
    [
        ("vendor-meter-reading", 1, VENDOR_V1),
        ("vendor-meter-reading", 2, VENDOR_V2),
        ("wechat-transaction", None, WECHAT),
        ("alipay-notify", None, ALIPAY),
        ("tax-invoice-result", None, TAX_RESULT),
    ],
)
def test_example_output_validates_against_the_catalogue(
    mappings: MappingSet, name: str, version: int | None, sample: Any
) -> None:
    mapping = mappings.get(name, version)
    data = mapping.apply(sample)
    model_class: Any = CATALOGUE.latest(mapping.target).model
    model = model_class.model_validate(data)
    assert model.model_dump(exclude_unset=True).keys() == data.keys()


def test_vendor_readings(mappings: MappingSet) -> None:
    v1 = mappings.get("vendor-meter-reading", 1).apply(VENDOR_V1)
    assert v1 == {
        "meter_id": "GM-00012345",
        "read_at": "2026-11-27T12:00:00+08:00",
        "volume_m3": Decimal("1234.567"),
        "source": "vendor",
        "valve": "open",
    }
    v2 = mappings.get("vendor-meter-reading").apply(VENDOR_V2)
    assert v2["volume_m3"] == Decimal("1234.568")
    assert v2["valve"] == "abnormal"
    assert v2["battery_low"] is True
    assert v2["battery_v"] == Decimal("3.310")
    assert v2["read_at"] == "2026-11-27T12:00:00.123+08:00"


def test_payments(mappings: MappingSet) -> None:
    wechat = mappings.get("wechat-transaction").apply(WECHAT)
    assert wechat["amount"] == Decimal("100.50")
    assert wechat["channel"] == "wechat"
    assert wechat["account_id"] == "A10023"
    assert wechat["payer_ref"] == "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
    alipay = mappings.get("alipay-notify").apply(ALIPAY)
    assert alipay["amount"] == Decimal("88.80")
    assert alipay["paid_at"] == "2026-11-27T12:00:08+08:00"
    assert alipay["transaction_id"] == "2026112722001412345678901234"
    without_payer = {key: value for key, value in WECHAT.items() if key != "payer"}
    assert "payer_ref" not in mappings.get("wechat-transaction").apply(without_payer)


def test_json_bytes_input(mappings: MappingSet) -> None:
    mapping = mappings.get("wechat-transaction")
    assert mapping.apply(orjson.dumps(WECHAT)) == mapping.apply(WECHAT)
    with pytest.raises(UnmappableMessage, match="not JSON"):
        mapping.apply(b"{not json")
    with pytest.raises(UnmappableMessage, match="JSON list, expected an object"):
        mapping.apply(b"[1, 2]")


def test_tax_result_xml(mappings: MappingSet) -> None:
    mapping = mappings.get("tax-invoice-result")
    assert mapping.source_format == "xml"
    data = mapping.apply(TAX_RESULT)
    assert data["invoice_number"] == "26332000000012345678"
    assert data["issued_at"] == "2026-11-27T12:00:00+08:00"
    assert data["invoice_type"] == "digital_ordinary"
    assert data["user_name"] == "张三"
    assert mapping.apply(TAX_RESULT.encode("gbk")) == data


def test_replay_diff_between_versions(mappings: MappingSet) -> None:
    before = mappings.get("vendor-meter-reading", 1).apply(VENDOR_V2)
    after = mappings.get("vendor-meter-reading", 2).apply(VENDOR_V2)
    changes = MappingSet.diff(before, after)
    assert [(c.path, c.kind) for c in changes] == [
        ("battery_low", "added"),
        ("battery_v", "added"),
        ("signal_rsrp", "added"),
        ("valve", "changed"),
        ("volume_m3", "changed"),
    ]
    volume = next(c for c in changes if c.path == "volume_m3")
    assert (volume.old, volume.new) == (Decimal("1234.567"), Decimal("1234.568"))
    assert str(volume) == "~ volume_m3: Decimal('1234.567') -> Decimal('1234.568')"


def test_diff_nested_lists_and_types() -> None:
    before = {"amount": {"total": Decimal("1.00"), "currency": "CNY"}, "lines": [{"n": 1}, {"n": 2}], "x": 1}
    after = {"amount": {"total": "1.00"}, "lines": [{"n": 1}], "x": 1, "y": None}
    assert diff(before, after) == [
        FieldChange("amount.currency", "CNY", None, "removed"),
        FieldChange("amount.total", Decimal("1.00"), "1.00", "changed"),
        FieldChange("lines[1].n", 2, None, "removed"),
        FieldChange("y", None, None, "added"),
    ]
    assert diff({"a": Decimal("1.0")}, {"a": Decimal("1.00")}) == []
    assert diff({}, {}) == []


# -- runtime errors -----------------------------------------------------------------------------


def test_missing_required_source_names_mapping_version_and_field(mappings: MappingSet) -> None:
    sample = {key: value for key, value in VENDOR_V1.items() if key != "ts"}
    with pytest.raises(UnmappableMessage) as caught:
        mappings.get("vendor-meter-reading", 1).apply(sample)
    message = str(caught.value)
    assert "mapping vendor-meter-reading v1" in message
    assert "field read_at (from 'ts', epoch_ms_to_iso)" in message
    assert "absent" in message


def test_converter_failure_is_unmappable(mappings: MappingSet) -> None:
    with pytest.raises(UnmappableMessage, match=r"v1, field amount \(from 'amount.total', fen_to_yuan\)"):
        mappings.get("wechat-transaction").apply({**WECHAT, "amount": {"total": 100.5}})
    with pytest.raises(UnmappableMessage, match="field paid_at"):
        mappings.get("alipay-notify").apply({**ALIPAY, "gmt_payment": "yesterday"})


def test_xml_mapping_needs_xml(mappings: MappingSet) -> None:
    with pytest.raises(UnmappableMessage, match="expected XML"):
        mappings.get("tax-invoice-result").apply({"Data": {}})


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<interface><Data><FPQQLSH>&lol9;</FPQQLSH></Data></interface>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE interface [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<interface><Data><FPQQLSH>&xxe;</FPQQLSH><GMF_MC>&xxe;</GMF_MC></Data></interface>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE interface SYSTEM "http://127.0.0.1:9/evil.dtd">
<interface><Data><FPQQLSH>x</FPQQLSH></Data></interface>"""


@pytest.mark.parametrize("document", [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD, BILLION_LAUGHS.decode()])
def test_xml_with_doctype_or_entities_is_refused(mappings: MappingSet, document: bytes | str) -> None:
    with pytest.raises(UnmappableMessage) as caught:
        mappings.get("tax-invoice-result").apply(document)
    assert "DOCTYPE" in str(caught.value)
    assert "root:" not in str(caught.value)  # nothing from /etc/passwd leaks into the reason


@pytest.mark.parametrize(
    "document",
    [b"", b"not xml", b"<interface><Data>", b"<a></b>", "<interface>\x00</interface>", b"\xff\xfe<a/>"],
)
def test_broken_xml_is_unmappable(mappings: MappingSet, document: bytes | str) -> None:
    with pytest.raises(UnmappableMessage):
        mappings.get("tax-invoice-result").apply(document)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8) | st.decimals(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def junk_for(sample: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """The sample's keys with junk values, some keys dropped, some junk keys added."""
    keys = sorted(sample)
    return st.fixed_dictionaries({}, optional={key: json_values for key in keys}) | st.dictionaries(
        st.sampled_from(keys) | st.text(max_size=5), json_values, max_size=8
    )


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_junk_json_input_only_ever_raises_unmappable(mappings: MappingSet, data: st.DataObject) -> None:
    cases: list[tuple[Mapping, dict[str, Any]]] = [
        (mappings.get("vendor-meter-reading", 1), VENDOR_V1),
        (mappings.get("vendor-meter-reading", 2), VENDOR_V2),
        (mappings.get("wechat-transaction"), WECHAT),
        (mappings.get("alipay-notify"), ALIPAY),
    ]
    for mapping, sample in cases:
        junk = data.draw(junk_for(sample) | st.binary(max_size=40) | st.text(max_size=40))
        with contextlib.suppress(UnmappableMessage):
            mapping.apply(junk)


xml_text = st.text(alphabet=string.printable + "内容&<>", max_size=20)


@settings(max_examples=300, deadline=None)
@given(value=xml_text, raw=st.binary(max_size=60))
def test_junk_xml_input_only_ever_raises_unmappable(mappings: MappingSet, value: str, raw: bytes) -> None:
    mapping = mappings.get("tax-invoice-result")
    for document in (TAX_RESULT.replace("20261127120000", value), TAX_RESULT.replace("100.00", value), raw):
        with contextlib.suppress(UnmappableMessage):
            mapping.apply(document)


# -- features exercised through small files -----------------------------------------------------


FEATURES = """
name = "features"
version = 1
source = "test.features.in"
target = "test.features.out"

[fields]
amount.total = { from = "amount.total", convert = "fen_to_yuan" }
amount.currency = { const = "CNY" }
first_item = { from = "items[0].name", convert = ["strip", "upper"] }
last_item = { from = "items[-1].name", optional = true }
note = { template = "{devId}/{seq} {{literal}}" }
plan = { from = "plan", lookup = "plans", default = "standard" }
flags = { const = ["a", "b"] }
state = { from = "state", convert = "enum", values = { "0" = "open" }, default = "unknown" }
fallback = { from = "missing", default = 0 }

[lookups.plans]
R1 = "residential"
C1 = "commercial"
"""


def test_field_features(tmp_path: Path) -> None:
    write(tmp_path, "features.toml", FEATURES)
    mapping = load_mappings(tmp_path).get("features")
    assert isinstance(mapping, Mapping)
    document = {
        "amount": {"total": 1999},
        "items": [{"name": " gas "}, {"name": "fee"}],
        "devId": "GM-1",
        "seq": 7,
        "plan": "C1",
        "state": "5",
    }
    assert mapping.apply(document) == {
        "amount": {"total": Decimal("19.99"), "currency": "CNY"},
        "first_item": "GAS",
        "last_item": "fee",
        "note": "GM-1/7 {literal}",
        "plan": "commercial",
        "flags": ["a", "b"],
        "state": "unknown",
        "fallback": 0,
    }
    del document["seq"]
    with pytest.raises(UnmappableMessage, match="field note"):
        mapping.apply(document)
    document["seq"] = 8
    assert mapping.apply({**document, "plan": "X9"})["plan"] == "standard"
    assert mapping.apply({**document, "plan": "R1", "items": [{"name": "a"}]})["last_item"] == "a"
    assert mapping.fields[0] == "amount.total"
    assert mapping.file == tmp_path / "features.toml"


def test_xml_namespaces_and_xpath_functions(tmp_path: Path) -> None:
    write(
        tmp_path,
        "soap.toml",
        """
name = "soap"
version = 1
source = "test.soap.in"
target = "test.soap.out"
format = "xml"
namespaces = { s = "http://schemas.xmlsoap.org/soap/envelope/", t = "urn:tax" }

[fields]
code = { from = "s:Body/t:result/t:code" }
count = { from = "count(s:Body/t:result/t:line)", convert = "int" }
first = { from = "string(s:Body/t:result/t:line[1]/@n)" }
missing = { from = "s:Body/t:nothing", optional = true }
""",
    )
    mapping = load_mappings(tmp_path).get("soap")
    document = (
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><t:result xmlns:t="urn:tax">'
        '<t:code>0000</t:code><t:line n="A"/><t:line n="B"/></t:result></s:Body></s:Envelope>'
    )
    assert mapping.apply(document) == {"code": "0000", "count": 2, "first": "A"}


# -- load errors --------------------------------------------------------------------------------

GOOD = """
name = "good"
version = 1
source = "vendor.demo.reading"
target = "meter.reading"

[fields]
meter_id = { from = "devId" }
"""


def with_field(spec: str) -> str:
    return GOOD.replace('{ from = "devId" }', spec)


@pytest.mark.parametrize(
    ("body", "where", "fragment"),
    [
        (with_field('{ from = "devId", defualt = 1 }'), "fields.meter_id", "unknown key 'defualt'"),
        (
            with_field('{ from = "devId", convert = "yuan" }'),
            "fields.meter_id.convert",
            "unknown converter 'yuan'",
        ),
        (
            with_field('{ from = "devId", convert = "enum" }'),
            "fields.meter_id.convert",
            "needs option values",
        ),
        (
            with_field('{ from = "devId", tz = "UTC" }'),
            "fields.meter_id.convert",
            "option tz is taken by none",
        ),
        (with_field('{ from = "ts", tz = "Mars/Base" }'), "fields.meter_id.tz", "unknown time zone"),
        (
            with_field('{ from = "devId", lookup = "nope" }'),
            "fields.meter_id.lookup",
            "no [lookups.nope] table",
        ),
        (with_field('{ from = "a..b" }'), "fields.meter_id.from", "empty segment"),
        (with_field('{ from = "a[x]" }'), "fields.meter_id.from", "bad path"),
        (with_field('{ template = "{devId" }'), "fields.meter_id.template", "unbalanced brace"),
        (with_field('{ from = "devId", const = "x" }'), "fields.meter_id", "exactly one of"),
        (with_field("{ }"), "fields.meter_id", "exactly one of"),
        (
            with_field('{ from = "a", optional = true, default = "x" }'),
            "fields.meter_id",
            "exclude each other",
        ),
        (with_field('{ const = "x", convert = "upper" }'), "fields.meter_id", "takes no 'convert'"),
        (GOOD.replace("meter_id", "meter"), "fields.meter", "meter.reading has no field 'meter'"),
        (GOOD + '"meter_id.sub" = { from = "x" }', "fields.meter_id", "both a value and the parent"),
        (GOOD + 'meter_id.sub = { from = "x" }', "", "not valid TOML"),
        (GOOD.replace("meter_id =", '"bad key!" ='), "fields.bad key!", "should match pattern"),
        (GOOD.replace("version = 1", "version = 0"), "version", "greater than or equal to 1"),
        (GOOD.replace("version = 1", 'version = "one"'), "version", "valid integer"),
        (GOOD.replace('target = "meter.reading"', ""), "", "required key 'target' is missing"),
        (GOOD + "colour = 'red'\n", "fields.colour", "valid dictionary"),
        (GOOD + "colour.x = { const = 1 }\n", "fields.colour.x", "meter.reading has no field 'colour'"),
        (GOOD.replace("[fields]", "colour = 'red'\n[fields]"), "", "unknown key 'colour'"),
        (GOOD.replace("[fields]", 'format = "csv"\n[fields]'), "format", "'json' or 'xml'"),
        (GOOD.replace("version = 1", "version = 1\nversion = 2"), "", "not valid TOML"),
    ],
)
def test_load_errors_name_file_and_field(tmp_path: Path, body: str, where: str, fragment: str) -> None:
    write(tmp_path, "broken.toml", body)
    with pytest.raises(ConfigError) as caught:
        load_mappings(tmp_path)
    expected_where = f"{tmp_path.name}/broken.toml" + (f": {where}" if where else "")
    assert caught.value.where == expected_where
    assert fragment in caught.value.detail


def test_xpath_syntax_error_is_a_config_error(tmp_path: Path) -> None:
    body = GOOD.replace('target = "meter.reading"', 'target = "test.x.out"\nformat = "xml"')
    write(tmp_path, "x.toml", body.replace('"devId"', '"Data/[["'))
    with pytest.raises(ConfigError) as caught:
        load_mappings(tmp_path)
    assert caught.value.where == f"{tmp_path.name}/x.toml: fields.meter_id.from"


def test_duplicate_versions_are_an_error(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", GOOD)
    write(tmp_path, "b.toml", GOOD)
    write(tmp_path, "c.toml", GOOD.replace("version = 1", "version = 2"))
    with pytest.raises(ConfigError) as caught:
        load_mappings(tmp_path)
    assert caught.value.where == f"{tmp_path.name}/b.toml: version"
    assert "'good' v1 is already defined in a.toml" in caught.value.detail


def test_check_mappings_collects_every_problem(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", GOOD.replace('{ from = "devId" }', '{ from = "devId", convert = "nope" }'))
    write(tmp_path, "b.toml", GOOD.replace("version = 1", "version = 0").replace("meter_id", "meter"))
    write(tmp_path, "c.toml", "this is not toml")
    write(tmp_path, "d.toml", GOOD.replace('name = "good"', 'name = "fine"'))
    problems = check_mappings(tmp_path)
    places = sorted(problem.where for problem in problems)
    folder = tmp_path.name
    assert places == [
        f"{folder}/a.toml: fields.meter_id.convert",
        f"{folder}/b.toml: version",
        f"{folder}/c.toml",
    ]
    with pytest.raises(ConfigError, match=r"and 2 more problem\(s\)"):
        load_mappings(tmp_path)


def test_missing_directory(tmp_path: Path) -> None:
    assert [e.where for e in check_mappings(tmp_path / "nope")] == [str(tmp_path / "nope")]


def test_mapping_set_lookup(tmp_path: Path) -> None:
    write(tmp_path, "v1.toml", GOOD)
    write(tmp_path, "v3.toml", GOOD.replace("version = 1", "version = 3"))
    mappings = load_mappings(tmp_path)
    assert mappings.get("good").version == 3
    assert mappings.get("good", 1).version == 1
    assert mappings.versions("good") == [1, 3]
    assert mappings.versions("nope") == []
    assert "good" in mappings
    assert ("good", 3) in mappings
    assert ("good", 2) not in mappings
    with pytest.raises(UnknownMapping, match=r"mapping 'good' has no version 2 \(versions: v1, v3\)"):
        mappings.get("good", 2)
    with pytest.raises(KeyError, match=r"no mapping named 'bad' \(mappings: good\)"):
        mappings.get("bad")
    assert [m.version for m in mappings] == [1, 3]


# The fast paths give the general path's answers

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300)
@given(document=_json, path=st.sampled_from(["a", "b", "a.b", "a.c", "b.a"]))
def test_short_paths_read_as_the_general_getter_does(document: Any, path: str) -> None:
    from hub.mapping.sources import _general_getter, json_getter, parse_path

    assert json_getter(path)(document) == _general_getter(parse_path(path))(document)


@settings(max_examples=300)
@given(moment=st.datetimes(timezones=st.timezones() | st.none()))
def test_times_format_as_isoformat_to_the_second_or_the_millisecond(moment: Any) -> None:
    from hub.mapping.converters import _format

    assert _format(moment) == moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds")


_ZONES = ["Asia/Shanghai", "UTC", "Asia/Kolkata", "Asia/Kathmandu", "America/New_York", "Australia/Lord_Howe",
          "Europe/London", "America/St_Johns", "Pacific/Chatham", "Africa/Monrovia"]


@settings(max_examples=500)
@given(
    microseconds=st.integers(min_value=-2_208_988_800_000_000, max_value=4_102_444_800_000_000)
    | st.integers(min_value=1_700_000_000, max_value=1_900_000_000).map(lambda s: s * 1_000_000),
    tz=st.sampled_from(_ZONES),
    repeat=st.integers(min_value=0, max_value=3600 * 30),
)
def test_epoch_times_from_the_hour_cache_equal_the_zone_arithmetic(microseconds: int, tz: str, repeat: int) -> None:
    """The first time of an hour goes through ``ZoneInfo``; later ones in the same UTC hour through
    the cached offset. Both must give what ``datetime.fromtimestamp`` and ``_format`` give, also
    in hours with a daylight-saving switch, half- and quarter-hour zones and old local mean times."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from hub.mapping.converters import _format, _from_epoch

    def reference(us: int) -> str:
        seconds, fraction = divmod(us, 1_000_000)
        return _format(datetime.fromtimestamp(seconds, ZoneInfo(tz)).replace(microsecond=fraction))

    later = microseconds + repeat * 1000 * 997  # somewhere in the same hour or the next ones
    for us in (microseconds, microseconds + 1, later, microseconds, later):
        assert _from_epoch(us, tz) == reference(us)


def test_epoch_times_across_a_daylight_saving_switch() -> None:
    from hub.mapping.converters import epoch_ms_to_iso

    # New York, 2026-03-08: 01:59:59 EST is followed by 03:00:00 EDT (06:59:59 and 07:00:00 UTC).
    start = 1_772_953_200_000  # 2026-03-08T07:00:00Z
    assert epoch_ms_to_iso(start - 1000, tz="America/New_York") == "2026-03-08T01:59:59-05:00"
    assert epoch_ms_to_iso(start, tz="America/New_York") == "2026-03-08T03:00:00-04:00"
    assert epoch_ms_to_iso(start - 1000, tz="America/New_York") == "2026-03-08T01:59:59-05:00"
    assert epoch_ms_to_iso(start + 1500, tz="America/New_York") == "2026-03-08T03:00:01.500-04:00"
    # St John's switches in the middle of a UTC hour: 2026-03-08T05:30:00Z, 01:59:59 NST → 03:00:00 NDT.
    switch = 1_772_947_800_000
    assert epoch_ms_to_iso(switch - 20 * 60_000, tz="America/St_Johns") == "2026-03-08T01:40:00-03:30"
    assert epoch_ms_to_iso(switch + 10 * 60_000, tz="America/St_Johns") == "2026-03-08T03:10:00-02:30"
    assert epoch_ms_to_iso(switch - 1, tz="America/St_Johns") == "2026-03-08T01:59:59.999-03:30"


def _decimal_reference(value: Any, what: str) -> Decimal:
    """``_to_decimal`` as it was before its fast paths for text and ints (2026-11-28)."""
    import math
    import re

    from hub.mapping.converters import ConversionError

    pattern = re.compile(r"[+-]?(\d{1,20}(\.\d{0,8})?|\.\d{1,8})")
    if isinstance(value, bool):
        raise ConversionError("boolean")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ConversionError("not finite")
        number = Decimal(repr(value))
    elif isinstance(value, str):
        if pattern.fullmatch(value.strip()) is None:
            raise ConversionError("not a number")
        return Decimal(value.strip())
    else:
        raise ConversionError("not a number")
    if not number.is_finite():
        raise ConversionError("not finite")
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    if number.adjusted() >= 20 or exponent < -8:
        raise ConversionError("out of range")
    return number


@settings(max_examples=500)
@example(value=10**20)
@example(value=-(10**20))
@example(value=10**20 - 1)
@example(value=" 12.50 ")
@example(value=True)
@given(value=st.integers() | st.integers(min_value=-(10**21), max_value=10**21) | st.booleans()
       | st.decimals(allow_nan=True, allow_infinity=True) | st.floats()
       | st.from_regex(r"\s*[+-]?\d{0,22}(\.\d{0,10})?\s*", fullmatch=True) | st.text(max_size=8) | st.none())
def test_decimal_fast_paths_agree_with_the_general_conversion(value: Any) -> None:
    from hub.mapping.converters import ConversionError, _to_decimal

    try:
        expected = _decimal_reference(value, "decimal")
    except ConversionError:
        with pytest.raises(ConversionError):
            _to_decimal(value, "decimal")
        return
    got = _to_decimal(value, "decimal")
    assert got.as_tuple() == expected.as_tuple()
