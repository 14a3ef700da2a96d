"""Promises (the not-yet-known outputs of nodes), condition expressions and bindings."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, NoReturn

from plaitidl.core.v1 import condition_pb2, literals_pb2, types_pb2, workflow_pb2

from plait import _dynamic_wire, _types
from plait._context import Builder, Entity, UnfinishedChain
from plait._errors import PlaitError, PlaitTypeError
from plait._interface import PyInterface

_Op = condition_pb2.ComparisonExpression.Operator
_OPS: dict[str, _Op.ValueType] = {
    "==": _Op.OPERATOR_EQ,
    "!=": _Op.OPERATOR_NEQ,
    ">": _Op.OPERATOR_GT,
    ">=": _Op.OPERATOR_GTE,
    "<": _Op.OPERATOR_LT,
    "<=": _Op.OPERATOR_LTE,
}


def _control_flow(what: str, subject: object) -> NoReturn:
    raise PlaitTypeError(
        f"{what} on {subject!r} is not possible: a promise is the output of a node that has not "
        "run yet; a @workflow body runs once, at compile time, on promises. Use "
        "conditional(...) to branch on a value, or move the logic into a @dynamic (or a "
        "@task), whose body runs with real values"
    )


class Promise:
    """The output `var` of node `node_id` (optionally an attribute path into it), typed."""

    __slots__ = ("_builder", "_hint", "_node_id", "_path", "_type", "_var")

    def __init__(
        self,
        node_id: str,
        var: str,
        hint: Any,
        ltype: types_pb2.LiteralType,
        builder: Builder,
        path: tuple[str | int, ...] = (),
    ) -> None:
        self._node_id = node_id
        self._var = var
        self._hint = hint
        self._type = ltype
        self._builder = builder
        self._path = path

    def _reference(self) -> literals_pb2.OutputReference:
        ref = literals_pb2.OutputReference()
        self._fill_reference(ref)
        return ref

    def _fill_reference(self, ref: literals_pb2.OutputReference) -> None:
        ref.node_id = self._node_id
        ref.var = self._var
        for p in self._path:
            if isinstance(p, int):
                ref.attr_path.add().index = p
            else:
                ref.attr_path.add().name = p

    def _key(self) -> tuple[str, str, tuple[str | int, ...]]:
        return (self._node_id, self._var, self._path)

    def __repr__(self) -> str:
        path = "".join(f"[{p!r}]" for p in self._path)
        return f"Promise({self._node_id}.{self._var}{path})"

    # Attribute paths -------------------------------------------------------------------------

    def _child(self, key: str | int, hint: Any) -> Promise:
        where = f"{self!r}[{key!r}]"
        return Promise(
            self._node_id,
            self._var,
            hint,
            _types.literal_type(hint, where=where),
            self._builder,
            (*self._path, key),
        )

    def __getitem__(self, key: object) -> Promise:
        origin, args = typing.get_origin(self._hint), typing.get_args(self._hint)
        if origin is list and isinstance(key, int) and not isinstance(key, bool):
            return self._child(key, args[0])
        if origin is dict and isinstance(key, str):
            return self._child(key, args[1])
        if isinstance(key, str) and dataclasses.is_dataclass(self._hint):
            return self._field(key)
        raise PlaitTypeError(
            f"cannot index {self!r} of type {_types.type_repr(self._type)} with {key!r}: "
            "promises support [int] on lists, [str] on dicts and .field / ['field'] on "
            "dataclasses; do anything else inside a @task or @dynamic"
        )

    def _field(self, name: str) -> Promise:
        assert isinstance(self._hint, type)
        hints = typing.get_type_hints(self._hint)
        if name not in hints:
            raise PlaitTypeError(f"{self!r}: {self._hint.__name__} has no field '{name}'")
        return self._child(name, hints[name])

    def __getattr__(self, name: str) -> Promise:
        if name.startswith("_") or not dataclasses.is_dataclass(self._hint):
            raise AttributeError(
                f"{self!r} has no attribute '{name}' (only promises of dataclasses have fields)"
            )
        return self._field(name)

    # Comparisons build expressions for conditional(...) -----------------------------------------

    def __eq__(self, other: object) -> Comparison:  # type: ignore[override]
        return Comparison("==", self, other)

    def __ne__(self, other: object) -> Comparison:  # type: ignore[override]
        return Comparison("!=", self, other)

    def __lt__(self, other: object) -> Comparison:
        return Comparison("<", self, other)

    def __le__(self, other: object) -> Comparison:
        return Comparison("<=", self, other)

    def __gt__(self, other: object) -> Comparison:
        return Comparison(">", self, other)

    def __ge__(self, other: object) -> Comparison:
        return Comparison(">=", self, other)

    __hash__ = None  # type: ignore[assignment]

    # Python control flow and arithmetic are compile-time errors --------------------------------

    def __bool__(self) -> bool:  # noqa: PLE0304
        _control_flow("Using a promise as a bool (if / while / and / or / not)", self)

    def __iter__(self) -> NoReturn:
        _control_flow("Iterating (for ... in)", self)

    def __len__(self) -> int:  # noqa: PLE0303
        _control_flow("len()", self)

    def __contains__(self, item: object) -> bool:
        _control_flow("'in'", self)

    def __index__(self) -> int:  # noqa: PLE0305
        _control_flow("Using a promise as an int", self)

    def __int__(self) -> int:
        _control_flow("int()", self)

    def __float__(self) -> float:
        _control_flow("float()", self)

    def _arith(self, *_: object) -> NoReturn:
        _control_flow("Arithmetic", self)

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _arith
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = _arith
    __mod__ = __rmod__ = __pow__ = __rpow__ = __neg__ = __pos__ = __abs__ = _arith
    __and__ = __rand__ = __or__ = __ror__ = __xor__ = __invert__ = _arith


class Expression:
    """A condition for `conditional(...).if_`: comparisons combined with `&` and `|`."""

    def __and__(self, other: object) -> Conjunction:
        return Conjunction("&", self, _expect_expr(other))

    def __or__(self, other: object) -> Conjunction:
        return Conjunction("|", self, _expect_expr(other))

    def __rand__(self, other: object) -> Conjunction:
        return Conjunction("&", _expect_expr(other), self)

    def __ror__(self, other: object) -> Conjunction:
        return Conjunction("|", _expect_expr(other), self)

    def __bool__(self) -> bool:
        raise PlaitTypeError(
            f"the condition {self!r} has no truth value at compile time: combine conditions "
            "with & and | (not 'and' / 'or' / 'not', wrap each comparison in parentheses), "
            "and branch with conditional(...).if_(...), not Python 'if'"
        )


def _expect_expr(value: object) -> Expression:
    if isinstance(value, Expression):
        return value
    if isinstance(value, bool):
        return Comparison("==", value, True)
    raise PlaitTypeError(f"{value!r} is not a condition; combine comparisons with & and |")


class Comparison(Expression):
    """`left <op> right` where at least one side is usually a promise."""

    def __init__(self, op: str, left: object, right: object) -> None:
        self.op, self.left, self.right = op, left, right

    def __repr__(self) -> str:
        return f"({self.left!r} {self.op} {self.right!r})"


class Conjunction(Expression):
    """`left & right` or `left | right`."""

    def __init__(self, op: str, left: Expression, right: Expression) -> None:
        self.op, self.left, self.right = op, left, right

    def __repr__(self) -> str:
        return f"({self.left!r} {self.op} {self.right!r})"


def expression_proto(
    expr: Expression | bool, operand_var: typing.Callable[[Promise], str]
) -> condition_pb2.BooleanExpression:
    """The proto of `expr`; `operand_var` names the branch input bound to each promise."""
    if isinstance(expr, bool):
        expr = Comparison("==", expr, True)
    if isinstance(expr, Conjunction):
        lop = condition_pb2.ConjunctionExpression.LogicalOperator
        return condition_pb2.BooleanExpression(
            conjunction=condition_pb2.ConjunctionExpression(
                operator=lop.LOGICAL_OPERATOR_AND if expr.op == "&" else lop.LOGICAL_OPERATOR_OR,
                left_expression=expression_proto(expr.left, operand_var),
                right_expression=expression_proto(expr.right, operand_var),
            )
        )
    if isinstance(expr, Comparison):
        return condition_pb2.BooleanExpression(
            comparison=condition_pb2.ComparisonExpression(
                operator=_OPS[expr.op],
                left_value=_operand(expr.left, operand_var),
                right_value=_operand(expr.right, operand_var),
            )
        )
    raise PlaitTypeError(
        f"conditional: {expr!r} is not a condition; use comparisons of promises "
        "(==, !=, <, <=, >, >=) combined with & and |"
    )


def _operand(value: object, operand_var: typing.Callable[[Promise], str]) -> condition_pb2.Operand:
    if isinstance(value, Promise):
        return condition_pb2.Operand(var=operand_var(value))
    if isinstance(value, Expression):
        raise PlaitTypeError(f"cannot compare a condition: {value!r}")
    return condition_pb2.Operand(literal=_types.to_literal(value, type(value), var="operand"))


# Bindings ------------------------------------------------------------------------------------


def castable(
    src: types_pb2.LiteralType, dst: types_pb2.LiteralType
) -> tuple[bool, types_pb2.LiteralType | None]:
    """A simple castability check: equal types, or `dst` a union with `src` as a variant.

    Returns whether it is castable and, for the union case, the variant to tag the value with.
    The engine's compiler does the full check; this catches the plain mistakes early.
    """
    if src == dst:
        return True, None
    if dst.HasField("union_type") and any(v == src for v in dst.union_type.variants):
        return True, src
    return False, None


def _contains_promise(value: object) -> bool:
    if isinstance(value, Promise):
        return True
    if isinstance(value, (list, tuple)):
        return any(_contains_promise(v) for v in value)
    if isinstance(value, dict):
        return any(_contains_promise(v) for v in value.values())
    return False


def _check_not_builder_object(value: object, where: str) -> None:
    if isinstance(value, Expression):
        raise PlaitTypeError(
            f"{where}: a condition {value!r} cannot be passed as a value; use it in "
            "conditional(...).if_(...)"
        )
    if isinstance(value, UnfinishedChain):
        raise PlaitError(
            f"{where}: got an unfinished conditional; a conditional needs an else_(): end "
            "it with .else_().then(...) or .else_().fail(...)"
        )


_SCALARS = (int, float, str, bool)


def fill_binding(
    target: literals_pb2.BindingData,
    value: object,
    hint: Any,
    ltype: types_pb2.LiteralType,
    *,
    where: str,
    builder: Builder,
) -> None:
    """Writes into `target` how `value` feeds `where` (the hot path of a large fan-out)."""
    if type(value) in _SCALARS:
        _types.fill_literal(target.literal, value, hint, var=where)
        return
    if isinstance(value, Promise) and value._builder is builder:
        ok, variant = castable(value._type, ltype)
        if ok:
            value._fill_reference(target.promise)
            if variant is not None:
                target.union_variant.CopyFrom(variant)
            return
    target.CopyFrom(binding_data(value, hint, ltype, where=where, builder=builder))


def binding_data(
    value: object, hint: Any, ltype: types_pb2.LiteralType, *, where: str, builder: Builder
) -> literals_pb2.BindingData:
    """How `value` (a promise, a plain value, or a list/dict holding promises) feeds `where`."""
    _check_not_builder_object(value, where)
    if isinstance(value, Promise):
        if value._builder is not builder:
            raise PlaitError(
                f"{where}: {value!r} belongs to another workflow or dynamic body; promises "
                "cannot cross bodies (pass the value as an input instead)"
            )
        ok, variant = castable(value._type, ltype)
        if not ok:
            raise PlaitTypeError(
                f"{where}: {value!r} has type {_types.type_repr(value._type)}, but "
                f"{_types.type_repr(ltype)} is expected"
            )
        return literals_pb2.BindingData(promise=value._reference(), union_variant=variant)
    if _contains_promise(value):
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin in (typing.Union, types.UnionType):
            for variant_hint in args:
                vo = typing.get_origin(variant_hint)
                if (vo is list and isinstance(value, (list, tuple))) or (
                    vo is dict and isinstance(value, dict)
                ):
                    vt = _types.literal_type(variant_hint, where=where)
                    inner = binding_data(value, variant_hint, vt, where=where, builder=builder)
                    inner.union_variant.CopyFrom(vt)
                    return inner
        if origin is list and isinstance(value, (list, tuple)):
            elem, et = args[0], ltype.collection_type
            return literals_pb2.BindingData(
                collection=literals_pb2.BindingDataCollection(
                    bindings=[
                        binding_data(v, elem, et, where=f"{where}[{i}]", builder=builder)
                        for i, v in enumerate(value)
                    ]
                )
            )
        if origin is dict and isinstance(value, dict):
            elem, et = args[1], ltype.map_value_type
            return literals_pb2.BindingData(
                map=literals_pb2.BindingDataMap(
                    bindings={
                        k: binding_data(v, elem, et, where=f"{where}[{k!r}]", builder=builder)
                        for k, v in value.items()
                    }
                )
            )
        raise PlaitTypeError(
            f"{where}: promises can be nested only in list[T] and dict[str, T] values, "
            f"not in a value of type {_types.type_repr(ltype)}"
        )
    return literals_pb2.BindingData(literal=_types.to_literal(value, hint, var=where))


def output_bindings(
    result: object, iface: PyInterface, *, builder: Builder
) -> list[literals_pb2.Binding]:
    """The output bindings of a workflow or dynamic body from what it returned."""
    names = list(iface.outputs)
    where = iface.where
    if iface.output_kind == "none":
        if result is not None:
            raise PlaitTypeError(f"{where} returned {result!r} but declares no outputs (-> None)")
        return []
    if iface.output_kind == "single":
        if isinstance(result, tuple) and len(result) != 1 and _contains_promise(result):
            raise PlaitTypeError(f"{where} returned {len(result)} values but declares 1 output")
        values: tuple[Any, ...] = (result,)
    else:
        if not isinstance(result, tuple):
            raise PlaitTypeError(
                f"{where} returned 1 value but declares {len(names)} outputs ({', '.join(names)})"
            )
        if len(result) != len(names):
            raise PlaitTypeError(
                f"{where} returned {len(result)} values but declares {len(names)} outputs "
                f"({', '.join(names)})"
            )
        values = tuple(result)
    return [
        literals_pb2.Binding(
            var=n,
            binding=binding_data(
                v,
                iface.outputs[n],
                iface.output_types[n],
                where=f"output '{n}' of {where}",
                builder=builder,
            ),
        )
        for n, v in zip(names, values, strict=True)
    ]


def make_outputs(node_id: str, iface: PyInterface, builder: Builder) -> Any:
    """The promise(s) a call returns: one promise, a tuple, a NamedTuple, or None."""
    promises = [
        Promise(node_id, n, iface.outputs[n], iface.output_types[n], builder) for n in iface.outputs
    ]
    if iface.output_kind == "none":
        return None
    if iface.output_kind == "single":
        return promises[0]
    if iface.output_kind == "namedtuple":
        assert iface.output_class is not None
        return iface.output_class(*promises)
    return tuple(promises)


def add_call(builder: Builder, entity: Entity, bound: dict[str, Any]) -> Any:
    """Adds the node for a call of `entity` with keyword arguments `bound`; returns promises."""
    iface = entity.python_interface
    node_id = builder.new_node_id()
    if builder.wire is not None and not builder.branches:
        # A dynamic body: the node in wire form when its values allow (the common case).
        data = _dynamic_wire.encoder(entity, Promise).encode(node_id, bound, builder)
        if data is not None:
            builder.add_wire(data)
            builder.add_ref(entity)
            return make_outputs(node_id, iface, builder)
    # Built in place: a dynamic body may add tens of thousands of nodes.
    node = workflow_pb2.Node(id=node_id)
    node.metadata.name = entity.short_name
    for n, hint in iface.inputs.items():
        value = bound[n] if n in bound else iface.defaults[n]
        b = node.inputs.add()
        b.var = n
        fill_binding(
            b.binding,
            value,
            hint,
            iface.input_types[n],
            where=f"input '{n}' of {iface.where} (node {node_id})",
            builder=builder,
        )
    entity._set_node_target(node)
    builder.add_ref(entity)
    builder.emit(node, iface)
    return make_outputs(node_id, iface, builder)
