"""What every converter shares: the `Conv` bundle, the internal errors, and `type_repr`.

A converter is a bundle of closures for one type (to a literal, from a literal, from JSON, from
command-line text). The kind modules (`scalars`, `times`, `containers`, ...) build them from
what a `LiteralType` says (element converters, enum values, record fields); `from_hint` and
`from_type` only decide which kind to build, so both paths follow the same rules.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable
from typing import Any

from plaitidl.core.v1 import literals_pb2, types_pb2

Literal = literals_pb2.Literal
LiteralType = types_pb2.LiteralType
ST = types_pb2.SimpleType
BT = types_pb2.BlobType

SUPPORTED = (
    "int, float, str, bool, bytes, datetime, timedelta, None, Optional[T], A | B, list[T], "
    "dict[str, T], dict[str, Any], Enum with str values, dataclass, plait.File, plait.Directory"
)
# Words that mean None on the command line.
NONE_WORDS = frozenset({"none", "null"})


class UnsupportedError(Exception):
    """A type (possibly nested inside the one being compiled) is not supported.

    Attributes:
        hint: The offending Python hint (or LiteralType).
        reason: Why, when there is more to say than "unsupported".
        context: Enclosing types, innermost first ("field Outer.x", "list[set[int]]").
    """

    def __init__(self, hint: object, reason: str = "") -> None:
        super().__init__(reason)
        self.hint = hint
        self.reason = reason
        self.context: list[str] = []

    def format(self, where: str, outer: object) -> str:
        """The user-facing message: `where`, the type, the reason, and what is supported."""
        msg = f"{where}: unsupported type {hint_repr(self.hint)}"
        if self.reason:
            msg += f" ({self.reason})"
        if self.context:
            msg += " in " + " of ".join(self.context)
        if outer is not self.hint and not self.context:
            msg += f" in {hint_repr(outer)}"
        return f"{msg}; supported: {SUPPORTED}"


class MismatchError(Exception):
    """A value (or a literal) does not fit the expected type.

    Cheap to raise deep inside converters; containers append their path step while the error
    unwinds, and the public functions format it once, naming the variable.
    """

    def __init__(self, expected: LiteralType | None, got: str, reason: str = "") -> None:
        super().__init__(got)
        self.expected = expected
        self.got = got
        self.reason = reason
        # Path steps, innermost first: each container appends its step while unwinding.
        self.path: list[str] = []

    def format(self, var: str) -> str:
        """The user-facing message, e.g. ``xs[1]: expected int, got str 'a'``."""
        where = var
        if self.path:
            path = "".join(reversed(self.path))
            where = f"{var}{path}" if var.isidentifier() else f"{var} at {path}"
        msg = f"{where}: "
        if self.expected is not None:
            msg += f"expected {type_repr(self.expected)}, "
        msg += f"got {self.got}"
        if self.reason:
            msg += f" ({self.reason})"
        return msg


def describe(value: object) -> str:
    """A value's type and a short repr, for messages."""
    r = repr(value)
    if len(r) > 60:
        r = r[:57] + "..."
    return f"{type(value).__qualname__} {r}"


def describe_literal(lit: Literal) -> str:
    """What a literal carries, for messages ("a string_value literal")."""
    kind = lit.WhichOneof("value")
    if kind is None:
        return "an empty literal"
    if kind == "scalar":
        s = lit.scalar.WhichOneof("value")
        if s == "primitive":
            return f"a {lit.scalar.primitive.WhichOneof('value')} literal"
        return f"a {s} literal"
    if kind == "offloaded":
        return "an offloaded literal (fetch it first)"
    return f"a {kind} literal"


def bad(lt: LiteralType, value: object, reason: str = "") -> MismatchError:
    """The error for a Python value that does not fit `lt`."""
    return MismatchError(lt, describe(value), reason)


def bad_lit(lt: LiteralType, lit: Literal, reason: str = "") -> MismatchError:
    """The error for a literal that does not carry a value of `lt`."""
    return MismatchError(lt, describe_literal(lit), reason)


def hint_repr(hint: object) -> str:
    """A Python hint (or a LiteralType) as a user would write it."""
    if isinstance(hint, LiteralType):
        return type_repr(hint)
    if hint is inspect.Parameter.empty:
        return "<missing annotation>"
    if hint is None or hint is type(None):
        return "None"
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__qualname__
    return repr(hint).replace("typing.", "")


Fill = Callable[[Any, Literal], None]
ToPy = Callable[[Literal], Any]


class Conv:
    """Everything needed to handle values of one type.

    Attributes:
        lt: The LiteralType (never handed out: callers get copies).
        fill: Writes a value into an empty Literal; raises `MismatchError`.
        to_py: Reads a value from a Literal; raises `MismatchError`.
        exact: Whether a value's Python type is this type's own, so that a union prefers the
            variant that matches exactly (True under `int | bool` is a bool).
        from_json: Converts a decoded JSON value; raises ValueError.
        parse: Converts command-line text; raises ValueError.
    """

    __slots__ = ("exact", "fill", "from_json", "lt", "parse", "to_py")

    def __init__(
        self,
        lt: LiteralType,
        fill: Fill,
        to_py: ToPy,
        exact: Callable[[Any], bool],
        from_json: Callable[[Any], Any],
        *,
        parse: Callable[[str], Any] | None = None,
    ) -> None:
        self.lt = lt
        self.fill = fill
        self.to_py = to_py
        self.exact = exact
        self.from_json = from_json
        self.parse: Callable[[str], Any] = parse or (lambda text: from_json(json.loads(text)))


def simple(st: types_pb2.SimpleType.ValueType) -> LiteralType:
    """A new LiteralType of a simple type."""
    return LiteralType(simple=st)


_SIMPLE_NAMES = {
    ST.SIMPLE_TYPE_NONE: "None",
    ST.SIMPLE_TYPE_INTEGER: "int",
    ST.SIMPLE_TYPE_FLOAT: "float",
    ST.SIMPLE_TYPE_STRING: "str",
    ST.SIMPLE_TYPE_BOOLEAN: "bool",
    ST.SIMPLE_TYPE_DATETIME: "datetime",
    ST.SIMPLE_TYPE_DURATION: "timedelta",
    ST.SIMPLE_TYPE_BINARY: "bytes",
    ST.SIMPLE_TYPE_STRUCT: "dict[str, Any]",
}


def _record_repr(t: LiteralType) -> str:
    rec = t.record_type
    inner = ", ".join(f"{f.name}: {type_repr(f.type)}" for f in rec.fields)
    return f"{rec.name}{{{inner}}}"


def _blob_repr(t: LiteralType) -> str:
    single = t.blob.dimensionality != BT.BLOB_DIMENSIONALITY_MULTIPART
    name = "File" if single else "Directory"
    return f"{name}[{t.blob.format}]" if t.blob.format else name


_REPRS: dict[str, Callable[[LiteralType], str]] = {
    "simple": lambda t: _SIMPLE_NAMES.get(t.simple, "<unspecified>"),
    "collection_type": lambda t: f"list[{type_repr(t.collection_type)}]",
    "map_value_type": lambda t: f"dict[str, {type_repr(t.map_value_type)}]",
    "union_type": lambda t: " | ".join(type_repr(v) for v in t.union_type.variants),
    "record_type": _record_repr,
    "enum_type": lambda t: f"enum{list(t.enum_type.values)!r}",
    "blob": _blob_repr,
}


def type_repr(t: LiteralType) -> str:
    """Return a short, Python-like form of a LiteralType for messages and the CLI.

    Examples: "int", "list[int]", "dict[str, float]", "int | None", "Point{x: int, y: int}",
    "File", "Directory", "enum['red', 'green']".
    """
    kind = t.WhichOneof("type")
    return _REPRS[kind](t) if kind is not None else "<unset>"
