"""Loading ``mappings/*.toml`` into a :class:`MappingSet`, collecting every problem with its place."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Iterator
from collections.abc import Mapping as MappingABC
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hub.errors import ConfigError
from hub.mapping.diff import FieldChange, diff
from hub.mapping.engine import Mapping, compile_mapping
from hub.mapping.spec import MappingSpec


class UnknownMapping(KeyError):
    """No mapping has this name, or not this version. The message lists what exists."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown mapping"


class MappingSet:
    """Every loaded mapping, by name and version; iterating yields each ``Mapping`` in order."""

    def __init__(self, mappings: Iterable[Mapping] = ()) -> None:
        self._by_name: dict[str, dict[int, Mapping]] = {}
        for mapping in mappings:
            versions = self._by_name.setdefault(mapping.name, {})
            if mapping.version in versions:
                raise ValueError(f"mapping {mapping.name} v{mapping.version} is given twice")
            versions[mapping.version] = mapping

    def get(self, name: str, version: int | None = None) -> Mapping:
        """The mapping ``name`` at ``version``, or its latest version when ``version`` is None."""
        versions = self._by_name.get(name)
        if not versions:
            known = ", ".join(self.names()) or "none loaded"
            raise UnknownMapping(f"no mapping named {name!r} (mappings: {known})")
        if version is None:
            return versions[max(versions)]
        found = versions.get(version)
        if found is None:
            shown = ", ".join(f"v{number}" for number in sorted(versions))
            raise UnknownMapping(f"mapping {name!r} has no version {version} (versions: {shown})")
        return found

    def versions(self, name: str) -> list[int]:
        """The versions of ``name``, oldest first; empty when there is no such mapping."""
        return sorted(self._by_name.get(name, {}))

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def __iter__(self) -> Iterator[Mapping]:
        for name in self.names():
            for version in self.versions(name):
                yield self._by_name[name][version]

    def __len__(self) -> int:
        return sum(len(versions) for versions in self._by_name.values())

    def __contains__(self, key: object) -> bool:
        """``"name" in mappings`` or ``("name", version) in mappings``."""
        if isinstance(key, str):
            return key in self._by_name
        if isinstance(key, tuple) and len(key) == 2:
            return key[1] in self._by_name.get(key[0], {})
        return False

    @staticmethod
    def diff(before: MappingABC[str, Any], after: MappingABC[str, Any]) -> list[FieldChange]:
        """Field-by-field differences between two outputs, e.g. of two versions of one mapping."""
        return diff(before, after)


def load_mappings(directory: Path) -> MappingSet:
    """Load and compile every ``*.toml`` in ``directory``; the first problem raises ``ConfigError``."""
    mappings, errors = _load(directory)
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more problem(s): run `gashub check`)" if len(errors) > 1 else ""
        raise ConfigError(first.detail + more, where=first.where)
    return mappings


def check_mappings(directory: Path) -> list[ConfigError]:
    """Every problem in ``directory``'s mapping files, instead of stopping at the first."""
    return _load(directory)[1]


def _load(directory: Path) -> tuple[MappingSet, list[ConfigError]]:
    if not directory.is_dir():
        return MappingSet(), [ConfigError("the mappings directory does not exist", where=str(directory))]
    errors: list[ConfigError] = []
    loaded: dict[tuple[str, int], Mapping] = {}
    for file in sorted(directory.glob("*.toml")):
        where = f"{directory.name}/{file.name}"
        spec, problems = _read_spec(file, where)
        errors.extend(problems)
        if spec is None:
            continue
        mapping, problems = compile_mapping(spec, file, where)
        errors.extend(problems)
        if mapping is None:
            continue
        earlier = loaded.get((mapping.name, mapping.version))
        if earlier is not None:
            message = f"mapping {mapping.name!r} v{mapping.version} is already defined in {earlier.file.name}"
            errors.append(ConfigError(message, where=f"{where}: version"))
            continue
        loaded[(mapping.name, mapping.version)] = mapping
    return MappingSet(loaded.values()), errors


def _read_spec(file: Path, where: str) -> tuple[MappingSpec | None, list[ConfigError]]:
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        return None, [ConfigError(f"not valid TOML: {exc}", where=where)]
    except OSError as exc:
        return None, [ConfigError(f"cannot read the file: {exc.strerror}", where=where)]
    try:
        return MappingSpec.model_validate(raw), []
    except ValidationError as exc:
        return None, _from_pydantic(exc, where)


def _from_pydantic(exc: ValidationError, where: str) -> list[ConfigError]:
    """One ConfigError per place; a union's several complaints about one value become one."""
    by_place: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False):
        loc = [part for part in error["loc"] if not _is_type_tag(part)]
        if error["type"] == "extra_forbidden":
            message, loc = f"unknown key {str(loc[-1])!r}", loc[:-1]
        elif error["type"] == "missing":
            message, loc = f"required key {str(loc[-1])!r} is missing", loc[:-1]
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] not in ("value_error", "assertion_error"):
                message += f" (got {error['input']!r})"
        place = ".".join(str(part) for part in loc)
        messages = by_place.setdefault(place, [])
        if message not in messages:
            messages.append(message)
    return [
        ConfigError("; or ".join(messages), where=f"{where}: {place}" if place else where)
        for place, messages in by_place.items()
    ]


def _is_type_tag(part: object) -> bool:
    """Pydantic adds the union member (``str``, ``list[...]``) and ``[key]`` to error locations."""
    return isinstance(part, str) and (part in {"str", "int", "float", "bool"} or "[" in part)
