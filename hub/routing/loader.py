"""Loading ``routes/*.toml`` and checking them against the catalogue, mappings and targets.

Every problem names its file, route and field, and all of them are collected before reporting, so
``gashub check`` shows the whole list at once. The hub refuses to start with any of them.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.catalogue import Catalogue, Lane
from core.messages import CoreHandler
from hub.errors import ConfigError
from hub.mapping import Mapping as FieldMapping
from hub.mapping import MappingSet, UnknownMapping
from hub.routing.expr import compile_key, compile_predicate
from hub.routing.model import QueueNames, RouteSpec
from hub.transport.topic import topic_matches


@dataclass(frozen=True)
class TargetCatalog:
    """What routes may point at: core handlers, and each configured connector's actions."""

    core: Mapping[str, CoreHandler]
    connectors: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """connector instance name → {action: the message type it takes}"""


@dataclass(frozen=True)
class Route:
    """A checked route, ready to run."""

    spec: RouteSpec
    file: Path
    queues: QueueNames
    input_type: str
    mapping: FieldMapping | None = None
    where: Callable[[Mapping[str, Any]], bool] | None = None
    dedup: Callable[[Mapping[str, Any]], str] | None = None
    core_handler: CoreHandler | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def lane(self) -> Lane:
        return self.spec.lane

    @property
    def mapping_label(self) -> str:
        return f"{self.mapping.name}@{self.mapping.version}" if self.mapping else ""


class RouteErrors(ConfigError):
    """Several configuration problems, each naming its file, route and field."""

    def __init__(self, problems: list[ConfigError]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def read_specs(directory: Path) -> tuple[list[tuple[Path, RouteSpec]], list[ConfigError]]:
    specs: list[tuple[Path, RouteSpec]] = []
    problems: list[ConfigError] = []
    if not directory.is_dir():
        return [], [ConfigError(f"routes folder {directory} does not exist", where=str(directory))]
    for path in sorted(directory.glob("*.toml")):
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            problems.append(ConfigError(f"not valid TOML: {exc}", where=str(path)))
            continue
        extra = set(doc) - {"route"}
        if extra:
            problems.append(ConfigError(f"unknown top-level keys {sorted(extra)}; routes go in [[route]] tables",
                                        where=str(path)))
        for index, raw in enumerate(doc.get("route", [])):
            label = f"{path}: route {raw.get('name', f'#{index + 1}')!s}"
            try:
                specs.append((path, RouteSpec.model_validate(raw)))
            except ValidationError as exc:
                for err in exc.errors():
                    loc = ".".join(str(p) for p in err["loc"]) or "(route)"
                    problems.append(ConfigError(err["msg"], where=f"{label}: {loc}"))
    return specs, problems


def compile_routes(
    directory: Path,
    *,
    catalogue: Catalogue,
    mappings: MappingSet,
    targets: TargetCatalog,
    queue_prefix: str,
) -> list[Route]:
    """Read and check every route; raise ``RouteErrors`` listing all problems, or return the routes."""
    routes, problems = _compile(directory, catalogue, mappings, targets, queue_prefix)
    if problems:
        raise RouteErrors(problems)
    return routes


def check_routes(
    directory: Path, *, catalogue: Catalogue, mappings: MappingSet, targets: TargetCatalog, queue_prefix: str
) -> list[ConfigError]:
    return _compile(directory, catalogue, mappings, targets, queue_prefix)[1]


def _compile(
    directory: Path, catalogue: Catalogue, mappings: MappingSet, targets: TargetCatalog, prefix: str
) -> tuple[list[Route], list[ConfigError]]:
    specs, problems = read_specs(directory)
    routes: list[Route] = []
    seen: dict[str, Path] = {}
    partner_formats = {m.source for m in mappings}
    for path, spec in specs:
        where = f"{path}: route {spec.name}"
        errors: list[ConfigError] = []
        if spec.name in seen:
            errors.append(ConfigError(f"the name is already used in {seen[spec.name]}", where=f"{where}: name"))
        seen.setdefault(spec.name, path)

        known = set(catalogue.types()) | partner_formats
        if not any(topic_matches(spec.from_, t) for t in known):
            errors.append(ConfigError(
                f"no message type matches {spec.from_!r}: it is neither in the catalogue "
                "(`gashub schema --list`) nor the source of a mapping", where=f"{where}: from"))

        mapping: FieldMapping | None = None
        input_type = spec.from_
        if spec.map:
            try:
                mapping = mappings.get(spec.mapping_name or "", spec.mapping_version)
            except UnknownMapping as exc:
                errors.append(ConfigError(str(exc).strip("'\""), where=f"{where}: map"))
            else:
                if not topic_matches(spec.from_, mapping.source):
                    errors.append(ConfigError(
                        f"mapping {mapping.name}@{mapping.version} reads {mapping.source!r}, "
                        f"but the route takes {spec.from_!r}", where=f"{where}: map"))
                input_type = mapping.target

        handler: CoreHandler | None = None
        if spec.target_kind == "core":
            handler = targets.core.get(spec.target_name)
            if handler is None:
                errors.append(ConfigError(
                    f"no core handler {spec.target_name!r}; there are: {', '.join(sorted(targets.core))}",
                    where=f"{where}: to"))
            elif handler.accepts != input_type:
                errors.append(ConfigError(
                    f"core:{handler.name} takes {handler.accepts!r}, but this route hands it {input_type!r}"
                    + ("" if mapping else " (add a mapping with `map`)"), where=f"{where}: to"))
        else:
            actions = targets.connectors.get(spec.target_name)
            if actions is None:
                errors.append(ConfigError(
                    f"no connector named {spec.target_name!r} is configured; configured: "
                    f"{', '.join(sorted(targets.connectors)) or 'none'} (see [connectors.*] in config/)",
                    where=f"{where}: to"))
            elif spec.target_action not in actions:
                errors.append(ConfigError(
                    f"connector {spec.target_name!r} has no action {spec.target_action!r}; it has: "
                    f"{', '.join(sorted(actions))}", where=f"{where}: to"))
            elif actions[spec.target_action] not in ("*", input_type):
                errors.append(ConfigError(
                    f"{spec.to} takes {actions[spec.target_action]!r}, but this route hands it {input_type!r}",
                    where=f"{where}: to"))

        if spec.reply is not None and not any(t == spec.reply for t in catalogue.types()):
            errors.append(ConfigError(f"reply type {spec.reply!r} is not in the catalogue", where=f"{where}: reply"))

        predicate = key = None
        if spec.where:
            try:
                predicate = compile_predicate(spec.where, where=f"{where}: where")
            except ConfigError as exc:
                errors.append(exc)
        if spec.dedup:
            try:
                key = compile_key(spec.dedup, where=f"{where}: dedup")
            except ConfigError as exc:
                errors.append(exc)

        if errors:
            problems.extend(errors)
            continue
        routes.append(Route(
            spec=spec, file=path, queues=QueueNames.for_route(prefix, spec.name), input_type=input_type,
            mapping=mapping, where=predicate, dedup=key, core_handler=handler,
        ))
    problems.extend(_unbound_outputs(routes, [spec.from_ for _, spec in specs]))
    return routes, problems


def _unbound_outputs(routes: list[Route], patterns: list[str]) -> list[ConfigError]:
    """Every message a route's target produces (its reply, a core handler's events) must be taken
    by some route: the hub publishes with ``mandatory``, and an unroutable message would come back
    for ever."""
    problems = []
    for route in routes:
        where = f"{route.file}: route {route.name}"
        outputs = [("reply", route.spec.reply)] if route.spec.reply else []
        if route.core_handler is not None:
            outputs += [("to", t) for t in route.core_handler.emits]
        for field_name, type_ in outputs:
            if type_ and not any(topic_matches(p, type_) for p in patterns):
                problems.append(ConfigError(
                    f"{type_!r} is produced here but no route takes it: add a route with from = {type_!r}",
                    where=f"{where}: {field_name}"))
    return problems
