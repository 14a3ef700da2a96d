"""Canonical hashing: equal values hash equal, different values differ, order never matters."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import math
import struct
from typing import Any

from google.protobuf import descriptor, struct_pb2
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st
from plait._types import literal_type, to_literal
from plait_engine.literals import (
    canonical_bytes,
    interface_signature,
    literal_hash,
    literal_map_hash,
)
from plaitidl.core.v1 import interface_pb2, literals_pb2, types_pb2

FD = descriptor.FieldDescriptor


@dataclasses.dataclass
class Pair:
    a: int
    b: str | None


# The inputs of an imaginary task: a small domain, so that equal draws are frequent.
HINTS: dict[str, object] = {
    "n": int,
    "f": float,
    "s": str | None,
    "flag": bool,
    "xs": list[int],
    "m": dict[str, int],
    "p": Pair,
    "doc": dict[str, Any],
    "when": dt.datetime,
}
SMALL: dict[str, st.SearchStrategy[Any]] = {
    "n": st.integers(-1, 1),
    "f": st.sampled_from([0.0, -0.0, 1.5, math.inf]),
    "s": st.sampled_from([None, "", "a"]),
    "flag": st.booleans(),
    "xs": st.lists(st.integers(0, 1), max_size=2),
    "m": st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 1), max_size=2),
    "p": st.builds(Pair, a=st.integers(0, 1), b=st.sampled_from([None, "x"])),
    "doc": st.dictionaries(
        st.sampled_from(["k", "l"]), st.sampled_from([None, 1, "1", 2.5]), max_size=2
    ),
    "when": st.sampled_from(
        [dt.datetime(2024, 1, 1, tzinfo=dt.UTC), dt.datetime(2024, 1, 1, 0, 0, 0, 1, dt.UTC)]
    ),
}
INPUTS = st.fixed_dictionaries({}, optional=SMALL)


def to_map(values: dict[str, Any], order: list[str] | None = None) -> literals_pb2.LiteralMap:
    m = literals_pb2.LiteralMap()
    for k in order or list(values):
        m.literals[k].CopyFrom(to_literal(values[k], HINTS[k], var=k))
    return m


def reference_bytes(message: Message) -> bytes:
    """The canonical form, written straight from the spec in the module docstring.

    Deliberately naive (no fast paths, no caches): `canonical_bytes` must agree with it.
    """

    def value(fd: FD, v: Any) -> bytes:
        if fd.type in (FD.TYPE_INT32, FD.TYPE_INT64, FD.TYPE_SINT32, FD.TYPE_SINT64):
            return struct.pack(">q", v)
        if fd.type in (FD.TYPE_SFIXED32, FD.TYPE_SFIXED64, FD.TYPE_ENUM):
            return struct.pack(">q", v)
        if fd.type in (FD.TYPE_UINT32, FD.TYPE_UINT64, FD.TYPE_FIXED32, FD.TYPE_FIXED64):
            return struct.pack(">Q", v)
        if fd.type == FD.TYPE_BOOL:
            return b"\x01" if v else b"\x00"
        if fd.type in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
            return struct.pack(">d", float("nan") if math.isnan(v) else (0.0 if v == 0 else v))
        if fd.type == FD.TYPE_STRING:
            b: bytes = v.encode()
            return struct.pack(">Q", len(b)) + b
        if fd.type == FD.TYPE_BYTES:
            return struct.pack(">Q", len(v)) + bytes(v)
        return msg(v)

    def msg(m: Message) -> bytes:
        out = b"{"
        for fd, v in sorted(m.ListFields(), key=lambda x: x[0].number):
            head = b"F" + struct.pack(">I", fd.number)
            mt = fd.message_type
            kind = {
                FD.TYPE_BOOL: b"b",
                FD.TYPE_DOUBLE: b"d",
                FD.TYPE_FLOAT: b"d",
                FD.TYPE_STRING: b"s",
                FD.TYPE_BYTES: b"y",
                FD.TYPE_MESSAGE: b"m",
            }.get(fd.type)
            if kind is None:
                unsigned = (FD.TYPE_UINT32, FD.TYPE_UINT64, FD.TYPE_FIXED32, FD.TYPE_FIXED64)
                kind = b"u" if fd.type in unsigned else b"i"
            if mt is not None and mt.GetOptions().map_entry:
                kf, vf = mt.fields_by_name["key"], mt.fields_by_name["value"]
                out += head + b"p" + struct.pack(">Q", len(v))
                for k in sorted(v):
                    out += value(kf, k) + value(vf, v[k])
            elif fd.is_repeated:
                out += head + b"r" + kind + struct.pack(">Q", len(v))
                out += b"".join(value(fd, x) for x in v)
            else:
                out += head + kind + value(fd, v)
        return out + b"}"

    name = message.DESCRIPTOR.full_name.encode()
    return b"plait-canonical-v1\x00" + struct.pack(">Q", len(name)) + name + msg(message)


@settings(max_examples=300, deadline=None)
@given(a=INPUTS, data=st.data())
def test_hash_equal_exactly_when_values_equal(a: dict[str, Any], data: Any) -> None:
    # Half the time b is a near neighbour of a (one input redrawn from its tiny domain), so
    # equal pairs that are distinct objects come up constantly, not by luck.
    if a and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(a)))
        b = {**a, key: data.draw(SMALL[key])}
    else:
        b = data.draw(INPUTS)
    ha, hb = literal_map_hash(to_map(a)), literal_map_hash(to_map(b))
    assert (ha == hb) == (a == b)
    assert len(ha) == 64 and ha == ha.lower()


@settings(max_examples=100, deadline=None)
@given(values=INPUTS, data=st.data())
def test_insertion_order_does_not_matter(values: dict[str, Any], data: st.DataObject) -> None:
    order = data.draw(st.permutations(list(values)))
    m1, m2 = to_map(values), to_map(values, list(order))
    # The wire bytes may or may not differ (map order is unspecified); the hash may not.
    assert literal_map_hash(m1) == literal_map_hash(m2)
    assert canonical_bytes(m1) == canonical_bytes(m2)


@settings(max_examples=100, deadline=None)
@given(values=INPUTS)
def test_canonical_bytes_match_the_reference(values: dict[str, Any]) -> None:
    m = to_map(values)
    assert canonical_bytes(m) == reference_bytes(m)
    assert literal_map_hash(m) == hashlib.sha256(reference_bytes(m)).hexdigest()
    for lit in m.literals.values():
        assert canonical_bytes(lit) == reference_bytes(lit)
        assert literal_hash(lit) == hashlib.sha256(reference_bytes(lit)).hexdigest()


def test_reference_covers_other_messages() -> None:
    iface = interface_pb2.TypedInterface()
    iface.inputs.variables.add(name="x", type=literal_type(list[Pair], where="x"))
    lt = literal_type(int | None, where="y")
    for message in (iface, lt, struct_pb2.Struct(fields={"b": struct_pb2.Value(number_value=1)})):
        assert canonical_bytes(message) == reference_bytes(message)


@settings(max_examples=100, deadline=None)
@given(values=INPUTS, data=st.data())
def test_ignore(values: dict[str, Any], data: st.DataObject) -> None:
    ignored = data.draw(st.sets(st.sampled_from(sorted(HINTS))))
    kept = {k: v for k, v in values.items() if k not in ignored}
    assert literal_map_hash(to_map(values), ignore=ignored) == literal_map_hash(to_map(kept))


def test_ignored_input_does_not_change_the_hash() -> None:
    a = to_map({"n": 1, "s": "x"})
    b = to_map({"n": 1, "s": "y"})
    assert literal_map_hash(a) != literal_map_hash(b)
    assert literal_map_hash(a, ignore={"s"}) == literal_map_hash(b, ignore=["s"])


def test_structs_hash_by_content() -> None:
    a = to_literal({"x": 1, "y": {"p": [1, 2], "q": None}}, dict[str, Any], var="d")
    b = to_literal({"y": {"q": None, "p": [1, 2]}, "x": 1}, dict[str, Any], var="d")
    c = to_literal({"y": {"q": None, "p": [2, 1]}, "x": 1}, dict[str, Any], var="d")
    assert literal_hash(a) == literal_hash(b) != literal_hash(c)


def test_floats_are_normalized() -> None:
    def h(x: float) -> str:
        return literal_hash(to_literal(x, float, var="f"))

    assert h(0.0) == h(-0.0)
    assert h(math.nan) == h(-math.nan)
    assert h(1.0) != h(-1.0) != h(math.inf)


def test_presence_is_meaningful() -> None:
    zero = to_literal(0, int, var="n")
    assert literal_hash(zero) != literal_hash(literals_pb2.Literal())
    assert literal_hash(to_literal([], list[int], var="xs")) != literal_hash(
        to_literal({}, dict[str, int], var="m")
    )
    assert literal_hash(to_literal("", str, var="s")) != literal_hash(
        to_literal(b"", bytes, var="b")
    )


def test_length_prefixes_prevent_ambiguity() -> None:
    def hm(d: dict[str, str]) -> str:
        return literal_map_hash(
            literals_pb2.LiteralMap(literals={k: to_literal(v, str, var=k) for k, v in d.items()})
        )

    assert hm({"ab": "c"}) != hm({"a": "bc"})
    assert literal_hash(to_literal(["ab", "c"], list[str], var="x")) != literal_hash(
        to_literal(["a", "bc"], list[str], var="x")
    )


def test_types_are_part_of_the_encoding() -> None:
    assert canonical_bytes(literals_pb2.LiteralMap()) != canonical_bytes(
        literals_pb2.LiteralCollection()
    )


def _iface(descriptions: bool, reverse: bool = False) -> interface_pb2.TypedInterface:
    iface = interface_pb2.TypedInterface()
    inputs = [("x", int), ("ys", list[str])]
    for name, hint in reversed(inputs) if reverse else inputs:
        iface.inputs.variables.add(
            name=name,
            type=literal_type(hint, where=name),
            description=f"about {name}" if descriptions else "",
        )
    iface.outputs.variables.add(
        name="o0", type=literal_type(float, where="o0"), description="out" if descriptions else ""
    )
    return iface


def test_interface_signature() -> None:
    base = interface_signature(_iface(descriptions=False))
    assert len(base) == 64
    assert interface_signature(_iface(descriptions=True)) == base
    assert interface_signature(_iface(descriptions=False, reverse=True)) == base
    renamed = _iface(descriptions=False)
    renamed.inputs.variables[0].name = "z"
    assert interface_signature(renamed) != base
    retyped = _iface(descriptions=False)
    retyped.outputs.variables[0].type.simple = types_pb2.SIMPLE_TYPE_INTEGER
    assert interface_signature(retyped) != base
    moved = _iface(descriptions=False)
    # An input that becomes an output is a different interface.
    moved.outputs.variables.add().CopyFrom(moved.inputs.variables.pop())
    assert interface_signature(moved) != base
