"""Canonical hashing of protobuf messages, for the cache key and for offloaded literals.

Raw protobuf bytes are not canonical: map entries may be written in any order, and two
libraries may encode the same value differently. So the canonical form here is produced by
walking the message through its descriptor, in a byte format that is injective by
construction:

- a message is `{` then its present fields in field-number order then `}`;
- a field is `F`, its number (uint32 big-endian) and a one-byte kind, then its value;
- integers are 8 bytes big-endian (signed or unsigned per the field type), booleans 1 byte,
  floating point values 8-byte IEEE-754 big-endian doubles with -0.0 written as 0.0 and every
  NaN written as one canonical NaN;
- strings (UTF-8) and bytes are a uint64 length and the bytes;
- repeated fields are a uint64 count and the elements in order; maps are a uint64 count and
  the entries sorted by key.

"Present" is protobuf's own notion (`ListFields`): proto3 scalars at their default value are
absent, while oneof members and `optional` fields are present once set, even at default; so
`Primitive(integer=0)` and an empty `Primitive` differ, as they mean different things.
Unknown fields are ignored.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Callable, Collection, Iterable
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from plaitidl.core.v1 import interface_pb2, literals_pb2

__all__ = ["canonical_bytes", "interface_signature", "literal_hash", "literal_map_hash"]

_Out = bytearray
_Encoder = Callable[[Any, _Out], None]

_I64 = struct.Struct(">q")
_U64 = struct.Struct(">Q")
_F64 = struct.Struct(">d")
_CANONICAL_NAN = _F64.pack(float("nan"))
_BEGIN = b"{"
_END = b"}"
_VERSION = b"plait-canonical-v1\x00"

_SIGNED = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_SFIXED32,
        FieldDescriptor.TYPE_SFIXED64,
        FieldDescriptor.TYPE_ENUM,
    }
)
_UNSIGNED = frozenset(
    {
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_FIXED64,
    }
)
_FLOATING = frozenset({FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT})


def _enc_signed(v: int, out: _Out) -> None:
    out += _I64.pack(v)


def _enc_unsigned(v: int, out: _Out) -> None:
    out += _U64.pack(v)


def _enc_bool(v: bool, out: _Out) -> None:
    out += b"\x01" if v else b"\x00"


def _enc_float(v: float, out: _Out) -> None:
    if math.isnan(v):  # one canonical bit pattern, whatever payload the NaN came with
        out += _CANONICAL_NAN
    else:
        out += _F64.pack(v + 0.0)  # -0.0 + 0.0 == 0.0


def _enc_str(v: str, out: _Out) -> None:
    b = v.encode("utf-8")
    out += _U64.pack(len(b))
    out += b


def _enc_bytes(v: bytes, out: _Out) -> None:
    out += _U64.pack(len(v))
    out += v


def _enc_message(msg: Message, out: _Out) -> None:
    out += _BEGIN
    # ListFields returns present fields sorted by field number (a documented guarantee).
    for fd, value in msg.ListFields():
        enc = _FIELD_ENCODERS.get(fd)
        if enc is None:
            enc = _field_encoder(fd)
        enc(value, out)
    out += _END


def _header(fd: FieldDescriptor, kind: bytes) -> bytes:
    return b"F" + struct.pack(">I", fd.number) + kind


def _value_encoder(fd: FieldDescriptor) -> tuple[str, _Encoder]:
    t = fd.type
    if t in _SIGNED:
        return "i", _enc_signed
    if t in _UNSIGNED:
        return "u", _enc_unsigned
    if t == FieldDescriptor.TYPE_BOOL:
        return "b", _enc_bool
    if t in _FLOATING:
        return "d", _enc_float
    if t == FieldDescriptor.TYPE_STRING:
        return "s", _enc_str
    if t == FieldDescriptor.TYPE_BYTES:
        return "y", _enc_bytes
    if t in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP):
        mt = fd.message_type
        if mt is not None and mt.full_name == _LITERAL_NAME:
            return "m", _enc_literal
        return "m", _enc_message
    raise TypeError(f"unsupported field type {t} for {fd.full_name}")


def _is_map(fd: FieldDescriptor) -> bool:
    mt: Descriptor | None = fd.message_type
    return bool(fd.is_repeated and mt is not None and mt.GetOptions().map_entry)


def _encode_map_entries(
    mapping: Any,
    keys: Iterable[Any],
    out: _Out,
    *,
    header: bytes,
    key_enc: _Encoder,
    value_enc: _Encoder,
) -> None:
    ordered = sorted(keys)
    if not ordered:
        return  # an empty map is absent, as ListFields would have it
    out += header
    out += _U64.pack(len(ordered))
    for k in ordered:
        key_enc(k, out)
        value_enc(mapping[k], out)


def _field_encoder(fd: FieldDescriptor) -> _Encoder:
    # Filled lazily, one entry per field descriptor ever seen: the set is bounded by the schema.
    entry = fd.message_type
    if _is_map(fd) and entry is not None:
        _, key_enc = _value_encoder(entry.fields_by_name["key"])
        _, value_enc = _value_encoder(entry.fields_by_name["value"])
        header = _header(fd, b"p")

        def enc(value: Any, out: _Out) -> None:
            _encode_map_entries(
                value, value, out, header=header, key_enc=key_enc, value_enc=value_enc
            )

    elif fd.is_repeated:
        kind, elem_enc = _value_encoder(fd)
        header = _header(fd, b"r" + kind.encode())

        def enc(value: Any, out: _Out) -> None:
            out += header
            out += _U64.pack(len(value))
            for x in value:
                elem_enc(x, out)

    else:
        kind, value_enc = _value_encoder(fd)
        header = _header(fd, kind.encode())

        def enc(value: Any, out: _Out) -> None:
            out += header
            value_enc(value, out)

    _FIELD_ENCODERS[fd] = enc
    return enc


_FIELD_ENCODERS: dict[FieldDescriptor, _Encoder] = {}


# Fast path for the literals that dominate cache keys (scalars, lists and maps of them). It
# writes exactly the bytes the generic walk would, which the tests check; anything else falls
# back to the generic walk.
_LITERAL_NAME = literals_pb2.Literal.DESCRIPTOR.full_name
_LIT_F = literals_pb2.Literal.DESCRIPTOR.fields_by_name
_SCALAR_F = literals_pb2.Scalar.DESCRIPTOR.fields_by_name
_PRIM_F = literals_pb2.Primitive.DESCRIPTOR.fields_by_name
_PRIMITIVE_PREFIX = (
    _BEGIN
    + _header(_LIT_F["scalar"], b"m")
    + _BEGIN
    + _header(_SCALAR_F["primitive"], b"m")
    + _BEGIN
)
_INT_PREFIX = _PRIMITIVE_PREFIX + _header(_PRIM_F["integer"], b"i")
_FLOAT_PREFIX = _PRIMITIVE_PREFIX + _header(_PRIM_F["float_value"], b"d")
_STR_PREFIX = _PRIMITIVE_PREFIX + _header(_PRIM_F["string_value"], b"s")
_BOOL_PREFIX = _PRIMITIVE_PREFIX + _header(_PRIM_F["boolean"], b"b")
_PRIMITIVE_SUFFIX = _END * 3
_COLLECTION_PREFIX = (
    _BEGIN
    + _header(_LIT_F["collection"], b"m")
    + _BEGIN
    + _header(literals_pb2.LiteralCollection.DESCRIPTOR.fields_by_name["literals"], b"rm")
)


def _enc_literal(lit: literals_pb2.Literal, out: _Out) -> None:
    kind = lit.WhichOneof("value")
    if kind == "scalar":
        s = lit.scalar
        if s.WhichOneof("value") == "primitive":
            p = s.primitive
            pk = p.WhichOneof("value")
            if pk == "integer":
                out += _INT_PREFIX
                out += _I64.pack(p.integer)
                out += _PRIMITIVE_SUFFIX
                return
            if pk == "string_value":
                out += _STR_PREFIX
                _enc_str(p.string_value, out)
                out += _PRIMITIVE_SUFFIX
                return
            if pk == "float_value":
                out += _FLOAT_PREFIX
                _enc_float(p.float_value, out)
                out += _PRIMITIVE_SUFFIX
                return
            if pk == "boolean":
                out += _BOOL_PREFIX
                out += b"\x01" if p.boolean else b"\x00"
                out += _PRIMITIVE_SUFFIX
                return
    elif kind == "collection":
        items = lit.collection.literals
        if items:
            out += _COLLECTION_PREFIX
            out += _U64.pack(len(items))
            for x in items:
                _enc_literal(x, out)
            out += _END * 2
            return
    _enc_message(lit, out)


def _root(descriptor: Any) -> _Out:
    out = bytearray(_VERSION)
    _enc_str(descriptor.full_name, out)
    return out


def canonical_bytes(message: Message) -> bytes:
    """Return the canonical encoding of a message.

    Equal messages (by value, whatever the map insertion order or the library that encoded
    them) give equal bytes; different messages give different bytes. The message's full type
    name is part of the encoding, so messages of different types never collide.
    """
    out = _root(message.DESCRIPTOR)
    if isinstance(message, literals_pb2.Literal):
        _enc_literal(message, out)
    else:
        _enc_message(message, out)
    return bytes(out)


def literal_hash(lit: literals_pb2.Literal) -> str:
    """Return the lowercase hex SHA-256 of a literal's canonical encoding."""
    out = _root(lit.DESCRIPTOR)
    _enc_literal(lit, out)
    return hashlib.sha256(out).hexdigest()


_LITERAL_MAP_FIELD = literals_pb2.LiteralMap.DESCRIPTOR.fields_by_name["literals"]
_LITERAL_MAP_HEADER = _header(_LITERAL_MAP_FIELD, b"p")


def literal_map_hash(m: literals_pb2.LiteralMap, ignore: Collection[str] = ()) -> str:
    """Return the lowercase hex SHA-256 of a LiteralMap's canonical encoding.

    Args:
        m: the map, typically a node's resolved inputs.
        ignore: keys to leave out (inputs a task declared as not part of its cache key). The
            result equals the hash of the same map without those entries.
    """
    entries = m.literals
    keys: Iterable[str] = entries
    if ignore:
        keys = [k for k in entries if k not in ignore]
    out = _root(m.DESCRIPTOR)
    out += _BEGIN
    _encode_map_entries(
        entries, keys, out, header=_LITERAL_MAP_HEADER, key_enc=_enc_str, value_enc=_enc_literal
    )
    out += _END
    return hashlib.sha256(out).hexdigest()


_SIGNATURE_DOMAIN = b"plait-interface-signature-v1\x00"


def interface_signature(iface: interface_pb2.TypedInterface) -> str:
    """Return the lowercase hex SHA-256 of an interface's names and types.

    Descriptions are left out: rewording a docstring must not invalidate a cache. Variables
    are taken sorted by name, because cached inputs and outputs are maps keyed by name, so
    declaring the same variables in another order leaves every cached value valid.
    """
    out = bytearray(_SIGNATURE_DOMAIN)
    for vm in (iface.inputs, iface.outputs):
        variables = sorted(vm.variables, key=lambda v: v.name)
        out += _U64.pack(len(variables))
        for v in variables:
            _enc_str(v.name, out)
            _enc_message(v.type, out)
    return hashlib.sha256(out).hexdigest()
