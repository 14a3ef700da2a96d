"""Type rules shared by the compiler and input validation: castability, literal-vs-type checks,
well-formedness of types, and a compact rendering of types for error messages.

Castability is strict in the way Flyte's is: an integer never silently becomes a float. A value
of type ``T`` may feed a union that has a variant ``T`` can cast to; that is the only implicit
widening.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable

from plaitidl.core.v1 import literals_pb2, types_pb2

__all__ = [
    "TypeRef",
    "castable",
    "castable_ref",
    "is_variant_of",
    "literal_kind",
    "literal_matches",
    "literal_problem",
    "same_type",
    "scalar_literal_type",
    "type_problems",
    "type_str",
    "valid_ratio",
]

_SIMPLE_NAMES = {
    types_pb2.SIMPLE_TYPE_NONE: "none",
    types_pb2.SIMPLE_TYPE_INTEGER: "int",
    types_pb2.SIMPLE_TYPE_FLOAT: "float",
    types_pb2.SIMPLE_TYPE_STRING: "str",
    types_pb2.SIMPLE_TYPE_BOOLEAN: "bool",
    types_pb2.SIMPLE_TYPE_DATETIME: "datetime",
    types_pb2.SIMPLE_TYPE_DURATION: "duration",
    types_pb2.SIMPLE_TYPE_BINARY: "bytes",
    types_pb2.SIMPLE_TYPE_STRUCT: "struct",
}

# Which Primitive oneof case carries each simple type (None: carried by another Scalar case).
_PRIMITIVE_CASE = {
    types_pb2.SIMPLE_TYPE_INTEGER: "integer",
    types_pb2.SIMPLE_TYPE_FLOAT: "float_value",
    types_pb2.SIMPLE_TYPE_STRING: "string_value",
    types_pb2.SIMPLE_TYPE_BOOLEAN: "boolean",
    types_pb2.SIMPLE_TYPE_DATETIME: "datetime",
    types_pb2.SIMPLE_TYPE_DURATION: "duration",
}
_SCALAR_CASE = {
    types_pb2.SIMPLE_TYPE_NONE: "none_value",
    types_pb2.SIMPLE_TYPE_BINARY: "binary",
    types_pb2.SIMPLE_TYPE_STRUCT: "generic",
}
_PRIMITIVE_TO_SIMPLE = {case: simple for simple, case in _PRIMITIVE_CASE.items()}

# Results are pure functions of the two serialized types, so one process-wide memo is safe.
# It is bounded to keep a long-running engine from growing without limit on hostile input.
_CAST_CACHE: dict[tuple[bytes, bytes], bool] = {}
_NORM_CACHE: dict[bytes, Hashable] = {}
_CACHE_LIMIT = 100_000


class TypeRef:
    """A `LiteralType` with its deterministic serialization, used as a cache key."""

    __slots__ = ("key", "pb")

    def __init__(self, pb: types_pb2.LiteralType) -> None:
        self.pb = pb
        self.key = pb.SerializeToString(deterministic=True)


def _norm(t: types_pb2.LiteralType) -> Hashable:
    """A hashable structural form that ignores tags, record names and field/variant order."""
    kind = t.WhichOneof("type")
    if kind == "simple":
        return ("s", t.simple)
    if kind == "collection_type":
        return ("c", _norm(t.collection_type))
    if kind == "map_value_type":
        return ("m", _norm(t.map_value_type))
    if kind == "blob":
        return ("b", t.blob.format, t.blob.dimensionality)
    if kind == "enum_type":
        return ("e", frozenset(t.enum_type.values))
    if kind == "union_type":
        return ("u", frozenset(_norm(v) for v in t.union_type.variants))
    if kind == "record_type":
        return ("r", frozenset((f.name, _norm(f.type)) for f in t.record_type.fields))
    return ("?",)


def _norm_ref(ref: TypeRef) -> Hashable:
    hit = _NORM_CACHE.get(ref.key)
    if hit is None:
        if len(_NORM_CACHE) > _CACHE_LIMIT:
            _NORM_CACHE.clear()
        hit = _NORM_CACHE[ref.key] = _norm(ref.pb)
    return hit


def same_type(a: types_pb2.LiteralType, b: types_pb2.LiteralType) -> bool:
    """Whether two types are equal, ignoring tags, record names and declaration order.

    Args:
        a: One type.
        b: The other type.

    Returns:
        True when the types are structurally equal.
    """
    return _norm(a) == _norm(b)


def _castable(s: types_pb2.LiteralType, t: types_pb2.LiteralType) -> bool:
    sk = s.WhichOneof("type")
    tk = t.WhichOneof("type")
    if sk is None or tk is None:
        return False
    if tk == "union_type":
        if sk == "union_type":
            return all(_castable(v, t) for v in s.union_type.variants)
        return any(_castable(s, v) for v in t.union_type.variants)
    if sk != tk:
        return False
    same_kind = _CASTABLE_BY_KIND.get(sk)
    return same_kind is not None and same_kind(s, t)


def _records_castable(s: types_pb2.LiteralType, t: types_pb2.LiteralType) -> bool:
    sf = {f.name: f.type for f in s.record_type.fields}
    tf = {f.name: f.type for f in t.record_type.fields}
    return sf.keys() == tf.keys() and all(_castable(sf[n], tf[n]) for n in sf)


_CASTABLE_BY_KIND: dict[str, Callable[[types_pb2.LiteralType, types_pb2.LiteralType], bool]] = {
    "simple": lambda s, t: s.simple == t.simple and s.simple != types_pb2.SIMPLE_TYPE_UNSPECIFIED,
    "collection_type": lambda s, t: _castable(s.collection_type, t.collection_type),
    "map_value_type": lambda s, t: _castable(s.map_value_type, t.map_value_type),
    "blob": lambda s, t: _blob_compatible(s.blob, t.blob),
    "enum_type": lambda s, t: set(s.enum_type.values) <= set(t.enum_type.values),
    "record_type": _records_castable,
}


def _blob_compatible(s: types_pb2.BlobType, t: types_pb2.BlobType) -> bool:
    return s.dimensionality == t.dimensionality and (
        s.format == t.format or not s.format or not t.format
    )


def castable(source: types_pb2.LiteralType, target: types_pb2.LiteralType) -> bool:
    """Whether a value of type `source` may feed a slot of type `target`.

    Rules: equal types (ignoring tags and record names); ``T`` to a union with a variant ``T``
    casts to; a union to ``B`` when every variant casts to ``B``; collections and maps
    elementwise; enum ``A`` to enum ``B`` when values(A) is a subset of values(B); records with
    the same field names and castable fields; blobs of the same dimensionality whose formats
    are equal or either empty. Integers do not cast to floats.

    Args:
        source: The type of the value.
        target: The declared type of the slot.

    Returns:
        True when the cast is allowed.
    """
    return castable_ref(TypeRef(source), TypeRef(target))


def castable_ref(source: TypeRef, target: TypeRef) -> bool:
    """`castable` on pre-serialized types, memoized by their bytes.

    Args:
        source: The type of the value.
        target: The declared type of the slot.

    Returns:
        True when the cast is allowed.
    """
    key = (source.key, target.key)
    hit = _CAST_CACHE.get(key)
    if hit is None:
        if len(_CAST_CACHE) > _CACHE_LIMIT:
            _CAST_CACHE.clear()
        hit = _CAST_CACHE[key] = _castable(source.pb, target.pb)
    return hit


def is_variant_of(variant: TypeRef, union: types_pb2.LiteralType) -> bool:
    """Whether `variant` is structurally one of the variants of the union type `union`."""
    want = _norm_ref(variant)
    return any(_norm(v) == want for v in union.union_type.variants)


def type_str(t: types_pb2.LiteralType) -> str:
    """Render a type compactly and Python-like, for error messages.

    Args:
        t: The type.

    Returns:
        For example ``list[int]``, ``dict[str, float | none]``, ``Point{x: int, y: int}``.
    """
    kind = t.WhichOneof("type")
    if kind == "simple":
        return _SIMPLE_NAMES.get(t.simple, "<unspecified>")
    if kind == "collection_type":
        return f"list[{type_str(t.collection_type)}]"
    if kind == "map_value_type":
        return f"dict[str, {type_str(t.map_value_type)}]"
    if kind == "blob":
        multipart = t.blob.dimensionality == types_pb2.BlobType.BLOB_DIMENSIONALITY_MULTIPART
        base = "dir" if multipart else "file"
        return f"{base}[{t.blob.format}]" if t.blob.format else base
    if kind == "enum_type":
        return "enum{" + ", ".join(t.enum_type.values) + "}"
    if kind == "union_type":
        return " | ".join(type_str(v) for v in t.union_type.variants) or "union{}"
    if kind == "record_type":
        fields = ", ".join(f"{f.name}: {type_str(f.type)}" for f in t.record_type.fields)
        return f"{t.record_type.name}{{{fields}}}"
    return "<unset type>"


def literal_kind(lit: literals_pb2.Literal) -> str:
    """A short name for what a literal holds (``int``, ``list``, ``union``...), for messages."""
    kind = lit.WhichOneof("value")
    if kind == "scalar":
        sk = lit.scalar.WhichOneof("value")
        if sk == "primitive":
            pk = lit.scalar.primitive.WhichOneof("value")
            simple = _PRIMITIVE_TO_SIMPLE.get(pk or "")
            return _SIMPLE_NAMES[simple] if simple is not None else "empty primitive"
        return {
            "blob": "blob",
            "binary": "bytes",
            "none_value": "none",
            "generic": "struct",
            "union": "union",
        }.get(sk or "", "empty scalar")
    return {"collection": "list", "map": "dict", "record": "record", "offloaded": "offloaded"}.get(
        kind or "", "empty literal"
    )


def scalar_literal_type(lit: literals_pb2.Literal) -> types_pb2.LiteralType | None:
    """The simple type of a scalar literal (primitives and none), else None."""
    kind = lit.WhichOneof("value")
    if kind == "offloaded":
        return lit.offloaded.type
    if kind != "scalar":
        return None
    sk = lit.scalar.WhichOneof("value")
    if sk == "primitive":
        simple = _PRIMITIVE_TO_SIMPLE.get(lit.scalar.primitive.WhichOneof("value") or "")
        return None if simple is None else types_pb2.LiteralType(simple=simple)
    if sk == "none_value":
        return types_pb2.LiteralType(simple=types_pb2.SIMPLE_TYPE_NONE)
    if sk == "union":
        return lit.scalar.union.type
    return None


def literal_problem(lit: literals_pb2.Literal, t: types_pb2.LiteralType) -> str | None:
    """Why `lit` is not an instance of `t`, or None when it is.

    An offloaded literal is judged by its declared type. A union type accepts a union literal
    tagged with one of its variants, and also a bare literal of one of its variants (the same
    widening `castable` allows for promises).

    Args:
        lit: The value.
        t: The expected type.

    Returns:
        A human-readable reason, or None.
    """
    lk = lit.WhichOneof("value")
    if lk is None:
        return "the literal has no value"
    if lk == "offloaded":
        if castable(lit.offloaded.type, t):
            return None
        return f"expected {type_str(t)}, got an offloaded {type_str(lit.offloaded.type)}"
    check = _PROBLEM_BY_KIND.get(t.WhichOneof("type") or "")
    if check is None:
        return "the expected type is unset"
    return check(lit, t)


def _mismatch(lit: literals_pb2.Literal, t: types_pb2.LiteralType) -> str:
    return f"expected {type_str(t)}, got {_a(literal_kind(lit))} literal"


def _union_problem(lit: literals_pb2.Literal, t: types_pb2.LiteralType) -> str | None:
    if lit.WhichOneof("value") == "scalar" and lit.scalar.WhichOneof("value") == "union":
        u = lit.scalar.union
        if not is_variant_of(TypeRef(u.type), t):
            return f"union literal tagged {type_str(u.type)} is not a variant of {type_str(t)}"
        return literal_problem(u.value, u.type)
    for v in t.union_type.variants:
        if literal_problem(lit, v) is None:
            return None
    return f"expected {type_str(t)}, got {_a(literal_kind(lit))} literal matching no variant"


def _collection_problem(lit: literals_pb2.Literal, t: types_pb2.LiteralType) -> str | None:
    if lit.WhichOneof("value") != "collection":
        return _mismatch(lit, t)
    elem = t.collection_type
    for i, el in enumerate(lit.collection.literals):
        p = literal_problem(el, elem)
        if p is not None:
            return f"element [{i}]: {p}"
    return None


def _map_problem(lit: literals_pb2.Literal, t: types_pb2.LiteralType) -> str | None:
    if lit.WhichOneof("value") != "map":
        return _mismatch(lit, t)
    val = t.map_value_type
    for k in sorted(lit.map.literals):
        p = literal_problem(lit.map.literals[k], val)
        if p is not None:
            return f"key {k!r}: {p}"
    return None


def _enum_problem(lit: literals_pb2.Literal, t: types_pb2.LiteralType) -> str | None:
    if (
        lit.WhichOneof("value") == "scalar"
        and lit.scalar.WhichOneof("value") == "primitive"
        and lit.scalar.primitive.WhichOneof("value") == "string_value"
    ):
        if lit.scalar.primitive.string_value in t.enum_type.values:
            return None
        return f"{lit.scalar.primitive.string_value!r} is not a value of {type_str(t)}"
    return _mismatch(lit, t)


def _blob_problem(lit: literals_pb2.Literal, t: types_pb2.LiteralType) -> str | None:
    if lit.WhichOneof("value") == "scalar" and lit.scalar.WhichOneof("value") == "blob":
        if _blob_compatible(lit.scalar.blob.type, t.blob):
            return None
        bt = types_pb2.LiteralType(blob=lit.scalar.blob.type)
        return f"expected {type_str(t)}, got a {type_str(bt)} blob"
    return _mismatch(lit, t)


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _simple_problem(lit: literals_pb2.Literal, t: types_pb2.LiteralType) -> str | None:
    if lit.WhichOneof("value") == "scalar":
        scalar = lit.scalar
        sk = scalar.WhichOneof("value")
        pcase = _PRIMITIVE_CASE.get(t.simple)
        if pcase is not None:
            if sk == "primitive" and scalar.primitive.WhichOneof("value") == pcase:
                return None
        elif sk is not None and _SCALAR_CASE.get(t.simple) == sk:
            return None
    return f"expected {type_str(t)}, got {_a(literal_kind(lit))} literal"


def _record_problem(lit: literals_pb2.Literal, t: types_pb2.LiteralType) -> str | None:
    if lit.WhichOneof("value") != "record":
        return f"expected {type_str(t)}, got {_a(literal_kind(lit))} literal"
    want = {f.name: f.type for f in t.record_type.fields}
    seen: set[str] = set()
    for f in lit.record.fields:
        if f.name in seen:
            return f"record field {f.name!r} is given twice"
        seen.add(f.name)
        ft = want.get(f.name)
        if ft is None:
            return f"record field {f.name!r} is not a field of {type_str(t)}"
        p = literal_problem(f.value, ft)
        if p is not None:
            return f"field {f.name!r}: {p}"
    missing = [n for n in want if n not in seen]
    if missing:
        return f"record fields missing: {', '.join(missing)}"
    return None


_PROBLEM_BY_KIND: dict[str, Callable[[literals_pb2.Literal, types_pb2.LiteralType], str | None]] = {
    "union_type": _union_problem,
    "simple": _simple_problem,
    "collection_type": _collection_problem,
    "map_value_type": _map_problem,
    "record_type": _record_problem,
    "enum_type": _enum_problem,
    "blob": _blob_problem,
}


def literal_matches(lit: literals_pb2.Literal, t: types_pb2.LiteralType) -> bool:
    """Whether `lit` is an instance of `t` (see `literal_problem`).

    Args:
        lit: The value.
        t: The expected type.

    Returns:
        True when the literal fits the type.
    """
    return literal_problem(lit, t) is None


def type_problems(t: types_pb2.LiteralType, path: str) -> list[tuple[str, str]]:
    """Check that a type is well formed.

    Every `LiteralType` (at any depth) has its oneof set, simple types are not unspecified,
    blobs have a dimensionality, enums have unique values, unions have distinct variants,
    records have unique, non-empty field names.

    Args:
        t: The type.
        path: Field path of `t`, prefixed to the returned paths.

    Returns:
        ``(field, description)`` pairs; empty when the type is well formed.
    """
    out: list[tuple[str, str]] = []
    _type_problems(t, path, out)
    return out


def _type_problems(t: types_pb2.LiteralType, path: str, out: list[tuple[str, str]]) -> None:
    kind = t.WhichOneof("type")
    if kind is None:
        out.append((path, "the type has none of its oneof `type` set"))
        return
    _TYPE_PROBLEMS_BY_KIND[kind](t, path, out)


def _simple_type_problems(t: types_pb2.LiteralType, path: str, out: list[tuple[str, str]]) -> None:
    if t.simple not in _SIMPLE_NAMES:
        out.append((f"{path}.simple", f"simple type {t.simple} is unspecified or unknown"))


def _blob_type_problems(t: types_pb2.LiteralType, path: str, out: list[tuple[str, str]]) -> None:
    if t.blob.dimensionality not in (
        types_pb2.BlobType.BLOB_DIMENSIONALITY_SINGLE,
        types_pb2.BlobType.BLOB_DIMENSIONALITY_MULTIPART,
    ):
        out.append((f"{path}.blob.dimensionality", "blob dimensionality is unspecified"))


def _enum_type_problems(t: types_pb2.LiteralType, path: str, out: list[tuple[str, str]]) -> None:
    values = list(t.enum_type.values)
    if not values:
        out.append((f"{path}.enum_type.values", "an enum needs at least one value"))
    elif len(set(values)) != len(values):
        out.append((f"{path}.enum_type.values", "enum values are not unique"))


def _union_type_problems(t: types_pb2.LiteralType, path: str, out: list[tuple[str, str]]) -> None:
    variants = t.union_type.variants
    if not variants:
        out.append((f"{path}.union_type.variants", "a union needs at least one variant"))
    seen: set[tuple[Hashable, str]] = set()
    for i, v in enumerate(variants):
        vp = f"{path}.union_type.variants[{i}]"
        _type_problems(v, vp, out)
        # Two variants of one shape are fine only when tags tell them apart.
        key = (_norm(v), v.tag)
        if key in seen:
            out.append((vp, f"duplicate union variant {type_str(v)}"))
        seen.add(key)


def _record_type_problems(t: types_pb2.LiteralType, path: str, out: list[tuple[str, str]]) -> None:
    names: set[str] = set()
    for i, f in enumerate(t.record_type.fields):
        fp = f"{path}.record_type.fields[{i}]"
        if not f.name:
            out.append((f"{fp}.name", "record field name is empty"))
        elif f.name in names:
            out.append((f"{fp}.name", f"duplicate record field {f.name!r}"))
        names.add(f.name)
        if not f.HasField("type"):
            out.append((f"{fp}.type", "record field has no type"))
        else:
            _type_problems(f.type, f"{fp}.type", out)


_TYPE_PROBLEMS_BY_KIND: dict[
    str, Callable[[types_pb2.LiteralType, str, list[tuple[str, str]]], None]
] = {
    "simple": _simple_type_problems,
    "collection_type": lambda t, p, out: _type_problems(
        t.collection_type, f"{p}.collection_type", out
    ),
    "map_value_type": lambda t, p, out: _type_problems(
        t.map_value_type, f"{p}.map_value_type", out
    ),
    "blob": _blob_type_problems,
    "enum_type": _enum_type_problems,
    "union_type": _union_type_problems,
    "record_type": _record_type_problems,
}


def valid_ratio(x: float) -> bool:
    """Whether `x` is a real number in [0, 1] (NaN is not)."""
    return not math.isnan(x) and 0.0 <= x <= 1.0
