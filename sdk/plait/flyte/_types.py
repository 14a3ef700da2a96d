"""Types and interfaces: flyteidl ⇄ plaitidl.

The two enums differ (plait's start at ``UNSPECIFIED = 0``), so every value is mapped by name,
never copied by number. A Flyte dataclass (``STRUCT`` with ``structure.dataclass_type``) becomes
a plait record; its fields come in the order of the JSON schema's ``required`` list (the
declaration order of fields without defaults), then by name. Flyte's variable maps have no
order, so interfaces are ordered naturally by name (``o2`` before ``o10``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from flyteidl.core import interface_pb2 as fi
from flyteidl.core import types_pb2 as ft
from google.protobuf import json_format
from plaitidl.core.v1 import interface_pb2 as pi
from plaitidl.core.v1 import types_pb2 as pt

from plait.flyte._context import Context, check_fields

_SIMPLE = {
    ft.NONE: pt.SIMPLE_TYPE_NONE,
    ft.INTEGER: pt.SIMPLE_TYPE_INTEGER,
    ft.FLOAT: pt.SIMPLE_TYPE_FLOAT,
    ft.STRING: pt.SIMPLE_TYPE_STRING,
    ft.BOOLEAN: pt.SIMPLE_TYPE_BOOLEAN,
    ft.DATETIME: pt.SIMPLE_TYPE_DATETIME,
    ft.DURATION: pt.SIMPLE_TYPE_DURATION,
    ft.BINARY: pt.SIMPLE_TYPE_BINARY,
    ft.STRUCT: pt.SIMPLE_TYPE_STRUCT,
}
_SIMPLE_BACK = {v: k for k, v in _SIMPLE.items()}
_DIM = {
    ft.BlobType.SINGLE: pt.BlobType.BLOB_DIMENSIONALITY_SINGLE,
    ft.BlobType.MULTIPART: pt.BlobType.BLOB_DIMENSIONALITY_MULTIPART,
}
_DIM_BACK = {v: k for k, v in _DIM.items()}
# flytekit marks msgpack-encoded values so that Flyte's cache keys tell them from JSON ones;
# plait hashes the decoded record, so the mark changes nothing here.
MSGPACK_ANNOTATION = {"cache-key-metadata": {"serialization-format": "msgpack"}}
_REFUSED_KINDS = {
    "schema": "FlyteSchema has no plait equivalent (use a FlyteFile or a dataclass)",
    "structured_dataset_type": "structured datasets have no plait equivalent (use a FlyteFile)",
}


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that puts ``o2`` before ``o10``."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name) if p)


def natural(names: Iterable[str]) -> list[str]:
    """Names in natural order."""
    return sorted(names, key=natural_key)


def _field_order(t: ft.LiteralType) -> list[str]:
    names = set(t.structure.dataclass_type)
    schema = json_format.MessageToDict(t.metadata) if t.HasField("metadata") else {}
    required = [n for n in schema.get("required", []) if isinstance(n, str) and n in names]
    ordered = list(dict.fromkeys(required))
    return ordered + sorted(names - set(ordered))


def _record(t: ft.LiteralType, ctx: Context, path: str) -> pt.LiteralType:
    out = pt.LiteralType()
    rec = out.record_type
    if t.HasField("metadata"):
        title = json_format.MessageToDict(t.metadata).get("title")
        rec.name = title if isinstance(title, str) else ""
    rec.SetInParent()
    for name in _field_order(t):
        f = rec.fields.add(name=name)
        f.type.CopyFrom(
            type_to_plait(t.structure.dataclass_type[name], ctx, f"{path}.structure[{name}]")
        )
    return out


def _plain(t: ft.LiteralType, kind: str | None, ctx: Context, path: str) -> pt.LiteralType:
    out = pt.LiteralType()
    if kind == "simple":
        if t.simple in _SIMPLE:
            out.simple = _SIMPLE[t.simple]
        else:
            ctx.refuse(
                f"{path}.simple", "ERROR (a failure node's input type) has no plait equivalent"
            )
    elif kind == "collection_type":
        out.collection_type.CopyFrom(
            type_to_plait(t.collection_type, ctx, f"{path}.collection_type")
        )
    elif kind == "map_value_type":
        out.map_value_type.CopyFrom(type_to_plait(t.map_value_type, ctx, f"{path}.map_value_type"))
    elif kind == "blob":
        out.blob.format = t.blob.format
        dim = _DIM.get(t.blob.dimensionality)
        if dim is None:
            ctx.refuse(f"{path}.blob.dimensionality", f"unknown value {t.blob.dimensionality}")
        else:
            out.blob.dimensionality = dim
    elif kind == "enum_type":
        out.enum_type.values.extend(t.enum_type.values)
    elif kind == "union_type":
        out.union_type.SetInParent()
        for i, v in enumerate(t.union_type.variants):
            out.union_type.variants.add().CopyFrom(
                type_to_plait(v, ctx, f"{path}.union_type.variants[{i}]")
            )
    elif kind in _REFUSED_KINDS:
        ctx.refuse(f"{path}.{kind}", _REFUSED_KINDS[kind])
    else:
        ctx.refuse(path, "the type has none of its oneof `type` set")
    return out


def type_to_plait(t: ft.LiteralType, ctx: Context, path: str) -> pt.LiteralType:
    """A Flyte `LiteralType` as a plait one; refused parts are recorded in `ctx`."""
    kind = t.WhichOneof("type")
    is_record = kind == "simple" and t.simple == ft.STRUCT and len(t.structure.dataclass_type) > 0
    out = _record(t, ctx, path) if is_record else _plain(t, kind, ctx, path)
    if t.structure.tag:
        out.tag = t.structure.tag
    _check_type_extras(t, ctx, path, is_record)
    return out


def _check_type_extras(t: ft.LiteralType, ctx: Context, path: str, is_record: bool) -> None:
    handled = {"simple", "collection_type", "map_value_type", "blob", "enum_type", "union_type"}
    handled |= set(_REFUSED_KINDS) | {"structure"}
    if is_record:
        handled.add("metadata")  # the JSON schema: a title and the field order, both kept
    if t.HasField("annotation"):
        if json_format.MessageToDict(t.annotation.annotations) == MSGPACK_ANNOTATION:
            handled.add("annotation")
        else:
            ctx.refuse(f"{path}.annotation", "type annotations have no plait equivalent")
            handled.add("annotation")
    if t.structure.dataclass_type and not is_record:
        ctx.refuse(f"{path}.structure.dataclass_type", "dataclass fields on a non-struct type")
    check_fields(
        ctx,
        t,
        path,
        handled,
        refusals={"metadata": "type metadata (a JSON schema) is kept only for dataclasses"},
    )


def type_to_flyte(t: pt.LiteralType) -> ft.LiteralType:
    """A plait `LiteralType` as a Flyte one (records become msgpack dataclass structs).

    Used where a Flyte literal carries its type (a union's stored variant); the JSON schema of
    a record is not rebuilt, only its fields and the union tag flytekit matches on.
    """
    out = ft.LiteralType()
    kind = t.WhichOneof("type")
    if kind == "simple":
        out.simple = _SIMPLE_BACK.get(t.simple, ft.NONE)
    elif kind == "collection_type":
        out.collection_type.CopyFrom(type_to_flyte(t.collection_type))
    elif kind == "map_value_type":
        out.map_value_type.CopyFrom(type_to_flyte(t.map_value_type))
    elif kind == "blob":
        out.blob.format = t.blob.format
        out.blob.dimensionality = _DIM_BACK.get(t.blob.dimensionality, ft.BlobType.SINGLE)
    elif kind == "enum_type":
        out.enum_type.values.extend(t.enum_type.values)
    elif kind == "union_type":
        out.union_type.variants.extend(type_to_flyte(v) for v in t.union_type.variants)
    elif kind == "record_type":
        out.simple = ft.STRUCT
        out.annotation.annotations.update(MSGPACK_ANNOTATION)
        for f in t.record_type.fields:
            out.structure.dataclass_type[f.name].CopyFrom(type_to_flyte(f.type))
    if t.tag:
        out.structure.tag = t.tag
    return out


def variable_to_plait(name: str, v: fi.Variable, ctx: Context, path: str) -> pi.Variable:
    """One Flyte interface variable."""
    out = pi.Variable(name=name, description=v.description)
    out.type.CopyFrom(type_to_plait(v.type, ctx, f"{path}.type"))
    check_fields(
        ctx,
        v,
        path,
        {"type", "description"},
        refusals={
            "artifact_partial_id": "artifacts have no plait equivalent",
            "artifact_tag": "artifacts have no plait equivalent",
        },
    )
    return out


def variables_to_plait(vm: fi.VariableMap, ctx: Context, path: str) -> pi.VariableMap:
    """A Flyte variable map (no order) as a plait one, in natural name order."""
    out = pi.VariableMap()
    out.SetInParent()
    for name in natural(vm.variables):
        out.variables.append(
            variable_to_plait(name, vm.variables[name], ctx, f"{path}.variables[{name}]")
        )
    return out


def interface_to_plait(iface: fi.TypedInterface, ctx: Context, path: str) -> pi.TypedInterface:
    """A Flyte typed interface as a plait one."""
    out = pi.TypedInterface()
    out.inputs.CopyFrom(variables_to_plait(iface.inputs, ctx, f"{path}.inputs"))
    out.outputs.CopyFrom(variables_to_plait(iface.outputs, ctx, f"{path}.outputs"))
    return out


def types_of(vm: pi.VariableMap) -> dict[str, pt.LiteralType]:
    """The variables of a plait map by name."""
    return {v.name: v.type for v in vm.variables}
