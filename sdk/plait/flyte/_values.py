"""Dataclass values: flytekit's msgpack (or JSON) documents ⇄ plait records.

flytekit 1.14+ encodes a dataclass as a msgpack ``Binary`` (older ones as a JSON ``Struct``)
where its type says ``STRUCT``. plait keeps such a value as a typed `Record`, so the engine can
check it and follow attribute paths (``p.inner.x``) into it. The document's encoding is
mashumaro's: datetimes as ISO strings, durations as seconds, enums by value, files and folders
as ``{"path": uri}``.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format
from plaitidl.core.v1 import literals_pb2 as pl
from plaitidl.core.v1 import types_pb2 as pt

from plait.flyte._context import Context

_ST = pt.SimpleType


def _simple(value: Any, st: int, out: pl.Literal) -> bool:
    """Fill `out` with `value` as simple type `st`; False when it does not fit."""
    p = out.scalar.primitive
    is_num = isinstance(value, int | float) and not isinstance(value, bool)
    if st == _ST.SIMPLE_TYPE_NONE and value is None:
        out.scalar.none_value.SetInParent()
    elif st == _ST.SIMPLE_TYPE_INTEGER and is_num and float(value).is_integer():
        p.integer = int(value)  # JSON documents carry every number as a float
    elif st == _ST.SIMPLE_TYPE_FLOAT and is_num:
        p.float_value = float(value)
    elif st == _ST.SIMPLE_TYPE_STRING and isinstance(value, str):
        p.string_value = value
    elif st == _ST.SIMPLE_TYPE_BOOLEAN and isinstance(value, bool):
        p.boolean = value
    elif st == _ST.SIMPLE_TYPE_DATETIME and isinstance(value, str):
        try:
            when = datetime.datetime.fromisoformat(value)
        except ValueError:
            return False
        p.datetime.FromDatetime(when if when.tzinfo else when.replace(tzinfo=datetime.UTC))
    elif st == _ST.SIMPLE_TYPE_DURATION and is_num and math.isfinite(value):
        p.duration.FromTimedelta(datetime.timedelta(seconds=value))
    elif st == _ST.SIMPLE_TYPE_BINARY and isinstance(value, bytes):
        out.scalar.binary.value = value
    elif st == _ST.SIMPLE_TYPE_STRUCT and isinstance(value, Mapping):
        try:
            out.scalar.generic.update(value)
        except (TypeError, ValueError):
            return False
    else:
        return False
    return True


def _union(value: Any, t: pt.LiteralType, ctx: Context, path: str) -> pl.Literal:
    for variant in t.union_type.variants:
        trial = Context(ctx.entity)
        inner = value_to_plait(value, variant, trial, path)
        if not trial.refusals:
            out = pl.Literal()
            out.scalar.union.value.CopyFrom(inner)
            out.scalar.union.type.CopyFrom(variant)
            return out
    ctx.refuse(path, f"{value!r} fits no variant of the union")
    return pl.Literal()


def _record(value: Any, t: pt.LiteralType, ctx: Context, path: str) -> pl.Literal:
    out = pl.Literal()
    out.record.SetInParent()
    if not isinstance(value, Mapping):
        ctx.refuse(path, f"expected a dataclass document, got {type(value).__name__}")
        return out
    names = [f.name for f in t.record_type.fields]
    for extra in sorted(set(value) - set(names)):
        ctx.refuse(f"{path}.{extra}", "is not a field of the dataclass type")
    for f in t.record_type.fields:
        if f.name not in value:
            ctx.refuse(f"{path}.{f.name}", "the dataclass document has no value for this field")
            continue
        field = out.record.fields.add(name=f.name)
        field.value.CopyFrom(value_to_plait(value[f.name], f.type, ctx, f"{path}.{f.name}"))
    return out


def _container(value: Any, t: pt.LiteralType, ctx: Context, path: str) -> pl.Literal:
    out = pl.Literal()
    if t.HasField("collection_type"):
        if not isinstance(value, list | tuple):
            ctx.refuse(path, f"expected a list, got {type(value).__name__}")
            return out
        out.collection.SetInParent()
        for i, v in enumerate(value):
            out.collection.literals.append(
                value_to_plait(v, t.collection_type, ctx, f"{path}[{i}]")
            )
        return out
    if not isinstance(value, Mapping):
        ctx.refuse(path, f"expected a dict, got {type(value).__name__}")
        return out
    out.map.SetInParent()
    for k, v in value.items():
        out.map.literals[str(k)].CopyFrom(
            value_to_plait(v, t.map_value_type, ctx, f"{path}[{k!r}]")
        )
    return out


def value_to_plait(value: Any, t: pt.LiteralType, ctx: Context, path: str) -> pl.Literal:
    """A decoded dataclass document (or part of one) as a plait literal of type `t`."""
    kind = t.WhichOneof("type")
    if kind == "record_type":
        return _record(value, t, ctx, path)
    if kind == "union_type":
        return _union(value, t, ctx, path)
    if kind in ("collection_type", "map_value_type"):
        return _container(value, t, ctx, path)
    out = pl.Literal()
    if kind == "blob":
        uri = value.get("path") if isinstance(value, Mapping) else value
        if isinstance(uri, str):
            out.scalar.blob.type.CopyFrom(t.blob)
            out.scalar.blob.uri = uri
            return out
    elif kind == "enum_type":
        if isinstance(value, str) and value in t.enum_type.values:
            out.scalar.primitive.string_value = value
            return out
    elif kind == "simple" and _simple(value, t.simple, out):
        return out
    ctx.refuse(path, f"{value!r} does not fit the declared type")
    return out


def _scalar_value(s: pl.Scalar) -> Any:
    kind = s.WhichOneof("value")
    if kind == "primitive":
        pk = s.primitive.WhichOneof("value")
        if pk == "datetime":
            return s.primitive.datetime.ToDatetime(tzinfo=datetime.UTC).isoformat()
        if pk == "duration":
            return s.primitive.duration.ToTimedelta().total_seconds()
        return getattr(s.primitive, pk) if pk else None
    if kind == "blob":
        return {"path": s.blob.uri}
    if kind == "binary":
        return s.binary.value
    if kind == "generic":
        return json_format.MessageToDict(s.generic)
    if kind == "union":
        return value_of(s.union.value)
    return None


def value_of(lit: pl.Literal) -> Any:
    """A plait literal as the document flytekit's msgpack encoding would hold."""
    kind = lit.WhichOneof("value")
    if kind == "collection":
        return [value_of(x) for x in lit.collection.literals]
    if kind == "map":
        return {k: value_of(v) for k, v in lit.map.literals.items()}
    if kind == "record":
        return {f.name: value_of(f.value) for f in lit.record.fields}
    if kind == "scalar":
        return _scalar_value(lit.scalar)
    raise ValueError(f"a {kind or 'empty'} literal cannot be part of a dataclass document")
