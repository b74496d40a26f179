"""A compiled mapping: its fields resolved to getters and bound converters, ready to ``apply``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any, Final, Literal

from core.catalogue import CATALOGUE
from hub.errors import ConfigError, UnmappableMessage
from hub.mapping.converters import CONVERTERS, Converter, text
from hub.mapping.sources import Getter, json_getter, read_json, read_xml, template_getter, xpath_getter
from hub.mapping.spec import FieldSpec, MappingSpec

_ABSENT: Final = object()
_NO_SOURCE: Final = "the source is absent (and the field has no default and is not optional)"
_RUNTIME_ERRORS: Final = (ValueError, TypeError, ArithmeticError, LookupError)


@dataclass(frozen=True, slots=True)
class _Field:
    """One output field, compiled."""

    name: str
    target: tuple[str, ...]
    origin: str
    get: Getter | None
    const: Any
    converters: tuple[Converter, ...]
    table: MappingABC[str, Any] | None
    default: Any
    optional: bool

    def produce(self, document: Any) -> Any:
        """The field's value, or ``_ABSENT`` for an optional field whose source is absent."""
        if self.get is None:
            return list(self.const) if isinstance(self.const, list) else self.const
        value = self.get(document)
        if value is None or value == "":
            if self.default is not None:
                return self.default
            if self.optional:
                return _ABSENT
            raise ValueError(_NO_SOURCE)
        for convert in self.converters:
            value = convert(value)
        if self.table is not None:
            key = value if isinstance(value, str) else text(value)
            if key in self.table:
                return self.table[key]
            if self.default is not None:
                return self.default
            raise ValueError(f"{key!r} is not in the lookup table")
        return value


def _producer(field: _Field) -> Callable[[Any], Any]:
    """``field.produce`` specialised for the field's shape (the common one: a getter and one
    converter, no lookup table): the same results, without the general path's steps."""
    get, converters = field.get, field.converters
    if get is None or field.table is not None or len(converters) != 1 or field.default is not None:
        return field.produce
    (convert,) = converters
    optional = field.optional

    def produce(document: Any) -> Any:
        value = get(document)
        if value is None or value == "":
            if optional:
                return _ABSENT
            raise ValueError(_NO_SOURCE)
        return convert(value)

    return produce


class Mapping:
    """A versioned, declarative field mapping from a partner format or message type to another.

    ``apply`` builds the target ``data`` dict from a source document: a dict (or JSON bytes/text) for
    ``source_format == "json"``, XML bytes/text for ``"xml"``. Any failure raises
    ``UnmappableMessage`` naming the mapping, its version and the field.
    """

    __slots__ = (
        "_fields",
        "_label",
        "_plan",
        "description",
        "file",
        "name",
        "source",
        "source_format",
        "target",
        "version",
    )

    def __init__(self, spec: MappingSpec, file: Path, fields: tuple[_Field, ...]) -> None:
        self.name: str = spec.name
        self.version: int = spec.version
        self.source: str = spec.source
        self.target: str = spec.target
        self.source_format: Literal["json", "xml"] = spec.format
        self.description: str = spec.description
        self.file: Path = file
        self._fields = fields
        self._label = f"mapping {spec.name} v{spec.version}"
        self._plan = tuple((f, _producer(f), f.target[-1] if len(f.target) == 1 else None) for f in fields)
        """Each field with its producer and, for a top-level target, its key."""

    @property
    def ref(self) -> str:
        """``name@version``: what the audit trail records as the mapping that produced a message."""
        return f"{self.name}@{self.version}"

    @property
    def fields(self) -> tuple[str, ...]:
        """The dotted target paths this mapping writes."""
        return tuple(field.name for field in self._fields)

    def apply(self, data: MappingABC[str, Any] | bytes | str) -> dict[str, Any]:
        """Map one source document to the target's fields (nested dicts for dotted target paths)."""
        if self.source_format == "xml":
            document: Any = read_xml(data, self._label)
        else:
            document = read_json(data, self._label)
        out: dict[str, Any] = {}
        for field, produce, key in self._plan:
            try:
                value = produce(document)
            except UnmappableMessage:
                raise
            except _RUNTIME_ERRORS as exc:
                raise UnmappableMessage(f"{self._label}, field {field.name} ({field.origin}): {exc}") from exc
            if value is _ABSENT:
                continue
            if key is not None:
                out[key] = value
                continue
            node = out
            for key in field.target[:-1]:
                node = node.setdefault(key, {})
            node[field.target[-1]] = value
        return out

    def __repr__(self) -> str:
        return f"<Mapping {self.ref} {self.source} -> {self.target} ({self.file.name})>"


def compile_mapping(spec: MappingSpec, file: Path, where: str) -> tuple[Mapping | None, list[ConfigError]]:
    """Compile a validated spec; every problem is a ConfigError at ``<where>: fields.<name>...``."""
    errors: list[ConfigError] = []
    fields: list[_Field] = []
    known_targets = _catalogue_fields(spec.target)
    for name, field_spec in spec.fields.items():
        at = f"{where}: fields.{name}"
        if known_targets is not None and name.split(".")[0] not in known_targets:
            shown = ", ".join(sorted(known_targets))
            errors.append(
                ConfigError(f"{spec.target} has no field {name.split('.')[0]!r} ({shown})", where=at)
            )
        clash = next((other for other in spec.fields if other.startswith(name + ".")), None)
        if clash is not None:
            errors.append(ConfigError(f"{name!r} is both a value and the parent of {clash!r}", where=at))
        try:
            fields.append(_compile_field(name, field_spec, spec, at))
        except ConfigError as exc:
            errors.append(exc)
    if errors:
        return None, errors
    return Mapping(spec, file, tuple(fields)), []


def _compile_field(name: str, spec: FieldSpec, mapping: MappingSpec, at: str) -> _Field:
    make_getter = _getter_factory(mapping)
    get: Getter | None = None
    if spec.from_ is not None:
        get = _checked(lambda: make_getter(spec.from_ or ""), f"{at}.from")
        origin = f"from {spec.from_!r}"
    elif spec.template is not None:
        get = _checked(lambda: template_getter(spec.template or "", make_getter), f"{at}.template")
        origin = f"template {spec.template!r}"
    else:
        origin = "const"
    table = None
    if spec.lookup is not None:
        table = mapping.lookups.get(spec.lookup)
        if table is None:
            known = ", ".join(sorted(mapping.lookups)) or "none"
            raise ConfigError(
                f"no [lookups.{spec.lookup}] table in this file (tables: {known})", where=f"{at}.lookup"
            )
    converters = _bind_converters(spec, f"{at}.convert")
    if spec.converters():
        origin += ", " + " then ".join(spec.converters())
    return _Field(
        name=name,
        target=tuple(name.split(".")),
        origin=origin,
        get=get,
        const=spec.const,
        converters=converters,
        table=table,
        default=spec.default,
        optional=spec.optional,
    )


def _getter_factory(mapping: MappingSpec) -> Callable[[str], Getter]:
    if mapping.format == "xml":
        return lambda path: xpath_getter(path, mapping.namespaces)
    return json_getter


def _checked(build: Callable[[], Getter], where: str) -> Getter:
    try:
        return build()
    except ValueError as exc:  # bad path, XPathSyntaxError, bad template
        raise ConfigError(str(exc) or "invalid expression", where=where) from None


def _bind_converters(spec: FieldSpec, where: str) -> tuple[Converter, ...]:
    options = spec.options()
    used: set[str] = set()
    bound: list[Converter] = []
    for name in spec.converters():
        function = CONVERTERS.get(name)
        if function is None:
            known = ", ".join(sorted(CONVERTERS))
            raise ConfigError(f"unknown converter {name!r} (known: {known})", where=where)
        accepted, required = _keyword_options(name)
        missing = required - options.keys()
        if missing:
            raise ConfigError(f"converter {name!r} needs option {', '.join(sorted(missing))}", where=where)
        kwargs = {key: value for key, value in options.items() if key in accepted}
        used.update(kwargs)
        bound.append(partial(function, **kwargs) if kwargs else function)
    unused = options.keys() - used - {"default"}
    if unused:
        takers = ", ".join(spec.converters()) or "no converter"
        raise ConfigError(f"option {', '.join(sorted(unused))} is taken by none of: {takers}", where=where)
    return tuple(bound)


@cache
def _keyword_options(name: str) -> tuple[frozenset[str], frozenset[str]]:
    parameters = inspect.signature(CONVERTERS[name]).parameters.values()
    keyword = [p for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]
    return frozenset(p.name for p in keyword), frozenset(p.name for p in keyword if p.default is p.empty)


def _catalogue_fields(target: str) -> frozenset[str] | None:
    if target not in CATALOGUE.types():
        return None
    model: Any = CATALOGUE.latest(target).model  # Any: core's CatalogueEntry.type shadows ``type`` for mypy
    return frozenset(model.model_fields)
