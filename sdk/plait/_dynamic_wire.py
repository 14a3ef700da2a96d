"""A dynamic body's nodes, written straight in protobuf's wire format.

A dynamic body of a million calls used to build a million `Node` messages field by field,
which costs ~20 µs each through the Python protobuf API. Here the parts of a node that are the
same for every call of an entity (its display name and target) are serialized once, and each
call appends only its id and its bindings, encoded by hand for the common values: scalars whose
Python type is exactly the input's hint, and promises of the same body whose type is exactly
the input's type. The spec is parsed once at the end (`DynamicJobSpec.FromString`, in C). Any
other value (unions, containers, files, conversions such as an int for a float) takes the
general path, which serializes the `Node` it builds; both parse to the same message (the tests
compare them).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from plaitidl.core.v1 import types_pb2, workflow_pb2

if TYPE_CHECKING:
    from plait._context import Builder, Entity
    from plait._interface import PyInterface
    from plait._promise import Promise

# `plait._promise` sits above this module (it calls it), so the promise class comes in as an
# argument rather than an import.
PromiseType = type

_SMALL = [bytes([i]) for i in range(128)]
_INT64 = (-(1 << 63), (1 << 63) - 1)
_PACK_DOUBLE = struct.Struct("<d").pack


def varint(n: int) -> bytes:
    """`n` (>= 0) as a protobuf varint."""
    if n < 128:
        return _SMALL[n]
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(key: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its key, the payload's length, the payload."""
    n = len(payload)
    return key + (_SMALL[n] if n < 128 else varint(n)) + payload


def _nested(prim: bytes) -> bytes:
    """BindingData.literal (1) -> Literal.scalar (1) -> Scalar.primitive (1) -> `prim`."""
    n = len(prim)
    if n < 123:  # every length fits one byte
        return bytes((0x0A, n + 4, 0x0A, n + 2, 0x0A, n)) + prim
    return field(b"\x0a", field(b"\x0a", field(b"\x0a", prim)))


def scalar_binding(value: object, hint: object) -> bytes | None:
    """A serialized `BindingData` holding a scalar whose type is exactly its hint as a
    literal, or None (general path)."""
    kind = type(value)
    if kind is not hint:
        return None
    v: Any = value
    if kind is int:
        if not _INT64[0] <= v <= _INT64[1]:
            return None  # the general path says why
        return _nested(b"\x08" + varint(v & 0xFFFFFFFFFFFFFFFF))
    if kind is str:
        try:
            return _nested(field(b"\x1a", v.encode()))
        except UnicodeEncodeError:
            return None
    if kind is float:
        return _nested(b"\x11" + _PACK_DOUBLE(v))
    if kind is bool:
        return _nested(b"\x20\x01" if v else b"\x20\x00")
    return None


def promise_binding(p: Promise) -> bytes:
    """A serialized `BindingData` holding a promise (no union variant)."""
    ref = field(b"\x0a", p._node_id.encode()) + field(b"\x12", p._var.encode())
    for step in p._path:
        if isinstance(step, int):
            ref += field(b"\x1a", b"\x10" + varint(step & 0xFFFFFFFFFFFFFFFF))
        else:
            ref += field(b"\x1a", field(b"\x0a", step.encode()))
    return field(b"\x22", ref)


class _Types:
    """Whether a promise's type is exactly a slot's type; cached for the types of interfaces
    (long-lived objects: the cache keeps them, so their ids stay theirs)."""

    def __init__(self) -> None:
        self._same: dict[tuple[int, int], tuple[Any, Any, bool]] = {}

    def same(self, a: types_pb2.LiteralType, b: types_pb2.LiteralType, cache: bool) -> bool:
        if a is b:
            return True
        key = (id(a), id(b))
        hit = self._same.get(key)
        if hit is not None:
            return hit[2]
        equal = a == b
        if cache:
            self._same[key] = (a, b, equal)
        return equal


_TYPES = _Types()


def value_binding(
    value: object,
    hint: object,
    ltype: types_pb2.LiteralType,
    builder: Builder,
    promise: PromiseType,
) -> bytes | None:
    """`value` feeding a slot of type `ltype` (hint `hint`) as serialized `BindingData`, or
    None when it needs the general path (which also reports what is wrong)."""
    if type(value) is promise:
        p: Promise = value  # type: ignore[assignment]
        if p._builder is not builder or not _TYPES.same(p._type, ltype, not p._path):
            return None
        return promise_binding(p)
    return scalar_binding(value, hint)


def list_binding(
    values: list[Any], hint: object, builder: Builder, promise: PromiseType
) -> bytes | None:
    """A list of promises (or scalars) feeding a ``list[T]`` slot, or None."""
    import typing

    from plait import _types
    from plait._errors import PlaitError

    if typing.get_origin(hint) is not list:
        return None
    elem = typing.get_args(hint)[0]
    try:
        et = _ELEMENT_TYPES.get(elem)
        if et is None:
            et = _ELEMENT_TYPES[elem] = _types.literal_type(elem, where="list element")
    except (TypeError, PlaitError):  # an unhashable or unsupported hint: the general path
        return None
    parts = []
    promises = False
    for v in values:
        bd = value_binding(v, elem, et, builder, promise)
        if bd is None:
            return None
        promises = promises or bd[0] == 0x22
        parts.append(field(b"\x0a", bd))
    if not promises:  # a plain list is one literal, as the general path writes it
        return None
    # BindingData.collection (2) -> BindingDataCollection.bindings (1, repeated)
    return field(b"\x12", b"".join(parts))


_ELEMENT_TYPES: dict[object, types_pb2.LiteralType] = {}


class CallEncoder:
    """The wire form of calls of one entity in a dynamic body."""

    __slots__ = ("_const", "_iface", "_inputs", "_promise")

    def __init__(self, entity: Entity, promise: PromiseType) -> None:
        self._promise = promise
        iface = entity.python_interface
        scratch = workflow_pb2.Node()
        scratch.metadata.name = entity.short_name
        entity._set_node_target(scratch)
        self._const = scratch.SerializeToString()  # metadata (2) and target (5..8)
        self._iface = iface
        self._inputs = [
            (name, hint, iface.input_types[name], field(b"\x0a", name.encode()))
            for name, hint in iface.inputs.items()
        ]

    def encode(self, node_id: str, bound: dict[str, Any], builder: Builder) -> bytes | None:
        """The serialized `Node` of a call, or None when a value needs the general path."""
        parts = [field(b"\x0a", node_id.encode())]
        defaults = self._iface.defaults
        for name, hint, ltype, var in self._inputs:
            value = bound[name] if name in bound else defaults[name]
            bd = value_binding(value, hint, ltype, builder, self._promise)
            if bd is None:
                return None
            parts.append(field(b"\x1a", var + field(b"\x12", bd)))
        parts.append(self._const)
        return b"".join(parts)


_ENCODERS: dict[int, tuple[Any, CallEncoder]] = {}


def encoder(entity: Entity, promise: PromiseType) -> CallEncoder:
    """The encoder of an entity (kept with it, so its id stays its own)."""
    hit = _ENCODERS.get(id(entity))
    if hit is not None and hit[0] is entity:
        return hit[1]
    enc = CallEncoder(entity, promise)
    _ENCODERS[id(entity)] = (entity, enc)
    return enc


def output_binding(
    name: str, value: object, iface: PyInterface, builder: Builder, promise: PromiseType
) -> bytes | None:
    """A serialized `Binding` of an output of a dynamic body, or None (general path)."""
    hint = iface.outputs[name]
    if isinstance(value, tuple):  # several values for one output: the general path says so
        return None
    if isinstance(value, list):
        bd = list_binding(value, hint, builder, promise)
    else:
        bd = value_binding(value, hint, iface.output_types[name], builder, promise)
    if bd is None:
        return None
    return field(b"\x0a", name.encode()) + field(b"\x12", bd)
