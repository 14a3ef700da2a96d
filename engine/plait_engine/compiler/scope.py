"""The data the graph walker and its helpers share: scopes, targets, plans, binding sites."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from plaitidl.core.v1 import interface_pb2, workflow_pb2

from plait_engine.compiler.validation import Problem
from plait_engine.type_check import TypeRef

__all__ = ["Case", "Graph", "Plan", "Site", "Target", "names", "plan_of", "variables"]


@dataclass
class Target:
    """What a node runs, as seen by its bindings.

    Attributes:
        what: How messages name it (``task default/development/t/v1``).
        inputs: Input name to type.
        outputs: Output name to type.
        optional: Inputs that have defaults.
        fixed: Inputs a launch plan fixes (binding them is an error).
        plan: The plan shared by every node running this target.
    """

    what: str
    inputs: dict[str, TypeRef]
    outputs: dict[str, TypeRef]
    optional: frozenset[str] = frozenset()
    fixed: frozenset[str] = frozenset()
    plan: Plan | None = None


@dataclass
class Case:
    """One case of a branch node: its then-node (or else node) and where it is."""

    node: workflow_pb2.Node
    path: str
    plan: Plan
    block: workflow_pb2.IfBlock | None  # None for the else node
    block_path: str


@dataclass
class Plan:
    """Pass-one result for a node: its resolved target and output types."""

    target: Target | None = None
    outputs: dict[str, TypeRef] | None = None
    cases: list[Case] = field(default_factory=list)


def plan_of(target: Target | None) -> Plan:
    """The plan of a node running `target` (an empty plan when it is unresolved)."""
    # Nodes running the same target share one plan: 10k fan-out nodes need no 10k objects.
    if target is None:
        return Plan()
    if target.plan is None:
        target.plan = Plan(target, target.outputs)
    return target.plan


@dataclass
class Graph:
    """A scope: the inputs of "start-node" and the outputs of the sibling nodes.

    Also a `report.Location`: where violations inside this graph are reported.
    """

    inputs: dict[str, TypeRef]
    start_what: str
    field_prefix: str = ""
    desc_prefix: str = ""
    fold_field: str | None = None
    outputs_of: dict[str, dict[str, TypeRef] | None] = field(default_factory=dict)
    branch_ids: set[str] = field(default_factory=set)


class Site:
    """Where a binding is being checked: its scope, what it found, and (lazily, since only
    errors need it) the context that messages start with."""

    __slots__ = ("deps", "g", "infer", "problems", "var", "what")

    def __init__(
        self, g: Graph, what: str, var: str, deps: set[str], *, infer: bool = False
    ) -> None:
        self.g = g
        self.what = what
        self.var = var
        self.deps = deps
        self.infer = infer
        self.problems: list[Problem] = []

    @property
    def ctx(self) -> str:
        """How messages about this binding start (``node 'a' input 'x'``)."""
        return f"{self.what} {self.var!r}"

    def sibling(self) -> Site:
        """A site in the same place with no problems recorded yet."""
        return Site(self.g, self.what, self.var, self.deps)


def variables(vmap: interface_pb2.VariableMap) -> dict[str, TypeRef]:
    """Variable name to type."""
    return {v.name: TypeRef(v.type) for v in vmap.variables}


def names(d: Iterable[str]) -> str:
    """Names for a message: ``a, b`` or ``none``."""
    return ", ".join(d) or "none"
