"""The catalogue as JSON Schema and as an AsyncAPI 3.0 document of the exchange's channels."""

from __future__ import annotations

from typing import Any

from core.catalogue import Catalogue, CatalogueEntry
from hub import __version__
from hub.envelope import Envelope


def entry_schema(entry: CatalogueEntry) -> dict[str, Any]:
    schema = entry.model.model_json_schema(mode="validation")
    schema["$id"] = f"urn:gashub:message:{entry.type}:v{entry.version}"
    schema["title"] = f"{entry.type} v{entry.version}"
    schema["description"] = entry.summary
    schema["x-lane"] = str(entry.lane)
    return schema


def json_schemas(catalogue: Catalogue) -> dict[str, dict[str, Any]]:
    """File name → schema: one per catalogue entry plus the envelope."""
    out = {f"{e.type}.v{e.version}.json": entry_schema(e) for e in catalogue.values()}
    envelope = Envelope.model_json_schema()
    envelope["$id"] = "urn:gashub:envelope:v1"
    out["envelope.json"] = envelope
    return out


COMPONENT_REF = "#/components/schemas/{model}"


def _component_schema(model: Any, schemas: dict[str, Any]) -> dict[str, Any]:
    """The model's schema with its definitions lifted into ``components.schemas``."""
    schema = dict(model.model_json_schema(ref_template=COMPONENT_REF))
    schemas.update(schema.pop("$defs", {}))
    return schema


def asyncapi(catalogue: Catalogue, *, exchange: str = "gashub") -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    envelope = _component_schema(Envelope, schemas)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for entry in sorted(catalogue.values(), key=lambda e: (e.type, e.version)):
        key = f"{entry.type.replace('.', '_')}_v{entry.version}"
        payload = dict(envelope)
        payload["properties"] = dict(envelope["properties"])
        payload["properties"]["type"] = {"const": entry.type}
        payload["properties"]["version"] = {"const": entry.version}
        data = _component_schema(entry.model, schemas)
        data.update(title=f"{entry.type} v{entry.version}", description=entry.summary)
        data["x-lane"] = str(entry.lane)
        payload["properties"]["data"] = data
        messages[key] = {
            "name": entry.type,
            "title": f"{entry.type} v{entry.version}",
            "summary": entry.summary,
            "contentType": "application/json",
            "payload": payload,
            "correlationId": {"location": "$message.payload#/correlation_id"},
            "bindings": {"amqp": {"messageType": entry.type, "bindingVersion": "0.3.0"}},
            "x-lane": str(entry.lane),
        }
        channel = entry.type.replace(".", "_")
        ch = channels.setdefault(channel, {
            "address": entry.type,
            "messages": {},
            "bindings": {"amqp": {"is": "routingKey", "exchange": {
                "name": exchange, "type": "topic", "durable": True, "autoDelete": False, "vhost": "/"},
                "bindingVersion": "0.3.0"}},
        })
        ch["messages"][key] = {"$ref": f"#/components/messages/{key}"}
        operations[f"publish_{channel}"] = {
            "action": "send", "channel": {"$ref": f"#/channels/{channel}"},
            "summary": f"Publish {entry.type} (persistent, publisher confirms, mandatory).",
            "bindings": {"amqp": {"deliveryMode": 2, "mandatory": True, "bindingVersion": "0.3.0"}},
        }
        operations[f"consume_{channel}"] = {
            "action": "receive", "channel": {"$ref": f"#/channels/{channel}"},
            "summary": f"Consume {entry.type} through a route queue (manual acks).",
            "bindings": {"amqp": {"ack": True, "bindingVersion": "0.3.0"}},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "gashub canonical messages",
            "version": __version__,
            "description": "Every message type carried on the gashub topic exchange; the routing key is the type.",
        },
        "defaultContentType": "application/json",
        "servers": {"rabbitmq": {"host": "localhost:5672", "protocol": "amqp", "protocolVersion": "0.9.1"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
