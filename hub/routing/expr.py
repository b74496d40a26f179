"""A small, safe expression language for route ``where`` predicates and ``dedup`` keys.

Expressions read like Python and are parsed with :mod:`ast`, but only these constructs compile:

- names of the evaluation environment (``data``, ``type``, ``source``, ``subject``, ``attempt``,
  ``headers`` and the other envelope fields, see :data:`ENV_NAMES`);
- key lookups: ``data.kind`` and ``data["kind"]`` both mean ``env["data"]["kind"]``, ``data.items[0]``
  indexes a list. A missing key, an index out of range or a lookup on something that is not a dict
  gives ``None``, never an error;
- literals: strings, numbers, ``True``, ``False``, ``None``, and lists or tuples of expressions
  (both evaluate to tuples);
- comparisons ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in``, ``not in`` (chains too). A comparison
  between values that Python cannot compare (``None < 3``, ``1 in None``) is ``False``;
- ``and``, ``or``, ``not`` (with Python's short-circuit semantics), unary minus on a number literal;
- ``+`` on two strings or two numbers; any other pairing gives ``None``;
- the calls ``str(x)``, ``len(x)`` and ``lower(x)``, each giving ``None`` for ``None``.

Anything else (other calls, methods, dunder attributes, lambdas, comprehensions, f-strings,
conditional expressions, ``is``...) is refused at compile time with a :class:`~hub.errors.ConfigError`
naming the construct and its column. An expression compiles once into a tree of closures; evaluation
never calls :func:`eval` and, on JSON-like data, never raises.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Collection, Mapping
from decimal import Decimal
from typing import Any, Final, cast

from hub.errors import ConfigError, UnmappableMessage

Env = Mapping[str, Any]
Fn = Callable[[Env], Any]

ENV_NAMES: Final = frozenset(
    {
        "data", "type", "source", "subject", "attempt", "headers", "id", "version", "time",
        "correlation_id", "causation_id", "priority",
    }
)  # fmt: skip
"""The names an expression may use unless the caller passes its own ``names``."""

MAX_SOURCE_CHARS: Final = 2000

_NUMBERS: Final = (int, float, Decimal)
_ALLOWED_HELP: Final = (
    "allowed: names, .key and [constant] lookups, literals, lists, comparisons, and/or/not, +, "
    "str(), len(), lower()"
)

_DESCRIPTIONS: Final[dict[type[ast.AST], str]] = {
    ast.Lambda: "lambda",
    ast.ListComp: "list comprehension",
    ast.SetComp: "set comprehension",
    ast.DictComp: "dict comprehension",
    ast.GeneratorExp: "generator expression",
    ast.JoinedStr: "f-string",
    ast.FormattedValue: "f-string",
    ast.IfExp: "conditional expression (x if c else y)",
    ast.NamedExpr: "assignment expression (:=)",
    ast.Dict: "dict literal",
    ast.Set: "set literal",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Starred: "starred expression",
    ast.Slice: "slice",
    ast.Sub: "operator -",
    ast.Mult: "operator *",
    ast.MatMult: "operator @",
    ast.Div: "operator /",
    ast.FloorDiv: "operator //",
    ast.Mod: "operator %",
    ast.Pow: "operator **",
    ast.LShift: "operator <<",
    ast.RShift: "operator >>",
    ast.BitOr: "operator |",
    ast.BitAnd: "operator &",
    ast.BitXor: "operator ^",
    ast.Invert: "operator ~",
    ast.USub: "unary -",
    ast.UAdd: "unary +",
    ast.Is: "'is' (use ==)",
    ast.IsNot: "'is not' (use !=)",
}


class Expr:
    """A compiled expression. ``evaluate(env)`` looks names up in ``env`` and never raises."""

    __slots__ = ("_fn", "source")

    def __init__(self, source: str, fn: Fn) -> None:
        self.source = source
        self._fn = fn

    def evaluate(self, env: Env) -> Any:
        """The expression's value for one message's environment."""
        return self._fn(env)

    def __repr__(self) -> str:
        return f"Expr({self.source!r})"


def compile_expr(source: str, *, where: str, names: Collection[str] = ENV_NAMES) -> Expr:
    """Compile ``source``; raise ``ConfigError(where=where)`` for anything outside the language."""
    return Expr(source, _Compiler(source, where, names).compile_source())


def compile_predicate(
    source: str, *, where: str, names: Collection[str] = ENV_NAMES
) -> Callable[[Env], bool]:
    """Compile a ``where`` predicate: the expression's truthiness."""
    compiler = _Compiler(source, where, names)
    fn = compiler.compile_source()
    if compiler.returns_bool:
        return fn
    return lambda env: bool(fn(env))


def compile_key(source: str, *, where: str, names: Collection[str] = ENV_NAMES) -> Callable[[Env], str]:
    """Compile a ``dedup`` key: ``str`` of the value; ``UnmappableMessage`` when it is None or empty."""
    fn = _Compiler(source, where, names).compile_source()
    prefix = f"{where}: " if where else ""

    def key(env: Env) -> str:
        value = fn(env)
        if value is None:
            raise UnmappableMessage(f"{prefix}key {source!r} is None for this message")
        text = value if type(value) is str else str(value)
        if not text:
            raise UnmappableMessage(f"{prefix}key {source!r} is empty for this message")
        return text

    return key


class _Compiler:
    """Turns one expression's AST into closures, refusing every construct not in the whitelist."""

    def __init__(self, source: str, where: str, names: Collection[str]) -> None:
        self.source = source
        self.text = source.strip()
        self.where = where
        self.names = frozenset(names)
        self.returns_bool = False

    def compile_source(self) -> Fn:
        if len(self.source) > MAX_SOURCE_CHARS:
            raise ConfigError(f"expression is longer than {MAX_SOURCE_CHARS} characters", where=self.where)
        if not self.text:
            raise ConfigError("expression is empty", where=self.where)
        try:
            tree = ast.parse(self.text, mode="eval")
        except SyntaxError as exc:
            raise ConfigError(
                f"syntax error in expression {self.source!r} (column {exc.offset}): {exc.msg}",
                where=self.where,
            ) from None
        except ValueError as exc:  # null bytes on Python 3.11
            raise ConfigError(f"expression {self.source!r} is not valid: {exc}", where=self.where) from None
        except (RecursionError, MemoryError):
            raise ConfigError(f"expression {self.source!r} is too deeply nested", where=self.where) from None
        body = tree.body
        self.returns_bool = isinstance(body, ast.Compare) or (
            isinstance(body, ast.UnaryOp) and isinstance(body.op, ast.Not)
        )
        try:
            return self.compile(body)
        except RecursionError:
            raise ConfigError(f"expression {self.source!r} is too deeply nested", where=self.where) from None

    def refuse(
        self, node: ast.AST, what: str, *, byte_col: int | None = None, listed: bool = True
    ) -> ConfigError:
        """A ConfigError for ``what`` at ``node``'s position (columns count characters, from 1)."""
        line_no = getattr(node, "lineno", 1)
        if byte_col is None:
            byte_col = getattr(node, "col_offset", 0)
        lines = self.text.splitlines() or [""]
        line = lines[min(line_no, len(lines)) - 1]
        column = len(line.encode()[:byte_col].decode(errors="replace")) + 1
        at = f"line {line_no}, column {column}" if line_no > 1 else f"column {column}"
        message = f"{what} is not allowed in an expression" if listed else what
        suffix = f"; {_ALLOWED_HELP}" if listed else ""
        return ConfigError(f"{message} ({at} of {self.source!r}){suffix}", where=self.where)

    def compile(self, node: ast.expr) -> Fn:
        if isinstance(node, ast.Constant | ast.List | ast.Tuple) or _negative_number(node) is not None:
            found, value = self.literal(node)
            if found:
                return _constant(value)
            assert isinstance(node, ast.List | ast.Tuple)
            items = tuple(self.compile(item) for item in node.elts)
            return lambda env: tuple(item(env) for item in items)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.Attribute | ast.Subscript):
            return self.lookup(node)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.BoolOp):
            return self.bool_op(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            operand = self.compile(node.operand)
            return lambda env: not operand(env)
        if isinstance(node, ast.UnaryOp):
            raise self.refuse(node, f"{_describe(node.op)} on anything but a number literal")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = self.compile(node.left), self.compile(node.right)
            return lambda env: _add(left(env), right(env))
        if isinstance(node, ast.BinOp):
            raise self.refuse(node, _describe(node.op))
        if isinstance(node, ast.Call):
            return self.call(node)
        raise self.refuse(node, _describe(node))

    def literal(self, node: ast.expr) -> tuple[bool, Any]:
        """``(True, value)`` when ``node`` is a literal (lists become tuples), else ``(False, None)``."""
        if isinstance(node, ast.Constant):
            if node.value is None or isinstance(node.value, str | int | float):
                return True, node.value
            raise self.refuse(node, f"constant of type {type(node.value).__name__}")
        negative = _negative_number(node)
        if negative is not None:
            return True, negative
        if isinstance(node, ast.List | ast.Tuple):
            values = []
            for item in node.elts:
                if isinstance(item, ast.Starred):
                    raise self.refuse(item, _describe(item))
                found, value = self.literal(item)
                if not found:
                    return False, None
                values.append(value)
            return True, tuple(values)
        return False, None

    def name(self, node: ast.Name) -> Fn:
        key = node.id
        if key in _FUNCTIONS and key not in self.names:
            raise self.refuse(node, f"function {key!r} used without calling it")
        if key not in self.names:
            known = ", ".join(sorted(self.names))
            raise self.refuse(node, f"unknown name {key!r} (known names: {known})", listed=False)
        return lambda env: env.get(key)

    def lookup(self, node: ast.Attribute | ast.Subscript) -> Fn:
        chain: list[ast.Attribute | ast.Subscript] = []
        base: ast.expr = node
        while isinstance(base, ast.Attribute | ast.Subscript):
            chain.append(base)
            base = base.value
        keys: list[str | int] = []
        for step in reversed(chain):  # left to right, so the first offence is the one reported
            if isinstance(step, ast.Subscript):
                keys.append(self.subscript_key(step))
            elif step.attr.startswith("__"):
                column = (step.end_col_offset or 0) - len(step.attr.encode())
                raise self.refuse(step, f"dunder attribute '.{step.attr}'", byte_col=column)
            else:
                keys.append(step.attr)
        if isinstance(base, ast.Name):
            self.name(base)
            return _path_getter(base.id, tuple(keys))
        start = self.compile(base)
        path = tuple(keys)

        def walk(env: Env) -> Any:
            value = start(env)
            for key in path:
                value = _step(value, key)
            return value

        return walk

    def subscript_key(self, node: ast.Subscript) -> str | int:
        index = node.slice
        found, value = self.literal(index) if not isinstance(index, ast.Slice) else (False, None)
        if found and isinstance(value, str | int) and not isinstance(value, bool):
            return value
        what = _describe(index) if isinstance(index, ast.Slice) else "subscript with a non-constant key"
        raise self.refuse(index, what)

    def compare(self, node: ast.Compare) -> Fn:
        left = self.compile(node.left)
        steps: list[tuple[Callable[[Any, Any], bool], Fn]] = []
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            function = _COMPARISONS.get(type(op))
            if function is None:
                raise self.refuse(node, _describe(op))
            found, value = self.literal(comparator)
            if not found:
                steps.append((function, self.compile(comparator)))
                continue
            if isinstance(op, ast.In | ast.NotIn) and isinstance(value, tuple):
                value = frozenset(value)  # constants are hashable; membership becomes a hash lookup
            if len(node.ops) == 1:
                return _against_constant(function, left, value)
            steps.append((function, _constant(value)))
        if len(steps) == 1:
            function, right = steps[0]
            return lambda env: function(left(env), right(env))
        chain = tuple(steps)

        def chained(env: Env) -> bool:
            current = left(env)
            for function, right in chain:
                following = right(env)
                if not function(current, following):
                    return False
                current = following
            return True

        return chained

    def bool_op(self, node: ast.BoolOp) -> Fn:
        operands = tuple(self.compile(value) for value in node.values)
        if isinstance(node.op, ast.And):
            if len(operands) == 2:
                first, second = operands
                return lambda env: first(env) and second(env)

            def all_of(env: Env) -> Any:
                value = None
                for operand in operands:
                    value = operand(env)
                    if not value:
                        return value
                return value

            return all_of
        if len(operands) == 2:
            first, second = operands
            return lambda env: first(env) or second(env)

        def any_of(env: Env) -> Any:
            value = None
            for operand in operands:
                value = operand(env)
                if value:
                    return value
            return value

        return any_of

    def call(self, node: ast.Call) -> Fn:
        if not isinstance(node.func, ast.Name):
            if isinstance(node.func, ast.Attribute):
                raise self.refuse(node, f"method call '.{node.func.attr}()' (use a function, e.g. lower(x))")
            raise self.refuse(node, "call of a computed function")
        function = _FUNCTIONS.get(node.func.id)
        if function is None:
            raise self.refuse(node, f"call to {node.func.id!r} (only str(), len(), lower() are callable)")
        if node.keywords or len(node.args) != 1 or isinstance(node.args[0], ast.Starred):
            raise self.refuse(node, f"{node.func.id}() with other than one positional argument")
        argument = self.compile(node.args[0])
        return lambda env: function(argument(env))


def _describe(node: ast.AST) -> str:
    return _DESCRIPTIONS.get(type(node), type(node).__name__)


def _negative_number(node: ast.expr) -> int | float | None:
    """The value of ``-<number literal>``, else None."""
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
    ):
        value = node.operand.value
        if type(value) is int or type(value) is float:
            return -value
    return None


def _step(value: Any, key: str | int) -> Any:
    if type(value) is dict:
        return value.get(key)
    if isinstance(value, Mapping):
        try:
            return value.get(key)
        except TypeError:
            return None
    if type(key) is int and isinstance(value, list | tuple):
        try:
            return value[key]
        except IndexError:
            return None
    return None


def _path_getter(name: str, path: tuple[str | int, ...]) -> Fn:
    """A lookup ``env[name][k1][k2]...`` specialised for the common one- and two-key paths."""
    if len(path) == 1:
        (first,) = path

        def one(env: Env) -> Any:
            value = env.get(name)
            if type(value) is dict:
                return value.get(first)
            return _step(value, first)

        return one
    if len(path) == 2:
        first, second = path

        def two(env: Env) -> Any:
            value = env.get(name)
            value = value.get(first) if type(value) is dict else _step(value, first)
            if type(value) is dict:
                return value.get(second)
            return _step(value, second)

        return two

    def many(env: Env) -> Any:
        value = env.get(name)
        for key in path:
            value = _step(value, key)
        return value

    return many


def _constant(value: Any) -> Fn:
    return lambda env: value


def _against_constant(function: Callable[[Any, Any], bool], left: Fn, value: Any) -> Fn:
    return lambda env: function(left(env), value)


def _safe(compare: Callable[[Any, Any], Any]) -> Callable[[Any, Any], bool]:
    def checked(left: Any, right: Any) -> bool:
        try:
            return bool(compare(left, right))
        except (TypeError, ArithmeticError):
            return False

    return checked


def _contains(container: Any, item: Any) -> bool:
    try:
        return item in container
    except (TypeError, ArithmeticError):
        return False


def _not_contains(container: Any, item: Any) -> bool:
    try:
        return item not in container
    except (TypeError, ArithmeticError):
        return False


_COMPARISONS: Final[dict[type[ast.cmpop], Callable[[Any, Any], bool]]] = {
    ast.Eq: _safe(operator.eq),
    ast.NotEq: _safe(operator.ne),
    ast.Lt: _safe(operator.lt),
    ast.LtE: _safe(operator.le),
    ast.Gt: _safe(operator.gt),
    ast.GtE: _safe(operator.ge),
    ast.In: lambda left, right: _contains(right, left),
    ast.NotIn: lambda left, right: _not_contains(right, left),
}


def _add(left: Any, right: Any) -> Any:
    if isinstance(left, str) and isinstance(right, str):
        return left + right
    if isinstance(left, _NUMBERS) and isinstance(right, _NUMBERS):
        try:
            return cast(Any, left) + right
        except (TypeError, ArithmeticError):
            return None
    return None


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _len(value: Any) -> int | None:
    try:
        return len(value)
    except TypeError:
        return None


def _lower(value: Any) -> str | None:
    return value.lower() if isinstance(value, str) else None


_FUNCTIONS: Final[dict[str, Callable[[Any], Any]]] = {"str": _str, "len": _len, "lower": _lower}
