"""JSON-like documents: `dict[str, Any]` as a `google.protobuf.Struct`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import struct_pb2

from plait._types.core import (
    ST,
    Conv,
    Literal,
    LiteralType,
    MismatchError,
    bad,
    bad_lit,
    describe,
    simple,
)

# Struct numbers are doubles: integers beyond 2**53 would silently change value.
_MAX_JSON_INT = 2**53


def _fill_list(x: list[Any] | tuple[Any, ...], val: struct_pb2.Value, lt: LiteralType) -> None:
    lv = val.list_value
    lv.SetInParent()
    add = lv.values.add
    try:
        for y in x:
            _fill_value(y, add(), lt)
    except MismatchError as e:
        e.path.append(f"[{len(lv.values) - 1}]")
        raise


def _fill_number(x: int | float, val: struct_pb2.Value, lt: LiteralType) -> None:
    if isinstance(x, int) and abs(x) > _MAX_JSON_INT:
        raise bad(lt, x, "integer too large for a JSON number")
    val.number_value = x


def _fill_value(x: Any, val: struct_pb2.Value, lt: LiteralType) -> None:
    if x is None:
        val.null_value = struct_pb2.NULL_VALUE
    elif isinstance(x, bool):
        val.bool_value = x
    elif isinstance(x, (int, float)):
        _fill_number(x, val, lt)
    elif isinstance(x, str):
        val.string_value = x
    elif isinstance(x, Mapping):
        s = val.struct_value
        s.SetInParent()
        _fill_struct(x, s, lt)
    elif isinstance(x, (list, tuple)):
        _fill_list(x, val, lt)
    else:
        raise bad(lt, x, "not a JSON value")


def _fill_struct(x: Mapping[Any, Any], s: struct_pb2.Struct, lt: LiteralType) -> None:
    fields = s.fields
    for k, y in x.items():
        if not isinstance(k, str):
            raise bad(lt, k, "JSON object keys must be str")
        try:
            _fill_value(y, fields[k], lt)
        except MismatchError as e:
            e.path.append(f"[{k!r}]")
            raise


def _value_to_py(val: struct_pb2.Value) -> Any:
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
        return [_value_to_py(y) for y in val.list_value.values]
    return None


def _struct_to_py(s: struct_pb2.Struct) -> dict[str, Any]:
    return {k: _value_to_py(v) for k, v in s.fields.items()}


def struct_conv() -> Conv:
    """`dict[str, Any]`: nested JSON values; whole numbers come back as int."""
    lt = simple(ST.SIMPLE_TYPE_STRUCT)

    def fill(v: Any, lit: Literal) -> None:
        if not isinstance(v, Mapping):
            raise bad(lt, v)
        g = lit.scalar.generic
        g.SetInParent()
        _fill_struct(v, g, lt)

    def to_py(lit: Literal) -> Any:
        s = lit.scalar
        if s.WhichOneof("value") != "generic":
            raise bad_lit(lt, lit)
        return _struct_to_py(s.generic)

    def from_json(v: Any) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise ValueError(f"expected a JSON object, got {describe(v)}")
        return v

    return Conv(lt, fill, to_py, lambda v: isinstance(v, dict), from_json)
