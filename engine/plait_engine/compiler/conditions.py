"""Branch conditions: boolean expressions over the branch node's inputs and constants."""

from __future__ import annotations

from collections.abc import Mapping

from plaitidl.core.v1 import condition_pb2, types_pb2

from plait_engine.compiler.limits import Limits
from plait_engine.compiler.report import Location, Reporter
from plait_engine.compiler.scope import names
from plait_engine.compiler.validation import literal_depth_problem
from plait_engine.type_check import TypeRef, scalar_literal_type, type_str

__all__ = ["ConditionChecker", "Operand", "operand_of"]

_CMP = condition_pb2.ComparisonExpression
_ORDERED_CLASSES = frozenset({"num", "str", "datetime", "duration"})
_OP_NAMES = {
    _CMP.OPERATOR_EQ: "==",
    _CMP.OPERATOR_NEQ: "!=",
    _CMP.OPERATOR_GT: ">",
    _CMP.OPERATOR_GTE: ">=",
    _CMP.OPERATOR_LT: "<",
    _CMP.OPERATOR_LTE: "<=",
}
_EQUALITY_OPS = frozenset({_CMP.OPERATOR_EQ, _CMP.OPERATOR_NEQ})
_SIMPLE_CLASSES = {
    types_pb2.SIMPLE_TYPE_INTEGER: frozenset({"num"}),
    types_pb2.SIMPLE_TYPE_FLOAT: frozenset({"num"}),
    types_pb2.SIMPLE_TYPE_STRING: frozenset({"str"}),
    types_pb2.SIMPLE_TYPE_BOOLEAN: frozenset({"bool"}),
    types_pb2.SIMPLE_TYPE_DATETIME: frozenset({"datetime"}),
    types_pb2.SIMPLE_TYPE_DURATION: frozenset({"duration"}),
    types_pb2.SIMPLE_TYPE_NONE: frozenset({"none"}),
}

Operand = tuple[frozenset[str], str] | None
"""An operand's comparable classes and its printed type; None when unknown (already reported)."""


def _operand_classes(t: types_pb2.LiteralType) -> frozenset[str]:
    kind = t.WhichOneof("type")
    if kind == "simple":
        return _SIMPLE_CLASSES.get(t.simple, frozenset())
    if kind == "enum_type":
        return frozenset({"str"})
    if kind == "union_type":
        out: frozenset[str] = frozenset()
        for v in t.union_type.variants:
            out |= _operand_classes(v)
        return out
    return frozenset()


def operand_of(t: TypeRef | None) -> Operand:
    """What a branch input bound to a value of type `t` can be compared as.

    Args:
        t: The binding's evident type: None when unknown, an empty type for a list or map
            built from bindings.
    """
    if t is None:
        return None
    if t.pb.WhichOneof("type") is None:
        return (frozenset(), "a list or map")
    return (_operand_classes(t.pb), type_str(t.pb))


class ConditionChecker:
    """Checks the conditions of one branch node against its inputs."""

    def __init__(
        self,
        report: Reporter,
        limits: Limits,
        g: Location,
        nid: str,
        operands: Mapping[str, Operand],
    ) -> None:
        self.report = report
        self.limits = limits
        self.g = g
        self.nid = nid
        self.operands = operands

    def err(self, field: str, desc: str) -> None:
        """Report a problem of this branch node."""
        self.report.err(self.g, field, f"branch node {self.nid!r}{desc}")

    def check_expr(self, expr: condition_pb2.BooleanExpression, path: str) -> None:
        """Check a boolean expression (iteratively: conjunctions may nest deeply)."""
        # (expression or None for a missing side, its path); popped in depth-first order.
        stack: list[tuple[condition_pb2.BooleanExpression | None, str]] = [(expr, path)]
        while stack:
            cur, p = stack.pop()
            if cur is None:
                self.err(p, f": {p.rsplit('.', 1)[-1]} is missing")
                continue
            kind = cur.WhichOneof("expr")
            if kind is None:
                self.err(p, ": empty boolean expression")
            elif kind == "comparison":
                self._comparison(cur.comparison, f"{p}.comparison")
            else:
                c = cur.conjunction
                cp = f"{p}.conjunction"
                if c.operator == condition_pb2.ConjunctionExpression.LOGICAL_OPERATOR_UNSPECIFIED:
                    self.err(f"{cp}.operator", ": logical operator is unspecified")
                for side in ("right_expression", "left_expression"):
                    stack.append((getattr(c, side) if c.HasField(side) else None, f"{cp}.{side}"))

    def _comparison(self, c: condition_pb2.ComparisonExpression, p: str) -> None:
        left = self._operand(c.left_value, f"{p}.left_value")
        right = self._operand(c.right_value, f"{p}.right_value")
        op = _OP_NAMES.get(c.operator)
        if op is None:
            self.err(f"{p}.operator", ": comparison operator is unspecified")
            return
        if left is None or right is None:
            return
        common = left[0] & right[0]
        if c.operator not in _EQUALITY_OPS:
            common &= _ORDERED_CLASSES
        if not common:
            self.err(
                p,
                f": cannot compare {left[1]} {op} {right[1]} "
                "(ints and floats compare with each other, strings and enums with strings; "
                "bools and none support only == and !=)",
            )

    def _operand(self, o: condition_pb2.Operand, path: str) -> Operand:
        kind = o.WhichOneof("value")
        if kind == "var":
            if o.var not in self.operands:
                self.err(
                    f"{path}.var",
                    f": operand {o.var!r} is not an input of the branch node "
                    f"(inputs: {names(self.operands)})",
                )
                return None
            got = self.operands[o.var]
            if got is not None and not got[0]:
                self.err(f"{path}.var", f": operand {o.var!r} ({got[1]}) is not a scalar")
                return None
            return got
        if kind == "literal":
            deep = literal_depth_problem(o.literal, self.limits.max_literal_depth)
            if deep is not None:
                self.err(f"{path}.literal", f": operand literal: {deep}")
                return None
            t = scalar_literal_type(o.literal)
            classes = _operand_classes(t) if t is not None else frozenset()
            if t is None or not classes:
                self.err(f"{path}.literal", ": operand literal is not a scalar")
                return None
            return classes, type_str(t)
        self.err(path, ": operand is empty")
        return None
