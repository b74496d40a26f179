"""Errors the core raises. The hub maps ``retriable`` to a retry and anything else to a dead letter."""

from __future__ import annotations


class CoreError(Exception):
    retriable: bool = False


class DomainRejected(CoreError):
    """The message is well-formed but the domain refuses it (unknown account, closed meter…)."""


class Conflict(CoreError):
    """The message contradicts what is stored (a duplicate reading with another value…)."""


class TemporarilyUnavailable(CoreError):
    """Try again later (a lock could not be taken, a dependency is starting)."""

    retriable = True
