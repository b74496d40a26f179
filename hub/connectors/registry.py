"""Finding connector classes by kind, without importing them until they are needed.

Built-in connectors are listed by import path below; third-party packages add theirs through the
``gashub.connectors`` entry-point group (``kind = "package.module:Class"``). Nothing is scanned at
import time: ``ConnectorRegistry.load`` imports one class when a configured connector names it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from hub.connectors.contract import Connector, ConnectorContext, ConnectorSettings
from hub.errors import ConfigError

BUILTIN: Mapping[str, str] = MappingProxyType(
    {
        "alipay": "connectors.payments.alipay:AlipayConnector",
        "aliyun_sms": "connectors.aliyun_sms:AliyunSmsConnector",
        "ctwing": "connectors.nbiot:CtwingConnector",
        "dtu_cjt188": "connectors.meters:DtuConnector",
        "ecny": "connectors.payments.ecny:EcnyConnector",
        "http_sms": "connectors.http_sms:HttpSmsConnector",
        "onenet": "connectors.nbiot:OneNetConnector",
        "tax": "connectors.tax:TaxConnector",
        "tax_demo": "connectors.tax_demo:TaxDemoConnector",
        "unionpay": "connectors.payments.unionpay:UnionPayConnector",
        "valve_http": "connectors.valve_http:ValveHttpConnector",
        "vendor_push": "connectors.vendor_push:VendorPushConnector",
        "wechatpay": "connectors.payments.wechatpay:WeChatPayConnector",
    }
)

ENTRY_POINT_GROUP = "gashub.connectors"


class ConnectorRegistry:
    def __init__(self, paths: Mapping[str, str] | None = None) -> None:
        self._paths: dict[str, str] = dict(BUILTIN if paths is None else paths)

    def kinds(self) -> list[str]:
        kinds = set(self._paths)
        kinds.update(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
        return sorted(kinds)

    def load(self, kind: str) -> type[Connector[Any]]:
        path = self._paths.get(kind)
        if path is None:
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                if ep.name == kind:
                    path = ep.value
                    break
        if path is None:
            raise ConfigError(f"unknown connector kind {kind!r}; known kinds: {', '.join(self.kinds())}")
        module_name, _, attr = path.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"connector kind {kind!r} points at {path!r}, which cannot be imported: {exc}") from None
        if not (isinstance(cls, type) and issubclass(cls, Connector)):
            raise ConfigError(f"{path!r} is not a Connector subclass")
        return cls

    def settings_for(self, name: str, raw: Mapping[str, Any]) -> tuple[type[Connector[Any]], ConnectorSettings]:
        kind = raw.get("kind")
        if not isinstance(kind, str):
            raise ConfigError("missing 'kind'", where=f"connectors.{name}")
        cls = self.load(kind)
        try:
            settings = cls.settings_model.model_validate(dict(raw))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(problems, where=f"connectors.{name}") from None
        return cls, settings

    def build(self, name: str, raw: Mapping[str, Any], context: ConnectorContext) -> Connector[Any]:
        cls, settings = self.settings_for(name, raw)
        return cls(settings, context)
