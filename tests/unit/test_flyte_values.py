"""Values across the boundary: plait records ⇄ flytekit's msgpack documents, and friends.

A property test draws a record type and a value of it, sends it to Flyte (msgpack) and back,
and expects the same literal; example tests cover the JSON documents of older flytekit, the
untyped ``dict`` and union literals.
"""

from __future__ import annotations

import datetime
import json

import msgpack
from flyteidl.core import literals_pb2 as fl
from flyteidl.core import types_pb2 as ft
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plait.flyte import to_flyte, to_plait
from plait.flyte._context import Context
from plait.flyte._values import value_to_plait
from plaitidl.core.v1 import literals_pb2 as pl
from plaitidl.core.v1 import types_pb2 as pt

SIMPLE = pt.SimpleType
_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True)


def _simple(kind: int) -> pt.LiteralType:
    return pt.LiteralType(simple=kind)  # type: ignore[arg-type]


_SCALARS: list[tuple[pt.LiteralType, st.SearchStrategy[object]]] = [
    (_simple(SIMPLE.SIMPLE_TYPE_INTEGER), st.integers(-(2**53), 2**53)),
    (_simple(SIMPLE.SIMPLE_TYPE_FLOAT), st.floats(allow_nan=False, allow_infinity=False)),
    (_simple(SIMPLE.SIMPLE_TYPE_STRING), st.text(max_size=8)),
    (_simple(SIMPLE.SIMPLE_TYPE_BOOLEAN), st.booleans()),
    (
        _simple(SIMPLE.SIMPLE_TYPE_DATETIME),
        st.datetimes(timezones=st.just(datetime.UTC)).map(lambda d: d.isoformat()),
    ),
    (_simple(SIMPLE.SIMPLE_TYPE_DURATION), st.integers(-(10**9), 10**9).map(lambda ms: ms / 1000)),
    (
        pt.LiteralType(enum_type=pt.EnumType(values=["red", "green"])),
        st.sampled_from(["red", "green"]),
    ),
    (
        pt.LiteralType(blob=pt.BlobType(dimensionality=pt.BlobType.BLOB_DIMENSIONALITY_SINGLE)),
        st.from_regex(r"/data/[a-z]{1,5}\.csv", fullmatch=True).map(lambda p: {"path": p}),
    ),
]


def _typed(depth: int) -> st.SearchStrategy[tuple[pt.LiteralType, object]]:
    leaves = st.sampled_from(_SCALARS).flatmap(lambda tv: tv[1].map(lambda v: (tv[0], v)))
    if depth == 0:
        return leaves

    def listed(
        inner: tuple[pt.LiteralType, object],
    ) -> st.SearchStrategy[tuple[pt.LiteralType, object]]:
        t = pt.LiteralType(collection_type=inner[0])
        return st.lists(st.just(inner[1]), max_size=3).map(lambda vs: (t, vs))

    def mapped(
        inner: tuple[pt.LiteralType, object],
    ) -> st.SearchStrategy[tuple[pt.LiteralType, object]]:
        t = pt.LiteralType(map_value_type=inner[0])
        return st.dictionaries(_NAMES, st.just(inner[1]), max_size=2).map(lambda d: (t, d))

    def optional(
        inner: tuple[pt.LiteralType, object],
    ) -> st.SearchStrategy[tuple[pt.LiteralType, object]]:
        variant = pt.LiteralType()
        variant.CopyFrom(inner[0])
        variant.tag = "value"
        t = pt.LiteralType(
            union_type=pt.UnionType(
                variants=[variant, pt.LiteralType(simple=SIMPLE.SIMPLE_TYPE_NONE, tag="none")]
            )
        )
        return st.sampled_from([inner[1], None]).map(lambda v: (t, v))

    sub = _typed(depth - 1)
    return st.one_of(
        leaves,
        sub.flatmap(listed),
        sub.flatmap(mapped),
        sub.flatmap(optional),
        _records(depth - 1),
    )


def _records(depth: int) -> st.SearchStrategy[tuple[pt.LiteralType, object]]:
    def build(fields: dict[str, tuple[pt.LiteralType, object]]) -> tuple[pt.LiteralType, object]:
        t = pt.LiteralType(record_type=pt.RecordType(name="R"))
        for name, (ft_, _) in fields.items():
            t.record_type.fields.add(name=name, type=ft_)
        return t, {name: v for name, (_, v) in fields.items()}

    return st.dictionaries(_NAMES, _typed(depth), min_size=1, max_size=3).map(build)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_records(2))
def test_records_survive_the_round_trip_through_msgpack(
    typed: tuple[pt.LiteralType, object],
) -> None:
    t, doc = typed
    ctx = Context("value")
    record = value_to_plait(doc, t, ctx, "value")
    assert ctx.refusals == [], ctx.refusals
    flyte = to_flyte(record)
    assert flyte.scalar.binary.tag == "msgpack"
    assert msgpack.unpackb(flyte.scalar.binary.value) == doc
    assert to_plait(flyte, types=t) == record


def _point_type() -> pt.LiteralType:
    t = pt.LiteralType(record_type=pt.RecordType(name="Point"))
    t.record_type.fields.add(name="x", type=_simple(SIMPLE.SIMPLE_TYPE_INTEGER))
    t.record_type.fields.add(name="when", type=_simple(SIMPLE.SIMPLE_TYPE_DATETIME))
    return t


def test_json_documents_of_older_flytekit_become_records() -> None:
    lit = fl.Literal()
    json_format.ParseDict({"x": 3, "when": "2024-05-01T10:00:00+00:00"}, lit.scalar.generic)
    record = to_plait(lit, types=_point_type())
    fields = {f.name: f.value for f in record.record.fields}
    assert fields["x"].scalar.primitive.integer == 3  # JSON's 3.0, read as the declared int
    assert fields["when"].scalar.primitive.datetime.ToJsonString() == "2024-05-01T10:00:00Z"


def test_untyped_dicts_stay_documents() -> None:
    lit = fl.Literal()
    lit.scalar.binary.value = msgpack.packb({"a": 1, "b": [1, 2]})
    lit.scalar.binary.tag = "msgpack"
    out = to_plait(lit, types=_simple(SIMPLE.SIMPLE_TYPE_STRUCT))
    assert json.loads(json_format.MessageToJson(out.scalar.generic)) == {"a": 1, "b": [1, 2]}
    # Without a type, the bytes are kept as they are.
    kept = to_plait(lit)
    assert (kept.scalar.binary.tag, kept.scalar.binary.value) == (
        "msgpack",
        lit.scalar.binary.value,
    )


def test_union_literals() -> None:
    variant = ft.LiteralType(simple=ft.STRING)
    variant.structure.tag = "str"
    lit = fl.Literal()
    lit.scalar.union.type.CopyFrom(variant)
    lit.scalar.union.value.scalar.primitive.string_value = "x"
    out = to_plait(lit)
    assert (out.scalar.union.type.simple, out.scalar.union.type.tag) == (
        SIMPLE.SIMPLE_TYPE_STRING, "str"
    )  # fmt: skip
    back = to_flyte(out)
    assert back.scalar.union.type.structure.tag == "str"
    assert back == lit
    # An untagged union (an array node's tolerated failure) goes to flytekit bare: flytekit
    # tries each variant on it.
    bare = pl.Literal()
    bare.scalar.union.type.simple = SIMPLE.SIMPLE_TYPE_NONE
    bare.scalar.union.value.scalar.none_value.SetInParent()
    assert to_flyte(bare).scalar.HasField("none_type")


def test_enum_and_simple_type_numbers_are_mapped_by_name() -> None:
    # flyteidl's INTEGER is 1 where plaitidl's 1 is NONE: a copy by number would be wrong.
    assert to_plait(ft.LiteralType(simple=ft.INTEGER)).simple == SIMPLE.SIMPLE_TYPE_INTEGER
    assert to_plait(ft.LiteralType(simple=ft.NONE)).simple == SIMPLE.SIMPLE_TYPE_NONE
    blob = ft.LiteralType(blob=ft.BlobType(dimensionality=ft.BlobType.MULTIPART))
    assert to_plait(blob).blob.dimensionality == pt.BlobType.BLOB_DIMENSIONALITY_MULTIPART
    assert to_flyte(to_plait(blob)) == blob
