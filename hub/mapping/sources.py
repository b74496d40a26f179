"""Reading values out of a partner document: JSON paths, XPath over safely parsed XML, templates.

A getter takes the parsed document and returns the value or ``None`` when it is absent; it never
raises for a missing key, a wrong index or a value of the wrong shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson
from lxml import etree

from hub.errors import UnmappableMessage

Getter = Callable[[Any], Any]

_SEGMENT: Final = re.compile(r"([^.\[\]]+)|\[(-?\d+)\]")
_PLACEHOLDER: Final = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_DOCTYPE_REFUSED: Final = "{label}: XML with a DOCTYPE is refused (no DTDs, no entity expansion)"
_XML_DECLARATION: Final = re.compile(r"^\s*<\?xml[^>]*\?>")

_PARSER: Final = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    huge_tree=False,
    load_dtd=False,
    dtd_validation=False,
    remove_comments=True,
    remove_pis=True,
)


def parse_path(path: str) -> tuple[str | int, ...]:
    """``"items[0].name"`` → ``("items", 0, "name")``; ``ValueError`` when it is not a path."""
    keys: list[str | int] = []
    position = 0
    for part in path.split("."):
        if not part:
            raise ValueError(f"empty segment in path {path!r}")
        at = 0
        while at < len(part):
            match = _SEGMENT.match(part, at)
            if match is None or (match.group(1) is not None and at > 0):
                raise ValueError(f"bad path {path!r} near column {position + at + 1}")
            keys.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
            at = match.end()
        position += len(part) + 1
    return tuple(keys)


def json_getter(path: str) -> Getter:
    """A getter for a dotted path with ``[n]`` indexes into dicts and lists."""
    keys = parse_path(path)
    if 1 <= len(keys) <= 2 and all(isinstance(key, str) for key in keys):
        return _keys_getter(keys)  # type: ignore[arg-type]  # all str, checked
    return _general_getter(keys)


def _general_getter(keys: tuple[str | int, ...]) -> Getter:
    def get(document: Any) -> Any:
        value = document
        for key in keys:
            if type(value) is dict or isinstance(value, Mapping):
                value = value.get(key) if isinstance(key, str) else None
            elif isinstance(key, int) and isinstance(value, list):
                value = value[key] if -len(value) <= key < len(value) else None
            else:
                return None
        return value

    return get


def _keys_getter(keys: tuple[str, ...]) -> Getter:
    """``json_getter`` for one or two plain keys (most partner fields): the same answers, fewer steps."""
    general = _general_getter(keys)
    if len(keys) == 1:
        (only,) = keys

        def get_one(document: Any) -> Any:
            return document.get(only) if type(document) is dict else general(document)

        return get_one
    first, second = keys

    def get_two(document: Any) -> Any:
        if type(document) is dict:
            inner = document.get(first)
            if type(inner) is dict:
                return inner.get(second)
        return general(document)

    return get_two


def xpath_getter(expression: str, namespaces: Mapping[str, str]) -> Getter:
    """A getter for an XPath 1.0 expression evaluated at the root element.

    Elements give their text (whitespace stripped), an empty node-set gives ``None``, the first of
    several matches wins; numbers and booleans from XPath functions are returned as they are.
    ``ValueError`` when the expression does not compile.
    """
    try:
        compiled = etree.XPath(expression, namespaces=dict(namespaces))
    except etree.XPathSyntaxError as exc:
        raise ValueError(f"XPath {expression!r} does not compile: {exc}") from None

    def get(document: Any) -> Any:
        try:
            result: Any = compiled(document)
        except etree.XPathError:
            return None
        if isinstance(result, list):
            if not result:
                return None
            result = result[0]
        if isinstance(result, etree._Element):
            return "".join(str(text) for text in result.itertext()).strip()
        if isinstance(result, str):
            return str(result).strip()
        if isinstance(result, bool | float):
            return result
        return None

    return get


def template_getter(template: str, make_getter: Callable[[str], Getter]) -> Getter:
    """A getter filling ``{path}`` placeholders (``{{``/``}}`` for braces); ``None`` if any is absent."""
    parts: list[str | Getter] = []
    at = 0
    for match in _PLACEHOLDER.finditer(template):
        parts.append(template[at : match.start()])
        token = match.group(0)
        if token in ("{{", "}}"):
            parts.append(token[0])
        elif not match.group(1).strip():
            raise ValueError(f"empty placeholder in template {template!r}")
        else:
            parts.append(make_getter(match.group(1).strip()))
        at = match.end()
    rest = template[at:]
    if "{" in rest or "}" in rest:
        raise ValueError(f"unbalanced brace in template {template!r} (write {{{{ or }}}} for a brace)")
    parts.append(rest)

    def get(document: Any) -> Any:
        pieces = []
        for part in parts:
            if isinstance(part, str):
                pieces.append(part)
                continue
            value = part(document)
            if value is None:
                return None
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                return None
            pieces.append(str(value))
        return "".join(pieces)

    return get


def read_json(data: Mapping[str, Any] | bytes | str, label: str) -> Mapping[str, Any]:
    """The JSON object to map: a mapping as it is, or bytes/text parsed (and required to be an object)."""
    if type(data) is dict or isinstance(data, Mapping):
        return data
    if not isinstance(data, bytes | bytearray | memoryview | str):
        raise UnmappableMessage(f"{label}: expected a JSON object, got {type(data).__name__}")
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UnmappableMessage(f"{label}: input is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise UnmappableMessage(f"{label}: input is JSON {type(parsed).__name__}, expected an object")
    return parsed


def read_xml(data: Any, label: str) -> etree._Element:
    """Parse XML without DTDs, entities or network access; refuse any document with a DOCTYPE."""
    if isinstance(data, memoryview | bytearray):
        data = bytes(data)
    if isinstance(data, str):
        data = _XML_DECLARATION.sub("", data, count=1).encode("utf-8")
    if not isinstance(data, bytes):
        raise UnmappableMessage(f"{label}: expected XML as bytes or text, got {type(data).__name__}")
    if b"<!DOCTYPE" in data:  # before libxml2 sees it; UTF-16 input is caught after parsing below
        raise UnmappableMessage(_DOCTYPE_REFUSED.format(label=label))
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise UnmappableMessage(f"{label}: input is not well-formed XML: {exc}") from None
    if root is None:
        raise UnmappableMessage(f"{label}: input holds no XML element")
    docinfo = root.getroottree().docinfo
    doctype: str = getattr(docinfo, "doctype", "")  # not in lxml-stubs
    if doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None or docinfo.public_id:
        raise UnmappableMessage(_DOCTYPE_REFUSED.format(label=label))
    for _ in root.iter(etree.Entity):
        raise UnmappableMessage(f"{label}: XML with entity references is refused")
    return root
