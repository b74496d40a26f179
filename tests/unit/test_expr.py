"""The route expression language: what compiles, what is refused, and how evaluation behaves."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.errors import ConfigError, UnmappableMessage
from hub.routing.expr import ENV_NAMES, compile_expr, compile_key, compile_predicate

WHERE = "routes/alarms.toml: routes.leak.where"

ALARM: dict[str, Any] = {
    "type": "alarm.raised",
    "source": "ctwing",
    "subject": "GM-1",
    "attempt": 1,
    "headers": {"x-trace": "t-1"},
    "data": {
        "kind": "leak",
        "severity": 4,
        "meter_id": "GM-1",
        "tags": ["indoor", "kitchen"],
        "site": {"district": "Xihu", "floor": 3},
        "amount": Decimal("12.50"),
    },
}


def value(source: str, env: dict[str, Any] = ALARM) -> Any:
    return compile_expr(source, where=WHERE).evaluate(env)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("data.kind", "leak"),
        ("data['kind']", "leak"),
        ("data.site.district", "Xihu"),
        ("data['site']['floor']", 3),
        ("data.tags[0]", "indoor"),
        ("data.tags[-1]", "kitchen"),
        ("headers['x-trace']", "t-1"),
        ("type", "alarm.raised"),
        ("attempt", 1),
        ("'x'", "x"),
        ("-3", -3),
        ("2.5", 2.5),
        ("None", None),
        ("[1, 'a', None]", (1, "a", None)),
        ("(data.kind, data.severity)", ("leak", 4)),
        ("[data.kind]", ("leak",)),
        ("data.kind == 'leak'", True),
        ("data.kind != 'leak'", False),
        ("data.severity < 5", True),
        ("data.severity <= 4", True),
        ("data.severity > 4", False),
        ("data.severity >= 4", True),
        ("1 < data.severity < 5", True),
        ("1 < data.severity < 3", False),
        ("data.kind in ['leak', 'abnormal_flow']", True),
        ("data.kind not in ['leak', 'abnormal_flow']", False),
        ("'kitchen' in data.tags", True),
        ("'floor' in data.site", True),
        ("'ea' in data.kind", True),
        ("data.kind in [type, 'leak']", True),
        ("data.kind == 'leak' and data.severity", 4),
        ("data.kind == 'gas' or data.severity", 4),
        ("data.missing or 'fallback'", "fallback"),
        ("not data.missing", True),
        ("data.kind == 'leak' and data.severity >= 3 and source == 'ctwing'", True),
        ("source + ':' + subject", "ctwing:GM-1"),
        ("data.severity + 1", 5),
        ("data.amount + 1", Decimal("13.50")),
        ("str(data.severity)", "4"),
        ("str(data.amount)", "12.50"),
        ("len(data.tags)", 2),
        ("lower('LeAk')", "leak"),
        ("lower(data.kind) == 'leak'", True),
        ("len(data.kind) == 4", True),
    ],
)
def test_allowed_constructs_evaluate_like_python(source: str, expected: Any) -> None:
    result = value(source)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    "source",
    [
        "data.missing",
        "data.site.missing.deeper",
        "data.tags[7]",
        "data.kind.sub",
        "data.tags.first",
        "data[0]",
        "data.tags['a']",
        "headers.nothing",
        "subject.x",
        "str(data.missing)",
        "len(data.missing)",
        "len(data.severity)",
        "lower(data.severity)",
        "data.kind + 1",
        "data.missing + 'x'",
        "data.tags + data.tags",
        "data.amount + 0.5",
    ],
)
def test_missing_keys_and_bad_lookups_give_none(source: str) -> None:
    assert value(source) is None


@pytest.mark.parametrize(
    "source",
    [
        "data.missing < 3",
        "data.missing >= 3",
        "data.kind > 3",
        "3 < data.kind",
        "data.tags < data.site",
        "1 in data.missing",
        "1 in data.kind",
        "data.tags in data.site",
        "1 not in data.missing",
        "data.amount < 'x'",
        "data.missing.x == 'leak'",
        "None < None",
    ],
)
def test_incompatible_comparisons_are_false_never_raise(source: str) -> None:
    assert value(source) is False
    assert compile_predicate(source, where=WHERE)(ALARM) is False


def test_missing_top_level_name_is_none() -> None:
    assert value("subject", {"data": {}}) is None
    assert compile_predicate("subject == 'x'", where=WHERE)({}) is False


def test_nan_decimal_comparison_is_false() -> None:
    assert value("data.x < 1", {"data": {"x": Decimal("NaN")}}) is False


@pytest.mark.parametrize(
    ("source", "construct", "column"),
    [
        ("__import__('os')", "call to '__import__'", 1),
        ("eval('1')", "call to 'eval'", 1),
        ("data.kind == 'leak' and open('/etc/passwd')", "call to 'open'", 25),
        ("data.__class__", "dunder attribute '.__class__'", 6),
        ("data.kind.__class__.__mro__", "dunder attribute '.__class__'", 11),
        ("data.kind.lower()", "method call '.lower()'", 1),
        ("lambda: 1", "lambda", 1),
        ("[x for x in data.tags]", "list comprehension", 1),
        ("{x for x in data.tags}", "set comprehension", 1),
        ("{k: 1 for k in data}", "dict comprehension", 1),
        ("any(x for x in data.tags)", "call to 'any'", 1),
        ("f'{data.kind}'", "f-string", 1),
        ("data.kind if data else 1", "conditional expression", 1),
        ("(x := 1)", "assignment expression", 2),
        ("{'a': 1}", "dict literal", 1),
        ("{1, 2}", "set literal", 1),
        ("data.severity * 2", "operator *", 1),
        ("data.severity - 1", "operator -", 1),
        ("data.severity ** 99", "operator **", 1),
        ("-data.severity", "unary -", 1),
        ("~1", "operator ~", 1),
        ("data.kind is None", "'is'", 1),
        ("data.kind is not None", "'is not'", 1),
        ("data.tags[0:1]", "slice", 11),
        ("data[type]", "non-constant key", 6),
        ("data[True]", "non-constant key", 6),
        ("str(*data.tags)", "one positional argument", 1),
        ("str(x=1)", "one positional argument", 1),
        ("len(data, data)", "one positional argument", 1),
        ("[*data.tags]", "starred expression", 2),
        ("b'bytes'", "constant of type bytes", 1),
        ("...", "constant of type ellipsis", 1),
        ("1j", "constant of type complex", 1),
        ("(lambda: 1)()", "call of a computed function", 1),
        ("'内容' == data.kind or globals()", "call to 'globals'", 22),
    ],
)
def test_refused_constructs_name_the_construct_and_column(source: str, construct: str, column: int) -> None:
    with pytest.raises(ConfigError) as caught:
        compile_expr(source, where=WHERE)
    assert caught.value.where == WHERE
    assert construct in caught.value.detail
    assert f"column {column} " in caught.value.detail
    assert str(caught.value).startswith(WHERE + ": ")


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("nope == 1", "unknown name 'nope'"),
        ("str", "function 'str' used without calling it"),
        ("data.kind ==", "syntax error"),
        ("import os", "syntax error"),
        ("1; 2", "syntax error"),
        ("", "empty"),
        ("   ", "empty"),
        ("x" * 3000, "longer than"),
        ("(" * 300 + "1" + ")" * 300, "nested"),
    ],
)
def test_other_compile_errors_are_config_errors(source: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        compile_expr(source, where=WHERE)


def test_names_can_be_restricted_or_extended() -> None:
    with pytest.raises(ConfigError, match="unknown name 'data'"):
        compile_expr("data.kind", where=WHERE, names={"type"})
    assert compile_expr("route == 'x'", where=WHERE, names=ENV_NAMES | {"route"}).evaluate({"route": "x"})


def test_multiline_expression_reports_the_line() -> None:
    with pytest.raises(ConfigError, match="line 2, column 5"):
        compile_expr("(data.kind == 'a'\n or open(1))", where=WHERE)


def test_predicate_is_truthiness() -> None:
    assert compile_predicate("data.severity", where=WHERE)(ALARM) is True
    assert compile_predicate("data.missing", where=WHERE)(ALARM) is False
    assert compile_predicate("data.tags", where=WHERE)({"data": {"tags": []}}) is False
    assert compile_predicate("not data.missing", where=WHERE)(ALARM) is True


def test_expression_works_on_any_mapping_environment() -> None:
    from types import MappingProxyType

    env = MappingProxyType({"data": MappingProxyType({"kind": "leak"})})
    assert compile_predicate("data.kind == 'leak'", where=WHERE)(env) is True
    assert value("data.kind.x", {"data": MappingProxyType({"kind": "leak"})}) is None


def test_compile_key_returns_text() -> None:
    key = compile_key("source + ':' + str(data.upPacketSN)", where="routes/ctwing.toml: routes.readings.dedup")
    assert key({"source": "ctwing", "data": {"upPacketSN": 42}}) == "ctwing:42"
    assert compile_key("data.severity", where=WHERE)(ALARM) == "4"
    assert compile_key("data.amount", where=WHERE)(ALARM) == "12.50"


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"source": "ctwing", "data": {}}, "is None"),
        ({"data": {"upPacketSN": 1}}, "is None"),
        ({"source": 5, "data": {"upPacketSN": 1}}, "is None"),
    ],
)
def test_compile_key_refuses_none(env: dict[str, Any], reason: str) -> None:
    key = compile_key("source + ':' + str(data.upPacketSN)", where="routes/ctwing.toml: routes.readings.dedup")
    with pytest.raises(UnmappableMessage, match=reason) as caught:
        key(env)
    assert "routes/ctwing.toml: routes.readings.dedup" in str(caught.value)


def test_compile_key_refuses_empty_text() -> None:
    key = compile_key("data.id", where=WHERE)
    with pytest.raises(UnmappableMessage, match="is empty"):
        key({"data": {"id": ""}})
    with pytest.raises(UnmappableMessage, match="is None"):
        key({"data": {}})


def test_compile_key_refuses_bad_source_at_compile_time() -> None:
    with pytest.raises(ConfigError, match="call to 'hash'"):
        compile_key("hash(data)", where=WHERE)


def test_evaluation_does_not_use_eval(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    predicate = compile_predicate("data.kind in ['leak', 'abnormal_flow'] and data.severity >= 3", where=WHERE)

    def forbidden(*args: object) -> None:
        raise AssertionError("eval/exec called")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    assert predicate(ALARM) is True
    assert predicate({"data": {"kind": "tamper", "severity": 5}}) is False


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)

PROPERTY_EXPRESSIONS = [
    compile_expr(source, where=WHERE)
    for source in (
        "data.kind in ['leak', 'abnormal_flow'] and data.severity >= 3",
        "data.a < data.b <= data.c",
        "data.a + data.b",
        "str(data.a) + lower(data.b)",
        "len(data.a) > 1 or data.b[0].c == None",
        "data.a not in data.b",
        "data.a['k'][2] != data.c",
    )
]


@given(data=json_values)
def test_evaluation_never_raises_on_json_like_data(data: Any) -> None:
    env = {"data": data}
    for expr in PROPERTY_EXPRESSIONS:
        expr.evaluate(env)
        expr.evaluate({"data": {"a": data, "b": data, "c": data, "kind": data, "severity": data}})
