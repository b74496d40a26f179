"""Field-by-field differences between two mapped outputs (dead-letter replay's dry run)."""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from typing import Any, Final, Literal

_ABSENT: Final = object()


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One leaf that differs. ``old`` is None for ``added``, ``new`` is None for ``removed``."""

    path: str
    old: Any
    new: Any
    kind: Literal["added", "removed", "changed"]

    def __str__(self) -> str:
        if self.kind == "added":
            return f"+ {self.path} = {self.new!r}"
        if self.kind == "removed":
            return f"- {self.path} (was {self.old!r})"
        return f"~ {self.path}: {self.old!r} -> {self.new!r}"


def diff(before: MappingABC[str, Any], after: MappingABC[str, Any]) -> list[FieldChange]:
    """Every leaf (dotted path, ``[i]`` for list items) added, removed or changed, sorted by path.

    Values differ when their types differ or they compare unequal, so ``Decimal("1.00")`` against
    ``"1.00"`` is a change while ``Decimal("1.0")`` against ``Decimal("1.00")`` is not.
    """
    old_leaves = dict(_leaves(before, ""))
    new_leaves = dict(_leaves(after, ""))
    changes: list[FieldChange] = []
    for path in sorted(old_leaves.keys() | new_leaves.keys()):
        old = old_leaves.get(path, _ABSENT)
        new = new_leaves.get(path, _ABSENT)
        if old is _ABSENT:
            changes.append(FieldChange(path, None, new, "added"))
        elif new is _ABSENT:
            changes.append(FieldChange(path, old, None, "removed"))
        elif type(old) is not type(new) or old != new:
            changes.append(FieldChange(path, old, new, "changed"))
    return changes


def _leaves(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, MappingABC) and (value or not prefix):
        for key, item in value.items():
            yield from _leaves(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list | tuple) and value:
        for index, item in enumerate(value):
            yield from _leaves(item, f"{prefix}[{index}]")
    else:
        yield prefix, value
