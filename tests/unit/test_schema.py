"""The catalogue as JSON Schema and AsyncAPI: well-formed schemas that agree with the models, personal
fields marked, and references that resolve.

``jsonschema`` is not a dependency, so the schemas are checked by a small meta-check (known keywords,
well-typed values, compilable patterns, resolvable ``$ref``) and a small instance validator for the
keywords pydantic emits; both are strict about anything they do not know, so a new construct fails here
instead of passing unchecked.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import pytest

from core.catalogue import CATALOGUE, CatalogueEntry
from hub.envelope import Envelope
from hub.schema import asyncapi, entry_schema, json_schemas

JSON_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}
KEYWORDS = {
    "$id", "$ref", "$defs", "title", "description", "default", "examples", "type", "enum", "const",
    "properties", "required", "additionalProperties", "items", "anyOf", "allOf", "oneOf", "format", "pattern",
    "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems",
    "uniqueItems",
}
COUNTS = {"minLength", "maxLength", "minItems", "maxItems"}
BOUNDS = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}

PERSONAL = {
    ("notification.requested", 1): {"phone"},
    ("sms.replied", 1): {"phone", "content"},
    ("invoice.requested", 1): {"user_name"},
    ("invoice.issued", 1): {"user_name"},
    ("payment.received", 1): {"payer_ref"},
}
"""Fields known to hold personal information (GB/T 35273)."""

PERSONAL_NAMES = {"phone", "mobile", "user_name", "id_number", "id_card", "address", "email", "payer_ref", "openid"}
"""A field with one of these names anywhere in the catalogue must be marked personal."""

T = "2025-11-20T08:30:00+08:00"
SAMPLES: dict[tuple[str, int], dict[str, Any]] = {
    ("meter.reading", 1): {"meter_id": "GM-00012345", "read_at": T, "volume_m3": "1234.567", "source": "vendor",
                           "valve": "open", "battery_low": False, "battery_v": "3.310", "signal_rsrp": -97},
    ("reading.recorded", 1): {"reading_id": "r-1", "meter_id": "GM-1", "read_at": T, "volume_m3": "1.000",
                              "quality": ["ok"]},
    ("reading.flagged", 1): {
        "reading_id": "01J00000000000000000000000", "meter_id": "GM-1", "account_id": "A-1", "read_at": T,
        "volume_m3": "1250.000", "consumption_m3": "40.000", "quality": ["suspect"], "billable": False,
        "findings": [{"rule": "spike", "severity": "error", "action": "estimate",
                      "message": "consumption 40.000 m³ over 1.00 days exceeds 5.0 × average daily use 1.200 m³"}]},
    ("alarm.raised", 1): {"alarm_id": "vendor-1-90", "kind": "leak", "meter_id": "GM-1", "detected_at": T,
                          "severity": 5, "detail": "leak", "cim_code": "3.12.93.219"},
    ("alarm.cleared", 1): {"alarm_id": "vendor-1-90", "cleared_at": T, "by": "operator-7"},
    ("valve.command", 1): {"command_id": "cmd-1", "meter_id": "GM-1", "action": "close", "reason": "leak alarm",
                           "requested_by": "core"},
    ("valve.state", 1): {"meter_id": "GM-1", "state": "closed", "observed_at": T, "command_id": "cmd-1"},
    ("payment.received", 1): {"channel": "wechat", "transaction_id": "4200000001202511201234567890",
                              "out_trade_no": "GAS-1", "account_id": "A-1001", "amount": "123.40", "paid_at": T,
                              "payer_ref": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
    ("payment.refunded", 1): {"channel": "alipay", "transaction_id": "t-1", "refund_id": "rf-1", "amount": "10.00",
                              "refunded_at": T},
    ("invoice.requested", 1): {
        "request_serial": "REQ-1", "account_id": "A-1001", "user_name": "张三",
        "lines": [{"name": "管道天然气", "tax_code": "1100301010000000000", "quantity": "10.000",
                   "unit_price": "3.450000", "amount": "34.50", "tax_rate": "0.0900", "tax": "2.85"}],
        "total": "34.50", "total_tax": "2.85"},
    ("invoice.issued", 1): {"request_serial": "REQ-1", "account_id": "A-1001", "user_name": "张三",
                            "invoice_type": "digital_ordinary", "invoice_number": "24442000000012345678",
                            "issued_at": T, "total": "34.50", "total_tax": "2.85"},
    ("invoice.failed", 1): {"request_serial": "REQ-1", "reason": "buyer tax id invalid"},
    ("notification.requested", 1): {"notification_id": "n-1", "kind": "alarm", "phone": "13812345678",
                                    "params": {"meter": "GM-1"}, "safety": True},
    ("notification.delivered", 1): {"notification_id": "n-1", "status": "delivered", "at": T},
    ("sms.replied", 1): {"reply_id": "aliyun-1", "phone": "13812345678", "content": "5", "received_at": T},
    ("bill.issued", 1): {"bill_id": "01J0000000000000000000000B", "account_id": "A-1", "meter_id": "GM-1",
                         "period_start": "2026-02-01", "period_end": "2026-03-01", "category": "residential",
                         "volume_m3": "50.000", "total": "168.00", "net_total": "154.13", "tax_total": "13.87",
                         "issued_at": T},
    ("work_order.requested", 1): {"work_order_id": "wo-inspection-01J00000000000000000000001", "kind": "inspection",
                                  "rule": "tamper", "severity": "warning", "meter_id": "GM-1", "account_id": "A-1",
                                  "detected_at": T, "reason": "meter GM-1 reported a tamper event: inspection needed",
                                  "reading_id": "01J00000000000000000000001"},
}


def resolve(root: Any, ref: str) -> Any:
    assert ref.startswith("#/"), f"not a local reference: {ref}"
    node = root
    for raw in ref[2:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def meta_check(node: Any, root: Mapping[str, Any], path: str = "#") -> Iterator[str]:
    """Problems with ``node`` as a JSON Schema (2020-12 keywords that pydantic emits)."""
    if isinstance(node, bool):
        return
    if not isinstance(node, dict):
        yield f"{path}: a schema must be an object or a boolean, not {type(node).__name__}"
        return
    for key, value in node.items():
        at = f"{path}/{key}"
        if key.startswith("x-"):
            continue
        if key not in KEYWORDS:
            yield f"{at}: unknown keyword"
        elif key == "type":
            types = value if isinstance(value, list) else [value]
            if not types or any(t not in JSON_TYPES for t in types):
                yield f"{at}: {value!r} is not a JSON type"
        elif key in ("properties", "$defs"):
            if not isinstance(value, dict):
                yield f"{at}: must be an object"
                continue
            for name, sub in value.items():
                yield from meta_check(sub, root, f"{at}/{name}")
        elif key == "required":
            names_ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            if not (names_ok and len(set(value)) == len(value)):
                yield f"{at}: must be a list of distinct names"
            elif missing := set(value) - set(node.get("properties", {})):
                yield f"{at}: required {sorted(missing)} not in properties"
        elif key in ("items", "additionalProperties"):
            yield from meta_check(value, root, at)
        elif key in ("anyOf", "allOf", "oneOf"):
            if not (isinstance(value, list) and value):
                yield f"{at}: must be a non-empty list"
                continue
            for i, sub in enumerate(value):
                yield from meta_check(sub, root, f"{at}/{i}")
        elif key == "$ref":
            try:
                target = resolve(root, value)
            except (KeyError, IndexError, AssertionError):
                yield f"{at}: {value} does not resolve"
            else:
                if not isinstance(target, dict | bool):
                    yield f"{at}: {value} does not point at a schema"
        elif key == "enum":
            if not (isinstance(value, list) and value and len({repr(v) for v in value}) == len(value)):
                yield f"{at}: must be a non-empty list of distinct values"
        elif key == "pattern":
            try:
                re.compile(value)
            except (re.error, TypeError) as exc:
                yield f"{at}: does not compile: {exc}"
        elif key in COUNTS:
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
                yield f"{at}: must be a non-negative integer"
        elif key in BOUNDS:
            if not (isinstance(value, int | float) and not isinstance(value, bool)):
                yield f"{at}: must be a number"
        elif key in ("title", "description", "format", "$id") and not isinstance(value, str):
            yield f"{at}: must be a string"
    low, high = node.get("minLength"), node.get("maxLength")
    if isinstance(low, int) and isinstance(high, int) and low > high:
        yield f"{path}: minLength > maxLength"


def is_type(value: Any, type_: str) -> bool:
    return {
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "string": isinstance(value, str),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "null": value is None,
    }[type_]


def validate(value: Any, schema: Any, root: Mapping[str, Any], path: str = "$") -> list[str]:
    """A small JSON Schema validator for the keywords ``meta_check`` allows."""
    if schema is True:
        return []
    if schema is False:
        return [f"{path}: nothing is allowed here"]
    errors: list[str] = []
    if "$ref" in schema:
        errors += validate(value, resolve(root, schema["$ref"]), root, path)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(is_type(value, t) for t in types):
            return [*errors, f"{path}: {value!r} is not {schema['type']}"]
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: must be {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in {schema['enum']}")
    if "anyOf" in schema and all(validate(value, s, root, path) for s in schema["anyOf"]):
        errors.append(f"{path}: matches none of anyOf")
    if "oneOf" in schema and sum(not validate(value, s, root, path) for s in schema["oneOf"]) != 1:
        errors.append(f"{path}: does not match exactly one of oneOf")
    for sub in schema.get("allOf", []):
        errors += validate(value, sub, root, path)
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", len(value)):
            errors.append(f"{path}: length {len(value)} out of bounds")
        if schema.get("format") == "date-time":
            try:
                datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                errors.append(f"{path}: {value!r} is not a date-time")
    if is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: below minimum")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: above maximum")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            errors.append(f"{path}: not above exclusiveMinimum")
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            errors.append(f"{path}: not below exclusiveMaximum")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            errors.append(f"{path}: item count out of bounds")
        if "items" in schema:
            for i, item in enumerate(value):
                errors += validate(item, schema["items"], root, f"{path}[{i}]")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{path}: {name!r} is required")
        for name, item in value.items():
            if name in properties:
                errors += validate(item, properties[name], root, f"{path}.{name}")
            elif "additionalProperties" in schema:
                errors += validate(item, schema["additionalProperties"], root, f"{path}.{name}")
    return errors


def entries() -> list[CatalogueEntry]:
    return sorted(CATALOGUE.values(), key=lambda e: (e.type, e.version))


def ids(entry: CatalogueEntry) -> str:
    return f"{entry.type}.v{entry.version}"


# --- JSON Schema --------------------------------------------------------------------------------


def test_there_is_a_sample_for_every_catalogue_entry() -> None:
    assert set(SAMPLES) == set(CATALOGUE)


def test_json_schemas_has_one_file_per_entry_and_the_envelope() -> None:
    files = json_schemas(CATALOGUE)
    assert set(files) == {f"{t}.v{v}.json" for t, v in CATALOGUE} | {"envelope.json"}
    assert files["envelope.json"]["$id"] == "urn:gashub:envelope:v1"
    assert len({doc["$id"] for doc in files.values()}) == len(files), "two files share an $id"


@pytest.mark.parametrize("entry", entries(), ids=ids)
def test_entry_schema_is_a_well_formed_json_schema(entry: CatalogueEntry) -> None:
    schema = entry_schema(entry)
    assert list(meta_check(schema, schema)) == []
    assert schema["type"] == "object"
    assert isinstance(schema["properties"], dict)
    assert schema["properties"]
    assert schema["additionalProperties"] is False, "canonical models forbid unknown fields"
    assert set(schema["properties"]) == set(entry.model.model_fields)
    assert schema["$id"] == f"urn:gashub:message:{entry.type}:v{entry.version}"
    assert schema["title"] == f"{entry.type} v{entry.version}"
    assert schema["description"] == entry.summary
    assert schema["x-lane"] == str(entry.lane)


def test_envelope_schema_is_a_well_formed_json_schema() -> None:
    schema = json_schemas(CATALOGUE)["envelope.json"]
    assert list(meta_check(schema, schema)) == []
    assert {"type", "source", "data"} <= set(schema["required"])


def test_meta_check_catches_broken_schemas() -> None:
    good = entry_schema(CATALOGUE[("meter.reading", 1)])
    broken = copy.deepcopy(good)
    broken["properties"]["meter_id"]["type"] = "text"
    broken["properties"]["read_at"]["pattern"] = "(["
    broken["properties"]["source"]["$ref"] = "#/$defs/Nope"
    broken["required"].append("ghost")
    broken["propertees"] = {}
    problems = list(meta_check(broken, broken))
    assert len(problems) == 5, problems


@pytest.mark.parametrize("entry", entries(), ids=ids)
def test_a_valid_message_validates_against_its_schema(entry: CatalogueEntry) -> None:
    data = entry.model.model_validate(SAMPLES[(entry.type, entry.version)]).model_dump(mode="json")
    schema = entry_schema(entry)
    assert validate(data, schema, schema) == []
    envelope = Envelope(type=entry.type, version=entry.version, source="test", data=data).model_dump(mode="json")
    envelope_schema = json_schemas(CATALOGUE)["envelope.json"]
    assert validate(envelope, envelope_schema, envelope_schema) == []


@pytest.mark.parametrize("entry", entries(), ids=ids)
def test_the_schema_rejects_what_the_model_rejects(entry: CatalogueEntry) -> None:
    schema = entry_schema(entry)
    sample = SAMPLES[(entry.type, entry.version)]
    for name in schema["required"]:
        without = {k: v for k, v in sample.items() if k != name}
        assert validate(without, schema, schema), f"the schema accepts {entry.type} without {name!r}"
    assert validate({**sample, "surprise": 1}, schema, schema), "the schema accepts an unknown field"


def test_schema_patterns_and_enums_match_the_models() -> None:
    schema = entry_schema(CATALOGUE[("notification.requested", 1)])
    sample = SAMPLES[("notification.requested", 1)]
    assert validate({**sample, "phone": "12345678901"}, schema, schema)
    assert validate({**sample, "kind": "spam"}, schema, schema)
    schema = entry_schema(CATALOGUE[("invoice.issued", 1)])
    sample = SAMPLES[("invoice.issued", 1)]
    assert validate({**sample, "invoice_number": "1234"}, schema, schema)
    schema = entry_schema(CATALOGUE[("alarm.raised", 1)])
    assert validate({**SAMPLES[("alarm.raised", 1)], "severity": 9}, schema, schema)


# --- personal data ------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", entries(), ids=ids)
def test_personal_fields_carry_x_personal(entry: CatalogueEntry) -> None:
    schema = entry_schema(entry)
    marked = {name for name, prop in schema["properties"].items() if prop.get("x-personal") is True}
    assert marked == set(entry.personal_fields)
    assert marked == PERSONAL.get((entry.type, entry.version), set())


def test_every_field_named_like_personal_data_is_marked() -> None:
    unmarked = []
    for entry in entries():
        schema = entry_schema(entry)
        objects = [schema, *schema.get("$defs", {}).values()]
        for obj in objects:
            for name, prop in obj.get("properties", {}).items():
                if name in PERSONAL_NAMES and prop.get("x-personal") is not True:
                    unmarked.append(f"{entry.type}.{name}")
    assert unmarked == []


# --- AsyncAPI -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return asyncapi(CATALOGUE)


def all_refs(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield path, value
            else:
                yield from all_refs(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from all_refs(value, f"{path}/{i}")


def scoped_refs(node: Any, scope: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """Every ``$ref`` with the schema resource it is relative to: the nearest enclosing ``$id``, else ``scope``."""
    if isinstance(node, dict):
        if "$id" in node:
            scope = node
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield path, value, scope
            else:
                yield from scoped_refs(value, scope, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from scoped_refs(value, scope, f"{path}/{i}")


def test_asyncapi_basics(doc: dict[str, Any]) -> None:
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"]
    assert doc["info"]["version"]
    assert doc["defaultContentType"] == "application/json"
    assert set(doc["channels"]) == {t.replace(".", "_") for t in CATALOGUE.types()}
    assert len(doc["operations"]) == 2 * len(doc["channels"])
    assert len(doc["components"]["messages"]) == len(CATALOGUE)


def test_asyncapi_channel_addresses_are_the_routing_keys(doc: dict[str, Any]) -> None:
    for key, channel in doc["channels"].items():
        assert channel["address"] in CATALOGUE.types()
        assert key == channel["address"].replace(".", "_")
        assert channel["bindings"]["amqp"]["exchange"]["name"] == "gashub"
        assert channel["bindings"]["amqp"]["exchange"]["type"] == "topic"


def test_asyncapi_exchange_name_is_configurable() -> None:
    other = asyncapi(CATALOGUE, exchange="plant-7")
    assert {ch["bindings"]["amqp"]["exchange"]["name"] for ch in other["channels"].values()} == {"plant-7"}


def test_asyncapi_messages_embed_the_entry_schema(doc: dict[str, Any]) -> None:
    for entry in entries():
        message = doc["components"]["messages"][f"{entry.type.replace('.', '_')}_v{entry.version}"]
        assert message["name"] == entry.type
        assert message["x-lane"] == str(entry.lane)
        payload = message["payload"]
        assert payload["properties"]["type"] == {"const": entry.type}
        assert payload["properties"]["version"] == {"const": entry.version}
        data, alone = payload["properties"]["data"], entry_schema(entry)
        # The same model; its definitions live in components.schemas, shared by every message.
        assert set(data["properties"]) == set(alone["properties"])
        assert data.get("required") == alone.get("required")
        assert (data["title"], data["description"], data["x-lane"]) == (
            alone["title"], alone["description"], alone["x-lane"])
        assert "$defs" not in data
        assert list(meta_check(data, doc)) == []


def test_asyncapi_channel_and_operation_refs_resolve(doc: dict[str, Any]) -> None:
    structural = [(where, ref) for where, ref in all_refs(doc)
                  if ref.startswith(("#/channels/", "#/components/messages/"))]
    assert len(structural) == 2 * len(doc["channels"]) + len(CATALOGUE)
    for where, ref in structural:
        target = resolve(doc, ref)
        if where.startswith("/operations/"):
            assert ref.startswith("#/channels/")
            assert "address" in target
        else:
            assert ref.startswith("#/components/messages/")
            assert "payload" in target


def test_every_asyncapi_ref_resolves_from_the_document_root(doc: dict[str, Any]) -> None:
    dangling = []
    for where, ref in all_refs(doc):
        try:
            resolve(doc, ref)
        except (KeyError, IndexError):
            dangling.append(f"{where}: {ref}")
    assert dangling == []
