"""The common node, checked in a few field reads: a fan-out of a million is a million of them.

Most nodes of a large graph are task nodes whose bindings are plain literals or promises of
sibling outputs, and a wide fan-out runs one task with one shape of bindings. Checking each the
general way costs the same string building and lookups every time. Here a node is checked by
reading each field once, against what the first node of the same task already established
(its target, its input types, which literal kinds fit them). Whatever is not that common case,
or does not pass, goes to the general checker (`walker.GraphCompiler`), which reports exactly
what it always reported: this module never reports a violation itself.
"""

from __future__ import annotations

from plaitidl.core.v1 import literals_pb2, workflow_pb2

from plait_engine.compiler.limits import Limits
from plait_engine.compiler.scope import Graph, Plan
from plait_engine.compiler.validation import NODE_ID, variable_name_problem
from plait_engine.ids import START_NODE
from plait_engine.type_check import TypeRef, castable_ref, literal_problem


class FastNodes:
    """Fast checks of common nodes; `None` answers send a node to the general checker."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        # A task reference's serialized identifier -> the plan its first node resolved to.
        self._plans: dict[bytes, Plan] = {}
        # (declared type, literal kind) -> whether such a scalar literal fits the type.
        self._fits: dict[tuple[bytes, str], bool] = {}
        self._good_vars: set[str] = set()

    @staticmethod
    def good_id(nid: str) -> bool:
        """Whether a node id is acceptable (`validation.node_id_problem` would say None)."""
        return nid != START_NODE and NODE_ID.fullmatch(nid) is not None

    def plan(self, node: workflow_pb2.Node) -> tuple[Plan | None, bytes]:
        """The known plan of a task node (None when it is not known yet), and the key to
        `remember` it under (b"" for other nodes)."""
        if node.WhichOneof("target") != "task_node":
            return None, b""
        key = node.task_node.task_id.SerializeToString()
        return self._plans.get(key), key

    def remember(self, key: bytes, plan: Plan) -> None:
        """A task reference resolved without a violation: later nodes reuse the plan."""
        if key and plan.target is not None:
            self._plans[key] = plan
            limit = self._limits.max_name_length
            self._good_vars.update(
                n for n in plan.target.inputs if variable_name_problem(n, limit) is None
            )

    def check(self, g: Graph, node: workflow_pb2.Node, plan: Plan, deps: set[str]) -> bool:
        """Whether a task node's bindings all fit (adding the siblings it waits for to
        `deps`); False sends it to the general checker, which reports what is wrong."""
        target = plan.target
        if target is None or target.fixed or node.upstream_node_ids:
            return False
        inputs = target.inputs
        seen: set[str] = set()
        for b in node.inputs:
            name = b.var
            t = inputs.get(name)
            if t is None or name in seen or name not in self._good_vars:
                return False
            seen.add(name)
            bd = b.binding
            if bd.HasField("union_variant"):
                return False
            kind = bd.WhichOneof("value")
            if kind == "literal":
                if not self._literal_fits(bd.literal, t):
                    return False
            elif kind != "promise" or not self._promise_fits(g, bd.promise, t, deps):
                return False
        if len(seen) < len(inputs):
            return all(n in seen or n in target.optional for n in inputs)
        return True

    def _literal_fits(self, lit: literals_pb2.Literal, t: TypeRef) -> bool:
        if lit.WhichOneof("value") != "scalar":
            return False
        scalar = lit.scalar
        sk = scalar.WhichOneof("value")
        kind: str
        if sk == "primitive":
            kind = scalar.primitive.WhichOneof("value") or ""
        elif sk == "none_value":
            kind = sk
        else:
            return False
        if t.pb.WhichOneof("type") != "simple":  # an enum's or a union's: by its value
            fits = literal_problem(lit, t.pb) is None
        else:  # a simple type: by the literal's kind alone
            fits_known = self._fits.get((t.key, kind))
            if fits_known is None:
                fits_known = self._fits[(t.key, kind)] = literal_problem(lit, t.pb) is None
            fits = fits_known
        # A primitive nests no deeper than 0; its size is the only per-value limit.
        return fits and lit.ByteSize() <= self._limits.max_literal_bytes

    @staticmethod
    def _promise_fits(
        g: Graph, p: literals_pb2.OutputReference, t: TypeRef, deps: set[str]
    ) -> bool:
        if p.attr_path:
            return False
        nid = p.node_id
        if nid == START_NODE:
            outs = g.inputs
        else:
            found = g.outputs_of.get(nid)
            if found is None:
                return False
            outs = found
        src = outs.get(p.var)
        if src is None or not castable_ref(src, t):
            return False
        if nid != START_NODE:
            deps.add(nid)
        return True


__all__ = ["FastNodes"]
