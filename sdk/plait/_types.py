"""The SDK type engine: Python type hints to `LiteralType`, Python values to and from `Literal`.

Each supported hint is compiled once into a `_Conv`, a bundle of closures that convert values
of that hint (to a literal, from a literal, from JSON, from command-line text). Compilation is
cached per hint, so the per-value work on the hot path (an engine converting ints) is one
cache lookup plus one closure call, with no re-dispatch on the hint.

Supported hints: int, float, str, bool, bytes, datetime.datetime, datetime.timedelta, None,
`Optional[T]` / `T | None`, `Union[A, B]` / `A | B`, `list[T]`, `dict[str, T]`,
`dict[str, Any]`, Enum subclasses with str values, dataclasses, `plait.File`,
`plait.Directory`, and `Annotated[T, ...]` (as T).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as _dt
import enum
import functools
import inspect
import json
import numbers
import operator
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf import struct_pb2
from plaitidl.core.v1 import literals_pb2, types_pb2

from plait._errors import PlaitTypeError, PlaitValueError
from plait._files import Directory, File

__all__ = ["literal_type", "parse_text", "to_literal", "to_python", "type_repr"]

_Literal = literals_pb2.Literal
_LiteralType = types_pb2.LiteralType
_ST = types_pb2.SimpleType
_BT = types_pb2.BlobType

_SUPPORTED = (
    "int, float, str, bool, bytes, datetime, timedelta, None, Optional[T], A | B, list[T], "
    "dict[str, T], dict[str, Any], Enum with str values, dataclass, plait.File, plait.Directory"
)
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
# google.protobuf.Duration's documented range (about 10,000 years); beyond it JSON refuses it.
_MAX_DURATION_SECONDS = 315_576_000_000
# Struct numbers are doubles: integers beyond 2**53 would silently change value.
_MAX_JSON_INT = 2**53


# --------------------------------------------------------------------------------------------
# Internal errors: cheap to raise deep inside converters, formatted once at the public boundary.


class _UnsupportedError(Exception):
    """A hint (possibly nested inside the hint being compiled) is not supported."""

    def __init__(self, hint: object, reason: str = "") -> None:
        super().__init__(reason)
        self.hint = hint
        self.reason = reason
        self.context: list[str] = []

    def format(self, where: str, outer: object) -> str:
        msg = f"{where}: unsupported type {_hint_repr(self.hint)}"
        if self.reason:
            msg += f" ({self.reason})"
        if self.context:
            msg += " in " + " of ".join(self.context)
        if outer is not self.hint and not self.context:
            msg += f" in {_hint_repr(outer)}"
        return f"{msg}; supported: {_SUPPORTED}"


class _MismatchError(Exception):
    """A value (or a literal) does not fit the expected type."""

    def __init__(self, expected: _LiteralType | None, got: str, reason: str = "") -> None:
        super().__init__(got)
        self.expected = expected
        self.got = got
        self.reason = reason
        # Path steps, innermost first: each container appends its step while unwinding.
        self.path: list[str] = []

    def format(self, var: str) -> str:
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


def _describe(value: object) -> str:
    r = repr(value)
    if len(r) > 60:
        r = r[:57] + "..."
    return f"{type(value).__qualname__} {r}"


def _describe_literal(lit: _Literal) -> str:
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


def _bad(lt: _LiteralType, value: object, reason: str = "") -> _MismatchError:
    return _MismatchError(lt, _describe(value), reason)


def _bad_lit(lt: _LiteralType, lit: _Literal, reason: str = "") -> _MismatchError:
    return _MismatchError(lt, _describe_literal(lit), reason)


# --------------------------------------------------------------------------------------------
# Converters.

_Fill = Callable[[Any, _Literal], None]
_ToPy = Callable[[_Literal], Any]


class _Conv:
    """Everything needed to handle values of one hint.

    Attributes:
        lt: the LiteralType (never handed out: callers get copies).
        fill: writes a value into an empty Literal; raises _MismatchError.
        to_py: reads a value from a Literal; raises _MismatchError.
        exact: whether a value's Python type is this hint's own type, so that a union prefers
            the variant that matches exactly (True under `int | bool` is a bool).
        from_json: converts a decoded JSON value; raises ValueError.
        parse: converts command-line text; raises ValueError.
    """

    __slots__ = ("exact", "fill", "from_json", "lt", "parse", "to_py")

    def __init__(
        self,
        lt: _LiteralType,
        fill: _Fill,
        to_py: _ToPy,
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


def _simple(st: types_pb2.SimpleType.ValueType) -> _LiteralType:
    return _LiteralType(simple=st)


def _int_conv() -> _Conv:
    lt = _simple(_ST.SIMPLE_TYPE_INTEGER)

    def fill(v: Any, lit: _Literal) -> None:
        if type(v) is not int:
            # numpy integers and the like are accepted through __index__; bool never is.
            if isinstance(v, bool) or not hasattr(type(v), "__index__"):
                raise _bad(lt, v)
            v = operator.index(v)
        try:
            lit.scalar.primitive.integer = v
        except ValueError:
            raise _bad(lt, v, "out of range for a 64-bit integer") from None

    def to_py(lit: _Literal) -> Any:
        p = lit.scalar.primitive
        if p.WhichOneof("value") != "integer":
            raise _bad_lit(lt, lit)
        return p.integer

    def from_json(v: Any) -> int:
        if type(v) is not int:
            raise ValueError(f"expected an integer, got {_describe(v)}")
        return v

    return _Conv(
        lt, fill, to_py, lambda v: type(v) is int, from_json, parse=lambda t: int(t.strip())
    )


def _float_conv() -> _Conv:
    lt = _simple(_ST.SIMPLE_TYPE_FLOAT)

    def fill(v: Any, lit: _Literal) -> None:
        if type(v) is not float:
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise _bad(lt, v)
            v = float(v)
        lit.scalar.primitive.float_value = v

    def to_py(lit: _Literal) -> Any:
        p = lit.scalar.primitive
        kind = p.WhichOneof("value")
        if kind == "float_value":
            return p.float_value
        if kind == "integer":
            return float(p.integer)
        raise _bad_lit(lt, lit)

    def from_json(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"expected a number, got {_describe(v)}")
        return float(v)

    return _Conv(lt, fill, to_py, lambda v: type(v) is float, from_json, parse=float)


def _str_conv() -> _Conv:
    lt = _simple(_ST.SIMPLE_TYPE_STRING)

    def fill(v: Any, lit: _Literal) -> None:
        if type(v) is not str and not isinstance(v, str):
            raise _bad(lt, v)
        lit.scalar.primitive.string_value = v

    def to_py(lit: _Literal) -> Any:
        p = lit.scalar.primitive
        if p.WhichOneof("value") != "string_value":
            raise _bad_lit(lt, lit)
        return p.string_value

    def from_json(v: Any) -> str:
        if not isinstance(v, str):
            raise ValueError(f"expected a string, got {_describe(v)}")
        return v

    return _Conv(lt, fill, to_py, lambda v: type(v) is str, from_json, parse=lambda t: t)


_TRUE = frozenset({"true", "1", "yes", "y", "on"})
_FALSE = frozenset({"false", "0", "no", "n", "off"})


def _parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise ValueError("expected true/false, yes/no or 1/0")


def _bool_conv() -> _Conv:
    lt = _simple(_ST.SIMPLE_TYPE_BOOLEAN)

    def fill(v: Any, lit: _Literal) -> None:
        if type(v) is not bool:
            raise _bad(lt, v)
        lit.scalar.primitive.boolean = v

    def to_py(lit: _Literal) -> Any:
        p = lit.scalar.primitive
        if p.WhichOneof("value") != "boolean":
            raise _bad_lit(lt, lit)
        return p.boolean

    def from_json(v: Any) -> bool:
        if type(v) is not bool:
            raise ValueError(f"expected true or false, got {_describe(v)}")
        return v

    return _Conv(lt, fill, to_py, lambda v: type(v) is bool, from_json, parse=_parse_bool)


def _parse_datetime(text: str) -> _dt.datetime:
    d = _dt.datetime.fromisoformat(text.strip())
    return d if d.tzinfo is not None else d.replace(tzinfo=_dt.UTC)


def _datetime_conv() -> _Conv:
    lt = _simple(_ST.SIMPLE_TYPE_DATETIME)

    def fill(v: Any, lit: _Literal) -> None:
        if not isinstance(v, _dt.datetime):
            raise _bad(lt, v)
        if v.tzinfo is None or v.utcoffset() is None:
            v = v.replace(tzinfo=_dt.UTC)
        # Integer arithmetic: going through float timestamps would lose microseconds.
        delta = v - _EPOCH
        ts = lit.scalar.primitive.datetime
        ts.seconds = delta.days * 86400 + delta.seconds
        ts.nanos = delta.microseconds * 1000

    def to_py(lit: _Literal) -> Any:
        p = lit.scalar.primitive
        if p.WhichOneof("value") != "datetime":
            raise _bad_lit(lt, lit)
        ts = p.datetime
        try:
            return _EPOCH + _dt.timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)
        except OverflowError:
            raise _bad_lit(lt, lit, "out of Python's datetime range") from None

    def from_json(v: Any) -> _dt.datetime:
        if not isinstance(v, str):
            raise ValueError(f"expected an ISO 8601 string, got {_describe(v)}")
        return _parse_datetime(v)

    return _Conv(
        lt, fill, to_py, lambda v: isinstance(v, _dt.datetime), from_json, parse=_parse_datetime
    )


_DURATION_UNITS = {
    "w": 604800.0,
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|w|d|h|m|s)")
_DURATION_CLOCK = re.compile(r"(\d+):([0-5]?\d):([0-5]?\d(?:\.\d*)?)")
_DURATION_ISO = re.compile(
    r"P(?:(\d+(?:\.\d*)?)W)?(?:(\d+(?:\.\d*)?)D)?"
    r"(?:T(?:(\d+(?:\.\d*)?)H)?(?:(\d+(?:\.\d*)?)M)?(?:(\d+(?:\.\d*)?)S)?)?",
    re.IGNORECASE,
)


def _parse_timedelta(text: str) -> _dt.timedelta:
    """Parse seconds ("90", "1.5"), "1h30m", "1d2h3m4.5s", "500ms", "01:30:00" or "PT1H30M"."""
    t = text.strip()
    try:
        return _dt.timedelta(seconds=float(t))
    except ValueError:
        pass
    sign = -1.0 if t.startswith("-") else 1.0
    t = t.lstrip("+-").replace(" ", "")
    seconds = 0.0
    if m := _DURATION_CLOCK.fullmatch(t):
        seconds = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
    elif (m := _DURATION_ISO.fullmatch(t)) and any(m.groups()):
        weights = (604800.0, 86400.0, 3600.0, 60.0, 1.0)
        seconds = sum(float(g) * w for g, w in zip(m.groups(), weights, strict=True) if g)
    else:
        pos = 0
        for part in _DURATION_PART.finditer(t.lower()):
            if part.start() != pos:
                break
            seconds += float(part[1]) * _DURATION_UNITS[part[2]]
            pos = part.end()
        if pos != len(t) or not t:
            raise ValueError("expected seconds, a duration like 1h30m or 90s, or HH:MM:SS")
    return _dt.timedelta(seconds=sign * seconds)


def _timedelta_conv() -> _Conv:
    lt = _simple(_ST.SIMPLE_TYPE_DURATION)

    def fill(v: Any, lit: _Literal) -> None:
        if not isinstance(v, _dt.timedelta):
            raise _bad(lt, v)
        micros = (v.days * 86400 + v.seconds) * 1_000_000 + v.microseconds
        # Duration wants seconds and nanos of the same sign, truncated toward zero.
        secs, rest = divmod(abs(micros), 1_000_000)
        if secs > _MAX_DURATION_SECONDS:
            raise _bad(lt, v, "out of range for a Duration (about 10,000 years)")
        d = lit.scalar.primitive.duration
        if micros < 0:
            d.seconds, d.nanos = -secs, -rest * 1000
        else:
            d.seconds, d.nanos = secs, rest * 1000

    def to_py(lit: _Literal) -> Any:
        p = lit.scalar.primitive
        if p.WhichOneof("value") != "duration":
            raise _bad_lit(lt, lit)
        d = p.duration
        micros = d.nanos // 1000 if d.nanos >= 0 else -(-d.nanos // 1000)
        try:
            return _dt.timedelta(seconds=d.seconds, microseconds=micros)
        except OverflowError:
            raise _bad_lit(lt, lit, "out of Python's timedelta range") from None

    def from_json(v: Any) -> _dt.timedelta:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return _dt.timedelta(seconds=v)
        if isinstance(v, str):
            return _parse_timedelta(v)
        raise ValueError(f"expected seconds or a duration string, got {_describe(v)}")

    return _Conv(
        lt, fill, to_py, lambda v: isinstance(v, _dt.timedelta), from_json, parse=_parse_timedelta
    )


def _bytes_conv() -> _Conv:
    lt = _simple(_ST.SIMPLE_TYPE_BINARY)

    def fill(v: Any, lit: _Literal) -> None:
        if type(v) is not bytes:
            if not isinstance(v, (bytes, bytearray, memoryview)):
                raise _bad(lt, v)
            v = bytes(v)
        lit.scalar.binary.value = v

    def to_py(lit: _Literal) -> Any:
        s = lit.scalar
        if s.WhichOneof("value") != "binary":
            raise _bad_lit(lt, lit)
        return s.binary.value

    def from_json(v: Any) -> bytes:
        # JSON has no bytes: base64, as in protobuf's JSON mapping.
        if not isinstance(v, str):
            raise ValueError(f"expected a base64 string, got {_describe(v)}")
        return base64.b64decode(v, validate=True)

    return _Conv(
        lt, fill, to_py, lambda v: type(v) is bytes, from_json, parse=lambda t: t.encode("utf-8")
    )


_NONE_WORDS = frozenset({"none", "null"})


def _none_conv() -> _Conv:
    lt = _simple(_ST.SIMPLE_TYPE_NONE)

    def fill(v: Any, lit: _Literal) -> None:
        if v is not None:
            raise _bad(lt, v)
        lit.scalar.none_value.SetInParent()

    def to_py(lit: _Literal) -> Any:
        if lit.scalar.WhichOneof("value") != "none_value":
            raise _bad_lit(lt, lit)
        return None

    def from_json(v: Any) -> None:
        if v is not None:
            raise ValueError(f"expected null, got {_describe(v)}")

    def parse(text: str) -> None:
        if text.strip().lower() not in _NONE_WORDS | {""}:
            raise ValueError("expected none or null")

    return _Conv(lt, fill, to_py, lambda v: v is None, from_json, parse=parse)


def _fill_json_value(x: Any, val: struct_pb2.Value, lt: _LiteralType) -> None:
    if x is None:
        val.null_value = struct_pb2.NULL_VALUE
    elif isinstance(x, bool):
        val.bool_value = x
    elif isinstance(x, int):
        if abs(x) > _MAX_JSON_INT:
            raise _bad(lt, x, "integer too large for a JSON number")
        val.number_value = x
    elif isinstance(x, float):
        val.number_value = x
    elif isinstance(x, str):
        val.string_value = x
    elif isinstance(x, Mapping):
        s = val.struct_value
        s.SetInParent()
        _fill_struct(x, s, lt)
    elif isinstance(x, (list, tuple)):
        lv = val.list_value
        lv.SetInParent()
        add = lv.values.add
        try:
            for y in x:
                _fill_json_value(y, add(), lt)
        except _MismatchError as e:
            e.path.append(f"[{len(lv.values) - 1}]")
            raise
    else:
        raise _bad(lt, x, "not a JSON value")


def _fill_struct(x: Mapping[Any, Any], s: struct_pb2.Struct, lt: _LiteralType) -> None:
    fields = s.fields
    for k, y in x.items():
        if not isinstance(k, str):
            raise _bad(lt, k, "JSON object keys must be str")
        try:
            _fill_json_value(y, fields[k], lt)
        except _MismatchError as e:
            e.path.append(f"[{k!r}]")
            raise


def _json_value_to_py(val: struct_pb2.Value) -> Any:
    kind = val.WhichOneof("kind")
    if kind == "number_value":
        n = val.number_value
        # Struct stores every number as a double; give whole numbers back as int, which is what
        # JSON-like documents nearly always meant (counts, sizes, ids).
        if n.is_integer() and abs(n) <= _MAX_JSON_INT:
            return int(n)
        return n
    if kind == "string_value":
        return val.string_value
    if kind == "bool_value":
        return val.bool_value
    if kind == "struct_value":
        return _struct_to_py(val.struct_value)
    if kind == "list_value":
        return [_json_value_to_py(y) for y in val.list_value.values]
    return None


def _struct_to_py(s: struct_pb2.Struct) -> dict[str, Any]:
    return {k: _json_value_to_py(v) for k, v in s.fields.items()}


def _struct_conv() -> _Conv:
    lt = _simple(_ST.SIMPLE_TYPE_STRUCT)

    def fill(v: Any, lit: _Literal) -> None:
        if not isinstance(v, Mapping):
            raise _bad(lt, v)
        g = lit.scalar.generic
        g.SetInParent()
        _fill_struct(v, g, lt)

    def to_py(lit: _Literal) -> Any:
        s = lit.scalar
        if s.WhichOneof("value") != "generic":
            raise _bad_lit(lt, lit)
        return _struct_to_py(s.generic)

    def from_json(v: Any) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise ValueError(f"expected a JSON object, got {_describe(v)}")
        return v

    return _Conv(lt, fill, to_py, lambda v: isinstance(v, dict), from_json)


def _blob_conv(cls: type[File] | type[Directory]) -> _Conv:
    dim = _BT.BLOB_DIMENSIONALITY_SINGLE if cls is File else _BT.BLOB_DIMENSIONALITY_MULTIPART
    lt = _LiteralType(blob=_BT(dimensionality=dim))

    def make(v: Any) -> File | Directory:
        try:
            return cls(v)
        except PlaitValueError as e:
            raise _bad(lt, v, str(e)) from None

    def fill(v: Any, lit: _Literal) -> None:
        if not isinstance(v, cls):
            # A plain path or URI is accepted where a File/Directory is declared.
            if not isinstance(v, str) and not hasattr(v, "__fspath__"):
                raise _bad(lt, v)
            v = make(v)
        blob = lit.scalar.blob
        blob.type.dimensionality = dim
        blob.uri = v.uri

    def to_py(lit: _Literal) -> Any:
        s = lit.scalar
        if s.WhichOneof("value") != "blob":
            raise _bad_lit(lt, lit)
        got = s.blob.type.dimensionality
        if got not in (dim, _BT.BLOB_DIMENSIONALITY_UNSPECIFIED):
            raise _bad_lit(lt, lit, "file/directory mismatch")
        return cls(s.blob.uri)

    def from_json(v: Any) -> File | Directory:
        if not isinstance(v, str):
            raise ValueError(f"expected a path or URI string, got {_describe(v)}")
        return cls(v)

    return _Conv(lt, fill, to_py, lambda v: isinstance(v, cls), from_json, parse=cls)


def _list_conv(elem: _Conv) -> _Conv:
    lt = _LiteralType(collection_type=elem.lt)
    efill, eto, efrom, eparse = elem.fill, elem.to_py, elem.from_json, elem.parse

    def fill(v: Any, lit: _Literal) -> None:
        if not isinstance(v, (list, tuple)):
            raise _bad(lt, v)
        coll = lit.collection
        coll.SetInParent()
        add = coll.literals.add
        try:
            for x in v:
                efill(x, add())
        except _MismatchError as e:
            e.path.append(f"[{len(coll.literals) - 1}]")
            raise

    def to_py(lit: _Literal) -> Any:
        if lit.WhichOneof("value") != "collection":
            raise _bad_lit(lt, lit)
        lits = lit.collection.literals
        try:
            return [eto(x) for x in lits]
        except _MismatchError as e:
            # Found again only on the error path, so the happy path stays a comprehension.
            for i, x in enumerate(lits):
                try:
                    eto(x)
                except _MismatchError:
                    e.path.append(f"[{i}]")
                    break
            raise

    def from_json(v: Any) -> list[Any]:
        if not isinstance(v, list):
            raise ValueError(f"expected a JSON array, got {_describe(v)}")
        return [efrom(x) for x in v]

    def parse(text: str) -> list[Any]:
        t = text.strip()
        if t.startswith("["):
            return from_json(json.loads(t))
        # Convenience for the command line: `--xs 1,2,3`.
        return [eparse(x) for x in t.split(",")] if t else []

    return _Conv(lt, fill, to_py, lambda v: isinstance(v, list), from_json, parse=parse)


def _map_conv(value: _Conv) -> _Conv:
    lt = _LiteralType(map_value_type=value.lt)
    vfill, vto, vfrom = value.fill, value.to_py, value.from_json

    def fill(v: Any, lit: _Literal) -> None:
        if not isinstance(v, Mapping):
            raise _bad(lt, v)
        m = lit.map
        m.SetInParent()
        entries = m.literals
        for k, x in v.items():
            if type(k) is not str and not isinstance(k, str):
                raise _bad(lt, v, f"key {k!r} is not a str")
            try:
                vfill(x, entries[k])
            except _MismatchError as e:
                e.path.append(f"[{k!r}]")
                raise

    def to_py(lit: _Literal) -> Any:
        if lit.WhichOneof("value") != "map":
            raise _bad_lit(lt, lit)
        out = {}
        for k, x in lit.map.literals.items():
            try:
                out[k] = vto(x)
            except _MismatchError as e:
                e.path.append(f"[{k!r}]")
                raise
        return out

    def from_json(v: Any) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise ValueError(f"expected a JSON object, got {_describe(v)}")
        return {k: vfrom(x) for k, x in v.items()}

    return _Conv(lt, fill, to_py, lambda v: isinstance(v, dict), from_json)


def _enum_conv(cls: type[enum.Enum]) -> _Conv:
    members = list(cls)
    bad = [m for m in members if not isinstance(m.value, str)]
    if bad:
        raise _UnsupportedError(cls, f"enum values must be str, {bad[0]!r} is not")
    values = [m.value for m in members]
    allowed = frozenset(values)
    lt = _LiteralType(enum_type=types_pb2.EnumType(values=values))

    def fill(v: Any, lit: _Literal) -> None:
        if isinstance(v, cls):
            v = v.value
        elif not (isinstance(v, str) and v in allowed):
            raise _bad(lt, v)
        lit.scalar.primitive.string_value = v

    def to_py(lit: _Literal) -> Any:
        p = lit.scalar.primitive
        if p.WhichOneof("value") != "string_value":
            raise _bad_lit(lt, lit)
        try:
            return cls(p.string_value)
        except ValueError:
            raise _bad_lit(lt, lit, f"{p.string_value!r} is not a value of the enum") from None

    def from_json(v: Any) -> enum.Enum:
        if isinstance(v, str):
            try:
                return cls(v)
            except ValueError:
                if v in cls.__members__:
                    return cls[v]
        raise ValueError(f"expected one of {values}, got {v!r}")

    return _Conv(
        lt,
        fill,
        to_py,
        lambda v: isinstance(v, cls),
        from_json,
        parse=lambda t: from_json(t.strip()),
    )


def _union_conv(variants: list[_Conv]) -> _Conv:
    lt = _LiteralType(union_type=types_pb2.UnionType(variants=[c.lt for c in variants]))
    for i, a in enumerate(variants):
        for b in variants[:i]:
            if a.lt == b.lt:
                raise _UnsupportedError(
                    None, f"two variants have the same plait type {type_repr(a.lt)}"
                )
    has_none = any(c.lt.simple == _ST.SIMPLE_TYPE_NONE for c in variants)
    str_type = _simple(_ST.SIMPLE_TYPE_STRING)

    def fill(v: Any, lit: _Literal) -> None:
        u = lit.scalar.union
        target = u.value
        first_error: _MismatchError | None = None
        tried: list[_Conv] = []
        for c in variants:
            if c.exact(v):
                try:
                    c.fill(v, target)
                except _MismatchError as e:
                    target.Clear()
                    tried.append(c)
                    first_error = first_error or e
                    continue
                u.type.CopyFrom(c.lt)
                return
        for c in variants:
            if c in tried:
                continue
            try:
                c.fill(v, target)
            except _MismatchError:
                target.Clear()
                continue
            u.type.CopyFrom(c.lt)
            return
        # When the value's own type is a variant, that variant's complaint is the useful one.
        raise first_error or _bad(lt, v)

    def to_py(lit: _Literal) -> Any:
        s = lit.scalar
        if s.WhichOneof("value") == "union":
            u = s.union
            for c in variants:
                if c.lt == u.type:
                    return c.to_py(u.value)
            inner = u.value
        else:
            # Tolerate an unwrapped literal (from a client that sent the bare variant).
            inner = lit
        for c in variants:
            try:
                return c.to_py(inner)
            except _MismatchError:
                continue
        raise _bad_lit(lt, lit)

    def from_json(v: Any) -> Any:
        for c in variants:
            try:
                return c.from_json(v)
            except (ValueError, TypeError, PlaitValueError):
                continue
        raise ValueError(f"{v!r} fits none of {type_repr(lt)}")

    def parse(text: str) -> Any:
        if has_none and text.strip().lower() in _NONE_WORDS:
            return None
        # str would accept anything verbatim, so it is tried last.
        ordered = [c for c in variants if c.lt != str_type] + [
            c for c in variants if c.lt == str_type
        ]
        for c in ordered:
            if c.lt.simple == _ST.SIMPLE_TYPE_NONE:
                continue
            try:
                return c.parse(text)
            except (ValueError, TypeError, PlaitValueError):
                continue
        raise ValueError(f"fits none of {type_repr(lt)}")

    def exact(v: Any) -> bool:
        return any(c.exact(v) for c in variants)

    return _Conv(lt, fill, to_py, exact, from_json, parse=parse)


@dataclasses.dataclass(frozen=True)
class _FieldConv:
    name: str
    conv: _Conv
    init: bool
    has_default: bool


def _dataclass_conv(cls: type[Any], stack: tuple[type[Any], ...]) -> _Conv:
    if cls in stack:
        raise _UnsupportedError(cls, "recursive dataclasses are not supported")
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception as e:  # NameError for an unresolvable forward reference, mostly
        raise _UnsupportedError(cls, f"cannot resolve its field types: {e}") from None
    fields: list[_FieldConv] = []
    for f in dataclasses.fields(cls):
        try:
            conv = _build(hints.get(f.name, inspect.Parameter.empty), (*stack, cls))
        except _UnsupportedError as e:
            e.context.append(f"field {cls.__qualname__}.{f.name}")
            raise
        has_default = (
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        )
        fields.append(_FieldConv(f.name, conv, f.init, has_default))
    lt = _LiteralType(
        record_type=types_pb2.RecordType(
            name=cls.__qualname__,
            fields=[types_pb2.RecordField(name=f.name, type=f.conv.lt) for f in fields],
        )
    )
    plan = [(f.name, f.conv.fill) for f in fields]

    def fill(v: Any, lit: _Literal) -> None:
        if not isinstance(v, cls):
            raise _bad(lt, v)
        rec = lit.record
        rec.SetInParent()
        add = rec.fields.add
        for name, ffill in plan:
            field = add()
            field.name = name
            try:
                ffill(getattr(v, name), field.value)
            except _MismatchError as e:
                e.path.append(f".{name}")
                raise

    def build(values: Mapping[str, Any]) -> Any:
        obj = cls(**{f.name: values[f.name] for f in fields if f.init and f.name in values})
        for f in fields:
            if not f.init and f.name in values:
                # Frozen dataclasses refuse setattr; the record still carries the field.
                object.__setattr__(obj, f.name, values[f.name])
        return obj

    def to_py(lit: _Literal) -> Any:
        if lit.WhichOneof("value") != "record":
            raise _bad_lit(lt, lit)
        got = {f.name: f.value for f in lit.record.fields}
        values: dict[str, Any] = {}
        for f in fields:
            flit = got.get(f.name)
            if flit is None:
                # A missing field with a default is how records evolve; extra fields are ignored
                # for the same reason.
                if f.has_default or not f.init:
                    continue
                raise _bad_lit(lt, lit, f"field {f.name!r} is missing")
            try:
                values[f.name] = f.conv.to_py(flit)
            except _MismatchError as e:
                e.path.append(f".{f.name}")
                raise
        return build(values)

    def from_json(v: Any) -> Any:
        if not isinstance(v, dict):
            raise ValueError(f"expected a JSON object for {cls.__qualname__}, got {_describe(v)}")
        known = {f.name: f for f in fields}
        unknown = sorted(set(v) - set(known))
        if unknown:
            raise ValueError(f"{cls.__qualname__} has no field {unknown[0]!r}")
        missing = [f.name for f in fields if f.init and not f.has_default and f.name not in v]
        if missing:
            raise ValueError(f"{cls.__qualname__} field {missing[0]!r} is missing")
        return build({k: known[k].conv.from_json(x) for k, x in v.items()})

    return _Conv(lt, fill, to_py, lambda v: type(v) is cls, from_json)


# --------------------------------------------------------------------------------------------
# Compilation: hint -> _Conv.

# A constant table of factories: nothing is built until a hint asks for it.
_SIMPLE_FACTORIES: dict[type[Any], Callable[[], _Conv]] = {
    int: _int_conv,
    float: _float_conv,
    str: _str_conv,
    bool: _bool_conv,
    bytes: _bytes_conv,
    _dt.datetime: _datetime_conv,
    _dt.timedelta: _timedelta_conv,
}

_UNSUPPORTED_REASONS: dict[object, str] = {
    typing.Any: "Any alone carries no type; use dict[str, Any] for JSON-like documents",
    object: "object carries no type",
    list: "a bare list has no element type; use list[T]",
    dict: "a bare dict has no value type; use dict[str, T]",
    tuple: "tuples are not supported; use list[T] or a dataclass",
    set: "sets are not supported; use list[T]",
    frozenset: "sets are not supported; use list[T]",
}


def _hint_repr(hint: object) -> str:
    if hint is inspect.Parameter.empty:
        return "<missing annotation>"
    if hint is None or hint is type(None):
        return "None"
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__qualname__
    return repr(hint).replace("typing.", "")


def _sub(hint: object, stack: tuple[type[Any], ...]) -> _Conv:
    # Outside any dataclass the cache is safe; inside one, the stack must travel along so that
    # recursive dataclasses are detected instead of recursing forever.
    if not stack:
        try:
            hash(hint)
        except TypeError:
            return _build(hint, stack)
        return _compile_cached(hint)
    return _build(hint, stack)


def _build(hint: object, stack: tuple[type[Any], ...]) -> _Conv:
    if hint is inspect.Parameter.empty:
        raise _UnsupportedError(hint, "every input and output needs a type annotation")
    if isinstance(hint, (str, typing.ForwardRef)):
        raise _UnsupportedError(hint, "unresolved forward reference")
    if hint is None or hint is type(None):
        return _none_conv()
    if isinstance(hint, type):
        factory = _SIMPLE_FACTORIES.get(hint)
        if factory is not None:
            return factory()
        if hint is File or hint is Directory:
            return _blob_conv(hint)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        return _sub(args[0], stack)
    if origin is typing.Union or origin is types.UnionType:
        convs = []
        for a in args:
            try:
                convs.append(_sub(a, stack))
            except _UnsupportedError as e:
                e.context.append(_hint_repr(hint))
                raise
        try:
            return _union_conv(convs)
        except _UnsupportedError as e:
            e.hint = hint
            raise
    if origin is list:
        if len(args) != 1:
            raise _UnsupportedError(hint, _UNSUPPORTED_REASONS[list])
        try:
            return _list_conv(_sub(args[0], stack))
        except _UnsupportedError as e:
            e.context.append(_hint_repr(hint))
            raise
    if origin is dict:
        if len(args) != 2:
            raise _UnsupportedError(hint, _UNSUPPORTED_REASONS[dict])
        if args[0] is not str:
            raise _UnsupportedError(hint, "map keys must be str")
        if args[1] is typing.Any:
            return _struct_conv()
        try:
            return _map_conv(_sub(args[1], stack))
        except _UnsupportedError as e:
            e.context.append(_hint_repr(hint))
            raise
    if origin is None and isinstance(hint, type):
        if issubclass(hint, enum.Enum):
            return _enum_conv(hint)
        if dataclasses.is_dataclass(hint):
            return _dataclass_conv(hint, stack)
    reason = ""
    with contextlib.suppress(TypeError):  # an unhashable hint has no listed reason
        reason = _UNSUPPORTED_REASONS.get(origin or hint, "")
    if not reason and isinstance(hint, type):
        reason = "classes must be dataclasses"
    raise _UnsupportedError(hint, reason)


@functools.lru_cache(maxsize=2048)
def _compile_cached(hint: object) -> _Conv:
    return _build(hint, ())


def _conv_for(hint: object, where: str) -> _Conv:
    try:
        return _sub(hint, ())
    except _UnsupportedError as e:
        raise PlaitTypeError(e.format(where, hint)) from None


# --------------------------------------------------------------------------------------------
# Public API.


def literal_type(hint: object, *, where: str) -> types_pb2.LiteralType:
    """Return the LiteralType for a Python type hint.

    Args:
        hint: a type hint such as `int`, `list[str]` or a dataclass.
        where: what the hint annotates, for error messages, e.g.
            "task 'examples.f', input 'x'".

    Returns:
        A new LiteralType message (the caller may modify it).

    Raises:
        PlaitTypeError: the hint is not supported; the message names `where` and the hint.
    """
    lt = _LiteralType()
    lt.CopyFrom(_conv_for(hint, where).lt)
    return lt


def fill_literal(target: literals_pb2.Literal, value: object, hint: object, *, var: str) -> None:
    """Like `to_literal`, writing into an empty `target` (saves a copy on hot paths)."""
    conv = _conv_for(hint, var)
    try:
        conv.fill(value, target)
    except _MismatchError as e:
        target.Clear()
        raise PlaitTypeError(e.format(var)) from None


def to_literal(value: object, hint: object, *, var: str) -> literals_pb2.Literal:
    """Convert a Python value to a Literal of the type `hint` declares.

    Args:
        value: the value.
        hint: the declared type hint.
        var: the variable's name (or a phrase) for error messages.

    Raises:
        PlaitTypeError: the hint is unsupported, or the value does not fit it; the message
            names `var`, the expected type and the value's type.
    """
    conv = _conv_for(hint, var)
    lit = _Literal()
    try:
        conv.fill(value, lit)
    except _MismatchError as e:
        raise PlaitTypeError(e.format(var)) from None
    return lit


def to_python(literal: literals_pb2.Literal, hint: object, *, var: str) -> object:
    """Convert a Literal back to a Python value of the type `hint` declares.

    Datetimes come back timezone-aware in UTC; dataclasses, enums, `File` and `Directory` are
    rebuilt; `dict[str, Any]` comes back as plain JSON-like data.

    Args:
        literal: the literal.
        hint: the declared type hint.
        var: the variable's name (or a phrase) for error messages.

    Raises:
        PlaitTypeError: the hint is unsupported or the literal does not carry a value of it.
    """
    conv = _conv_for(hint, var)
    try:
        return conv.to_py(literal)
    except _MismatchError as e:
        raise PlaitTypeError(e.format(var)) from None


def parse_text(text: str, hint: object, *, var: str) -> object:
    """Parse a command-line argument into a value of the type `hint` declares.

    int and float as Python spells them; str verbatim; bool as true/false, yes/no, on/off or
    1/0; datetime as ISO 8601 (naive means UTC); timedelta as seconds or like "1h30m", "90s",
    "01:30:00", "PT1H30M"; bytes as the UTF-8 text; list, dict and dataclass as JSON (a list
    also as "1,2,3"); Enum by value (or member name); Optional as "none"/"null" for None;
    unions try each variant, str last; File and Directory as a path or URI.

    Raises:
        PlaitTypeError: the hint is unsupported.
        PlaitValueError: the text does not parse; the message names `var`.
    """
    conv = _conv_for(hint, var)
    try:
        return conv.parse(text)
    except (ValueError, TypeError, OverflowError, PlaitValueError) as e:
        # json.JSONDecodeError and binascii.Error are ValueErrors too.
        raise PlaitValueError(
            f"{var}: cannot parse {text!r} as {type_repr(conv.lt)}: {e}"
        ) from None


_SIMPLE_NAMES = {
    _ST.SIMPLE_TYPE_NONE: "None",
    _ST.SIMPLE_TYPE_INTEGER: "int",
    _ST.SIMPLE_TYPE_FLOAT: "float",
    _ST.SIMPLE_TYPE_STRING: "str",
    _ST.SIMPLE_TYPE_BOOLEAN: "bool",
    _ST.SIMPLE_TYPE_DATETIME: "datetime",
    _ST.SIMPLE_TYPE_DURATION: "timedelta",
    _ST.SIMPLE_TYPE_BINARY: "bytes",
    _ST.SIMPLE_TYPE_STRUCT: "dict[str, Any]",
}


def type_repr(t: types_pb2.LiteralType) -> str:
    """Return a short, Python-like form of a LiteralType for messages and the CLI.

    Examples: "int", "list[int]", "dict[str, float]", "int | None", "Point{x: int, y: int}",
    "File", "Directory", "enum['red', 'green']".
    """
    kind = t.WhichOneof("type")
    if kind == "simple":
        return _SIMPLE_NAMES.get(t.simple, "<unspecified>")
    if kind == "collection_type":
        return f"list[{type_repr(t.collection_type)}]"
    if kind == "map_value_type":
        return f"dict[str, {type_repr(t.map_value_type)}]"
    if kind == "union_type":
        return " | ".join(type_repr(v) for v in t.union_type.variants)
    if kind == "record_type":
        rec = t.record_type
        inner = ", ".join(f"{f.name}: {type_repr(f.type)}" for f in rec.fields)
        return f"{rec.name}{{{inner}}}"
    if kind == "enum_type":
        return f"enum{list(t.enum_type.values)!r}"
    if kind == "blob":
        single = t.blob.dimensionality != _BT.BLOB_DIMENSIONALITY_MULTIPART
        name = "File" if single else "Directory"
        return f"{name}[{t.blob.format}]" if t.blob.format else name
    return "<unset>"
