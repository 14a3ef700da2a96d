"""Literals and bindings: flyteidl ⇄ plaitidl.

Conversion towards plait is led by the plait type where one is known, which is how a msgpack
``Binary`` (or a JSON ``Struct``) becomes a typed record. Conversion towards Flyte needs no
type: records become msgpack ``Binary`` values, which flytekit reads for every dataclass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from urllib.parse import unquote, urlparse

import msgpack
from flyteidl.core import literals_pb2 as fl
from flyteidl.core import types_pb2 as ft
from google.protobuf import json_format
from plaitidl.core.v1 import literals_pb2 as pl
from plaitidl.core.v1 import types_pb2 as pt

from plait.flyte._context import Context, check_fields
from plait.flyte._types import _DIM, _DIM_BACK, type_to_flyte, type_to_plait
from plait.flyte._values import value_of, value_to_plait

START_NODE = "start-node"
MSGPACK = "msgpack"
_SCALAR_REFUSED = {
    "schema": "FlyteSchema values have no plait equivalent",
    "structured_dataset": "structured datasets have no plait equivalent",
    "error": "error values (a failure node's input) have no plait equivalent",
}
_LITERAL_NOTICES = {
    "hash": "a literal's own cache hash is ignored: plait caches by the value's content",
    "metadata": "literal metadata (artifact partitions) is not kept",
}


def _structured(t: pt.LiteralType | None) -> pt.LiteralType | None:
    """The record or struct type a document should be read as, looking through a union."""
    if t is None:
        return None
    kind = t.WhichOneof("type")
    if kind == "record_type" or (kind == "simple" and t.simple == pt.SIMPLE_TYPE_STRUCT):
        return t
    if kind == "union_type":
        found = (_structured(v) for v in t.union_type.variants)
        return next((v for v in found if v is not None), None)
    return None


def _document(doc: object, t: pt.LiteralType | None, ctx: Context, path: str) -> pl.Literal | None:
    target = _structured(t)
    if target is None:
        return None
    return value_to_plait(doc, target, ctx, path)


def copy_primitive(src: fl.Primitive | pl.Primitive, dst: fl.Primitive | pl.Primitive) -> None:
    """Copy a primitive field by field (the two messages are never read as one another)."""
    kind = src.WhichOneof("value")
    if kind in ("datetime", "duration"):
        getattr(dst, kind).CopyFrom(getattr(src, kind))
    elif kind is not None:
        setattr(dst, kind, getattr(src, kind))


def _msgpack_document(
    b: fl.Binary, t: pt.LiteralType | None, ctx: Context, path: str
) -> pl.Literal | None:
    if b.tag != MSGPACK or _structured(t) is None:
        return None
    try:
        doc = msgpack.unpackb(b.value)
    except (ValueError, msgpack.UnpackException) as exc:
        ctx.refuse(f"{path}.scalar.binary", f"the msgpack value does not decode: {exc}")
        return pl.Literal()
    return _document(doc, t, ctx, path)


def _scalar_to_plait(s: fl.Scalar, t: pt.LiteralType | None, ctx: Context, path: str) -> pl.Literal:
    out = pl.Literal()
    kind = s.WhichOneof("value")
    if kind == "primitive":
        copy_primitive(s.primitive, out.scalar.primitive)
    elif kind == "blob":
        out.scalar.blob.uri = s.blob.uri
        out.scalar.blob.type.format = s.blob.metadata.type.format
        out.scalar.blob.type.dimensionality = _DIM.get(
            s.blob.metadata.type.dimensionality, pt.BlobType.BLOB_DIMENSIONALITY_UNSPECIFIED
        )
    elif kind == "binary":
        found = _msgpack_document(s.binary, t, ctx, path)
        if found is not None:
            return found
        out.scalar.binary.value = s.binary.value
        out.scalar.binary.tag = s.binary.tag
    elif kind == "generic":
        found = _document(json_format.MessageToDict(s.generic), t, ctx, path)
        if found is not None:
            return found
        out.scalar.generic.CopyFrom(s.generic)
    elif kind == "none_type":
        out.scalar.none_value.SetInParent()
    elif kind == "union":
        variant = type_to_plait(s.union.type, ctx, f"{path}.union.type")
        out.scalar.union.type.CopyFrom(variant)
        out.scalar.union.value.CopyFrom(
            literal_to_plait(s.union.value, variant, ctx, f"{path}.union.value")
        )
    elif kind in _SCALAR_REFUSED:
        ctx.refuse(f"{path}.scalar.{kind}", _SCALAR_REFUSED[kind])
    else:
        ctx.refuse(f"{path}.scalar", "the scalar has no value")
    return out


def _element(t: pt.LiteralType | None, kind: str) -> pt.LiteralType | None:
    if t is not None and t.WhichOneof("type") == kind:
        return getattr(t, kind)  # type: ignore[no-any-return]
    return None


def literal_to_plait(
    lit: fl.Literal, t: pt.LiteralType | None, ctx: Context, path: str
) -> pl.Literal:
    """A Flyte literal as a plait one, read as type `t` when it is known."""
    check_fields(
        ctx,
        lit,
        path,
        {"scalar", "collection", "map", "offloaded_metadata"},
        notices=_LITERAL_NOTICES,
    )
    kind = lit.WhichOneof("value")
    if kind == "scalar":
        return _scalar_to_plait(lit.scalar, t, ctx, path)
    out = pl.Literal()
    if kind == "collection":
        elem = _element(t, "collection_type")
        out.collection.SetInParent()
        for i, x in enumerate(lit.collection.literals):
            out.collection.literals.append(literal_to_plait(x, elem, ctx, f"{path}[{i}]"))
    elif kind == "map":
        val = _element(t, "map_value_type")
        out.map.SetInParent()
        for k in sorted(lit.map.literals):
            out.map.literals[k].CopyFrom(
                literal_to_plait(lit.map.literals[k], val, ctx, f"{path}[{k!r}]")
            )
    elif kind == "offloaded_metadata":
        ctx.refuse(
            f"{path}.offloaded_metadata",
            "offloaded literals are not read (plait never sets _F_L_MIN_SIZE_MB)",
        )
    else:
        ctx.refuse(path, "the literal has no value")
    return out


def literal_map_to_plait(
    lm: fl.LiteralMap, types: Mapping[str, pt.LiteralType] | None, ctx: Context, path: str
) -> pl.LiteralMap:
    """A Flyte literal map as a plait one, each value read as its declared type."""
    out = pl.LiteralMap()
    for k in sorted(lm.literals):
        t = None if types is None else types.get(k)
        out.literals[k].CopyFrom(literal_to_plait(lm.literals[k], t, ctx, f"{path}.{k}"))
    return out


# -- towards Flyte ------------------------------------------------------------------------------

OffloadReader = Callable[[str], bytes]


def read_local_uri(uri: str) -> bytes:
    """The bytes of a ``file://`` URI or a local path (where the engine offloads values)."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        raise ValueError(f"cannot read offloaded value {uri!r}: not a local file")
    return Path(unquote(parsed.path)).read_bytes()


def _scalar_to_flyte(s: pl.Scalar, read: OffloadReader, path: str) -> fl.Literal:
    out = fl.Literal()
    kind = s.WhichOneof("value")
    if kind == "primitive":
        copy_primitive(s.primitive, out.scalar.primitive)
    elif kind == "blob":
        out.scalar.blob.uri = s.blob.uri
        out.scalar.blob.metadata.type.format = s.blob.type.format
        out.scalar.blob.metadata.type.dimensionality = _DIM_BACK.get(
            s.blob.type.dimensionality, ft.BlobType.SINGLE
        )
    elif kind == "binary":
        out.scalar.binary.value = s.binary.value
        out.scalar.binary.tag = s.binary.tag
    elif kind == "none_value":
        out.scalar.none_type.SetInParent()
    elif kind == "generic":
        out.scalar.generic.CopyFrom(s.generic)
    elif kind == "union":
        # flytekit picks a union's variant by the stored type's tag, and tries every variant
        # on an untagged value. The engine may wrap a value in its whole union type (an array
        # node's tolerated failures): such a wrapper, or an untagged one, is passed bare.
        if not s.union.type.tag or s.union.type.HasField("union_type"):
            return literal_to_flyte(s.union.value, read, path)
        out.scalar.union.type.CopyFrom(type_to_flyte(s.union.type))
        out.scalar.union.value.CopyFrom(literal_to_flyte(s.union.value, read, f"{path}.union"))
    else:
        raise ValueError(f"{path}: the scalar has no value")
    return out


def literal_to_flyte(
    lit: pl.Literal, read: OffloadReader = read_local_uri, path: str = "value"
) -> fl.Literal:
    """A plait literal as a Flyte one; offloaded values are fetched with `read`.

    Raises:
        ValueError: The literal is empty, or an offloaded value cannot be read.
    """
    kind = lit.WhichOneof("value")
    if kind == "scalar":
        return _scalar_to_flyte(lit.scalar, read, path)
    out = fl.Literal()
    if kind == "collection":
        out.collection.SetInParent()
        for i, x in enumerate(lit.collection.literals):
            out.collection.literals.append(literal_to_flyte(x, read, f"{path}[{i}]"))
    elif kind == "map":
        out.map.SetInParent()
        for k, v in lit.map.literals.items():
            out.map.literals[k].CopyFrom(literal_to_flyte(v, read, f"{path}[{k!r}]"))
    elif kind == "record":
        doc = value_of(lit)
        out.scalar.binary.value = msgpack.packb(doc)
        out.scalar.binary.tag = MSGPACK
    elif kind == "offloaded":
        inner = pl.Literal.FromString(read(lit.offloaded.uri))
        return literal_to_flyte(inner, read, path)
    else:
        raise ValueError(f"{path}: the literal has no value")
    return out


def literal_map_to_flyte(lm: pl.LiteralMap, read: OffloadReader = read_local_uri) -> fl.LiteralMap:
    """A plait literal map as a Flyte one."""
    out = fl.LiteralMap()
    for k, v in lm.literals.items():
        out.literals[k].CopyFrom(literal_to_flyte(v, read, k))
    return out


# -- bindings ----------------------------------------------------------------------------------


def _promise(ref: ft.OutputReference, ctx: Context, path: str) -> pl.OutputReference:
    # flytekit writes the workflow's own inputs with an empty node id.
    out = pl.OutputReference(node_id=ref.node_id or START_NODE, var=ref.var)
    for i, step in enumerate(ref.attr_path):
        kind = step.WhichOneof("value")
        if kind == "string_value":
            out.attr_path.add(name=step.string_value)
        elif kind == "int_value":
            out.attr_path.add(index=step.int_value)
        else:
            ctx.refuse(f"{path}.attr_path[{i}]", "the attribute step has no value")
    return out


def binding_to_plait(
    b: fl.BindingData, t: pt.LiteralType | None, ctx: Context, path: str
) -> pl.BindingData:
    """A Flyte binding as a plait one; constants are read as type `t` when known."""
    out = pl.BindingData()
    kind = b.WhichOneof("value")
    if kind == "scalar":
        out.literal.CopyFrom(literal_to_plait(fl.Literal(scalar=b.scalar), t, ctx, path))
    elif kind == "collection":
        elem = _element(t, "collection_type")
        out.collection.SetInParent()
        for i, x in enumerate(b.collection.bindings):
            out.collection.bindings.append(binding_to_plait(x, elem, ctx, f"{path}[{i}]"))
    elif kind == "map":
        val = _element(t, "map_value_type")
        out.map.SetInParent()
        for k in sorted(b.map.bindings):
            out.map.bindings[k].CopyFrom(
                binding_to_plait(b.map.bindings[k], val, ctx, f"{path}[{k!r}]")
            )
    elif kind == "promise":
        out.promise.CopyFrom(_promise(b.promise, ctx, f"{path}.promise"))
    elif kind == "offloaded_metadata":
        ctx.refuse(f"{path}.offloaded_metadata", "offloaded binding values are not read")
    else:
        ctx.refuse(path, "the binding has no value")
    if b.HasField("union"):
        out.union_variant.CopyFrom(type_to_plait(b.union.targetType, ctx, f"{path}.union"))
    return out


def bindings_to_plait(
    bindings: Iterable[fl.Binding],
    types: Mapping[str, pt.LiteralType],
    ctx: Context,
    path: str,
) -> list[pl.Binding]:
    """Flyte bindings (in their order) as plait ones, constants read as `types[var]`."""
    out: list[pl.Binding] = []
    for b in bindings:
        out.append(
            pl.Binding(
                var=b.var,
                binding=binding_to_plait(b.binding, types.get(b.var), ctx, f"{path}.{b.var}"),
            )
        )
    return out
