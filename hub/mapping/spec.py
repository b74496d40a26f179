"""The shape of a mapping file, validated with pydantic before anything is compiled.

Unknown keys are errors everywhere, so a typo (``defualt = 0``) fails at start-up, not at 3 a.m.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Scalar = str | int | float | bool
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=100)]
FormatId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9][a-z0-9_-]*)+$", max_length=100)]
TargetPath = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")]

CONVERTER_OPTIONS = ("tz", "values", "default", "little_endian", "width", "scale")
"""Field keys handed to converters that declare a keyword-only parameter of the same name."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FieldSpec(_Strict):
    """One output field: where its value comes from and how it is converted.

    Exactly one of ``from`` (a source path, or an XPath for XML), ``const`` and ``template``.
    ``default`` is used when the source is absent (and is the fallback of ``enum``); ``optional``
    leaves the field out instead. Without either, an absent source makes the message unmappable.
    """

    from_: str | None = Field(default=None, alias="from", min_length=1)
    const: Scalar | list[Scalar] | None = None
    template: str | None = Field(default=None, min_length=1)
    convert: str | list[str] | None = None
    lookup: str | None = None
    default: Scalar | None = None
    optional: bool = False
    tz: str | None = None
    values: dict[str, Scalar] | None = None
    little_endian: bool | None = None
    width: int | None = Field(default=None, ge=1, le=32)
    scale: int | None = Field(default=None, ge=-12, le=12)

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r} (an IANA name like Asia/Shanghai)") from None
        return value

    @model_validator(mode="after")
    def _one_source(self) -> FieldSpec:
        given = [key for key in ("from", "const", "template") if self.source_value(key) is not None]
        if len(given) != 1:
            shown = " and ".join(given) if given else "none"
            raise ValueError(f"give exactly one of 'from', 'const' or 'template' (got {shown})")
        modifiers = self.convert or self.lookup or self.default is not None or self.optional
        if self.const is not None and modifiers:
            raise ValueError("a 'const' field takes no 'convert', 'lookup', 'default' or 'optional'")
        if self.optional and self.default is not None:
            raise ValueError(
                "'optional' and 'default' exclude each other: an absent source is left out or defaulted"
            )
        return self

    def source_value(self, key: str) -> object:
        return {"from": self.from_, "const": self.const, "template": self.template}[key]

    def converters(self) -> list[str]:
        if self.convert is None:
            return []
        return [self.convert] if isinstance(self.convert, str) else list(self.convert)

    def options(self) -> dict[str, object]:
        """The converter options this field sets."""
        return {key: getattr(self, key) for key in CONVERTER_OPTIONS if getattr(self, key) is not None}


class MappingSpec(_Strict):
    """A whole mapping file."""

    name: Name
    version: int = Field(ge=1, le=10_000)
    description: str = ""
    source: FormatId
    target: FormatId
    format: Literal["json", "xml"] = "json"
    namespaces: dict[str, str] = {}
    fields: dict[TargetPath, FieldSpec] = Field(min_length=1)
    lookups: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")], dict[str, Scalar]] = {}

    @field_validator("fields", mode="before")
    @classmethod
    def _flatten_groups(cls, value: Any) -> Any:
        """TOML reads ``amount.total = {...}`` as a table ``amount``; flatten it back to a dotted path."""
        return _flatten(value, "") if isinstance(value, dict) else value


def _flatten(table: dict[str, Any], prefix: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        is_group = (
            isinstance(value, dict)
            and value
            and not {"from", "const", "template"} & value.keys()
            and all(isinstance(item, dict) for item in value.values())
        )
        flat.update(_flatten(value, path + ".") if is_group else {path: value})
    return flat
