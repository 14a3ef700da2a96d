"""Run-time values: resolving bindings against finished nodes, and evaluating conditions.

The compiler already checked that every binding type-checks; what can still go wrong at run
time (an index out of range, a missing map key) raises `BindingError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from plaitidl.core.v1 import condition_pb2, literals_pb2

from plait_engine import ids
from plait_engine.scheduler.state import Frame
from plait_engine.wire import field, read_varint


class BindingError(Exception):
    """A binding could not be resolved at run time (e.g. an index out of range)."""


def lookup(frame: Frame, node_id: str, var: str) -> literals_pb2.Literal:
    """The value of `node_id.var` as seen from `frame` (``start-node`` reads the inputs)."""
    if node_id == ids.START_NODE:
        top = frame
        while top.outer is not None:  # a branch case reads the enclosing graph's inputs
            top = top.outer
        if var not in top.inputs.literals:
            raise BindingError(f"input {var!r} has no value")
        return top.inputs.literals[var]
    n = frame.nodes.get(node_id)
    if n is None:
        if frame.outer is not None:
            return lookup(frame.outer, node_id, var)
        raise BindingError(f"unknown node {node_id!r}")
    outputs = n.output_map()
    if outputs is None or var not in outputs.literals:
        raise BindingError(f"node {node_id!r} has no output {var!r}")
    return outputs.literals[var]


def resolve_inputs(
    frame: Frame, bindings: Sequence[literals_pb2.Binding]
) -> literals_pb2.LiteralMap:
    """A node's input map from its bindings."""
    out = literals_pb2.LiteralMap()
    for b in bindings:
        out.literals[b.var].CopyFrom(resolve(frame, b.binding))
    return out


def resolve(frame: Frame, b: literals_pb2.BindingData) -> literals_pb2.Literal:
    which = b.WhichOneof("value")
    if which == "literal":
        lit = b.literal
    elif which == "promise":
        lit = lookup(frame, b.promise.node_id, b.promise.var)
        for step in b.promise.attr_path:
            lit = _step(lit, step)
    elif which == "collection":
        fast = _promise_collection(frame, b.collection)
        if fast is not None:
            lit = fast
        else:
            lit = literals_pb2.Literal()
            lit.collection.SetInParent()
            items = lit.collection.literals
            for item in b.collection.bindings:
                items.add().CopyFrom(resolve(frame, item))
    elif which == "map":
        lit = literals_pb2.Literal()
        lit.map.SetInParent()
        m = lit.map.literals
        for k, item in b.map.bindings.items():
            m[k].CopyFrom(resolve(frame, item))
    else:
        raise BindingError("empty binding")
    if b.HasField("union_variant") and not (
        lit.HasField("scalar") and lit.scalar.HasField("union")
    ):
        wrapped = literals_pb2.Literal()
        wrapped.scalar.union.value.CopyFrom(lit)
        wrapped.scalar.union.type.CopyFrom(b.union_variant)
        return wrapped
    return lit


def _fields(data: bytes) -> list[tuple[int, bytes]]:
    """The length-delimited fields of a serialized message, as (key byte, payload); raises
    ValueError on anything else (the callers then take the general path)."""
    out: list[tuple[int, bytes]] = []
    pos, end = 0, len(data)
    while pos < end:
        key = data[pos]
        if key & 0x07 != 2 or key >= 0x80:
            raise ValueError("not a length-delimited field")
        size, pos = read_varint(data, pos + 1)
        out.append((key, data[pos : pos + size]))
        pos += size
    if pos != end:
        raise ValueError("truncated message")
    return out


def _output_literal(frame: Frame, ref: bytes) -> bytes | None:
    """The serialized literal a promise (an `OutputReference` without attribute path) reads,
    when its node keeps its outputs serialized; None otherwise."""
    node_id = var = b""
    for key, part in _fields(ref):
        if key == 0x0A:
            node_id = part
        elif key == 0x12:
            var = part
        else:
            return None  # an attribute path
    n = frame.nodes.get(node_id.decode())
    if n is None or n.out_bytes is None:
        return None
    for key, entry in _fields(n.out_bytes):  # LiteralMap.literals (1): map entries
        if key != 0x0A:
            return None
        name: bytes | None = None
        value: bytes | None = None
        for k, v in _fields(entry):
            if k == 0x0A:
                name = v
            elif k == 0x12:
                value = v
        if name == var:
            return value if value is not None else b""
    return None


def _promise_collection(
    frame: Frame, coll: literals_pb2.BindingDataCollection
) -> literals_pb2.Literal | None:
    """A list of promises of sibling outputs (a fan-out's result), assembled from the
    serialized outputs in one parse; None when any item needs the general path."""
    parts: list[bytes] = []
    try:
        for key, item in _fields(coll.SerializeToString()):
            inner = _fields(item)
            if key != 0x0A or len(inner) != 1 or inner[0][0] != 0x22:  # BindingData.promise only
                return None
            lit = _output_literal(frame, inner[0][1])
            if lit is None:
                return None
            parts.append(field(b"\x0a", lit))
    except ValueError:
        return None
    # Literal.collection (2) -> LiteralCollection.literals (1, repeated)
    return literals_pb2.Literal.FromString(field(b"\x12", b"".join(parts)))


def _step(lit: literals_pb2.Literal, step: literals_pb2.PromiseAttribute) -> literals_pb2.Literal:
    while lit.HasField("scalar") and lit.scalar.HasField("union"):
        lit = lit.scalar.union.value
    if lit.HasField("offloaded"):
        raise BindingError(
            "cannot take an attribute of an offloaded value (above the inline limit)"
        )
    if step.HasField("index"):
        items = lit.collection.literals
        if not lit.HasField("collection") or not -len(items) <= step.index < len(items):
            raise BindingError(f"index {step.index} is out of range")
        return items[step.index]
    name = step.name
    if lit.HasField("map"):
        if name not in lit.map.literals:
            raise BindingError(f"key {name!r} is missing")
        return lit.map.literals[name]
    if lit.HasField("record"):
        for f in lit.record.fields:
            if f.name == name:
                return f.value
        raise BindingError(f"field {name!r} is missing")
    raise BindingError(f"cannot take {name!r} of this value")


def _scalar_of(lit: literals_pb2.Literal) -> object:
    while lit.HasField("scalar") and lit.scalar.HasField("union"):
        lit = lit.scalar.union.value
    if not lit.HasField("scalar"):
        raise BindingError("conditions compare scalars only")
    s = lit.scalar
    if s.HasField("none_value"):
        return None
    if not s.HasField("primitive"):
        raise BindingError("conditions compare primitives only")
    p = s.primitive
    which = p.WhichOneof("value")
    if which == "integer":
        return p.integer
    if which == "float_value":
        return p.float_value
    if which == "string_value":
        return p.string_value
    if which == "boolean":
        return p.boolean
    if which == "datetime":
        return p.datetime.ToNanoseconds()
    if which == "duration":
        return p.duration.ToNanoseconds()
    raise BindingError("empty primitive")


def _operand(op: condition_pb2.Operand, inputs: literals_pb2.LiteralMap) -> object:
    if op.HasField("var"):
        if op.var not in inputs.literals:
            raise BindingError(f"condition input {op.var!r} is not bound")
        return _scalar_of(inputs.literals[op.var])
    return _scalar_of(op.literal)


_OPS: dict[int, Callable[[object, object], bool]] = {
    condition_pb2.ComparisonExpression.OPERATOR_EQ: lambda a, b: a == b,
    condition_pb2.ComparisonExpression.OPERATOR_NEQ: lambda a, b: a != b,
    condition_pb2.ComparisonExpression.OPERATOR_GT: lambda a, b: a > b,  # type: ignore[operator]
    condition_pb2.ComparisonExpression.OPERATOR_GTE: lambda a, b: a >= b,  # type: ignore[operator]
    condition_pb2.ComparisonExpression.OPERATOR_LT: lambda a, b: a < b,  # type: ignore[operator]
    condition_pb2.ComparisonExpression.OPERATOR_LTE: lambda a, b: a <= b,  # type: ignore[operator]
}


def evaluate(expr: condition_pb2.BooleanExpression, inputs: literals_pb2.LiteralMap) -> bool:
    if expr.HasField("conjunction"):
        c = expr.conjunction
        left = evaluate(c.left_expression, inputs)
        if c.operator == condition_pb2.ConjunctionExpression.LOGICAL_OPERATOR_AND:
            return left and evaluate(c.right_expression, inputs)
        return left or evaluate(c.right_expression, inputs)
    cmp = expr.comparison
    op = _OPS.get(cmp.operator)
    if op is None:
        raise BindingError("comparison has no operator")
    a = _operand(cmp.left_value, inputs)
    b = _operand(cmp.right_value, inputs)
    try:
        return op(a, b)
    except TypeError as exc:
        raise BindingError(f"cannot compare {a!r} with {b!r}") from exc
