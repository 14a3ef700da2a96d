"""The compiler: one checker for registered workflows and for dynamic job specs.

Both entry points return a *closure*: a `DynamicJobSpec` whose `nodes` and `outputs` are the
root graph's, and whose `tasks`, `subworkflows` and `launch_plans` hold every template the graph
reaches, transitively, so the scheduler never needs the registry to run it.

Errors are collected in one pass and raised once as `InvalidArgument`, whose violations carry
field paths into the compiled message (``nodes[3].inputs.numbers``). Violations inside a
template that the request does not contain (a registered subworkflow) are reported at the
field that references it, with the inner path in the description.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from plaitidl.core.v1 import (
    condition_pb2,
    dynamic_job_pb2,
    identifier_pb2,
    interface_pb2,
    literals_pb2,
    tasks_pb2,
    types_pb2,
    workflow_pb2,
)

from plait_engine.errors import FieldViolation, InvalidArgument
from plait_engine.type_check import (
    TypeRef,
    castable_ref,
    is_variant_of,
    literal_problem,
    same_type,
    scalar_literal_type,
    type_problems,
    type_str,
    valid_ratio,
)

__all__ = [
    "MAX_VIOLATIONS",
    "START_NODE",
    "Limits",
    "Resolver",
    "compile_dynamic",
    "compile_workflow",
    "id_key",
    "node_output_types",
    "node_upstreams",
    "resolve_execution_inputs",
    "validate_launch_plan",
    "validate_task",
]

START_NODE = "start-node"
"""The reserved node id whose outputs are the enclosing workflow's (or generator's) inputs."""

MAX_VIOLATIONS = 100
"""At most this many violations are returned; the message still counts them all."""

MAX_RETRIES = 100
"""Upper bound for retry budgets; more is almost certainly a unit mistake."""

_NODE_ID = re.compile(r"[A-Za-z0-9_.\-]{1,63}")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ORDERED_CLASSES = frozenset({"num", "str", "datetime", "duration"})
_OP_NAMES = {
    condition_pb2.ComparisonExpression.OPERATOR_EQ: "==",
    condition_pb2.ComparisonExpression.OPERATOR_NEQ: "!=",
    condition_pb2.ComparisonExpression.OPERATOR_GT: ">",
    condition_pb2.ComparisonExpression.OPERATOR_GTE: ">=",
    condition_pb2.ComparisonExpression.OPERATOR_LT: "<",
    condition_pb2.ComparisonExpression.OPERATOR_LTE: "<=",
}
_EQUALITY_OPS = frozenset(
    {
        condition_pb2.ComparisonExpression.OPERATOR_EQ,
        condition_pb2.ComparisonExpression.OPERATOR_NEQ,
    }
)
_NONE_TYPE = types_pb2.LiteralType(simple=types_pb2.SIMPLE_TYPE_NONE)


@dataclass(frozen=True)
class Limits:
    """Bounds a compiled graph must respect.

    Attributes:
        max_nodes: Nodes per workflow or spec, counting branch cases and array inner nodes.
        max_depth: Nesting depth of dynamic specs (a spec yielded inside a spec is depth 2).
        max_literal_bytes: Serialized size of one inline literal in a binding.
    """

    max_nodes: int = 10_000
    max_depth: int = 64
    max_literal_bytes: int = 1 << 20


class Resolver(Protocol):
    """Looks up registered templates; each method returns None for an unknown identifier."""

    def get_task(self, id: identifier_pb2.Identifier) -> tasks_pb2.TaskTemplate | None:
        """The registered task template, or None."""
        ...

    def get_workflow(self, id: identifier_pb2.Identifier) -> workflow_pb2.WorkflowTemplate | None:
        """The registered workflow template, or None."""
        ...

    def get_launch_plan(self, id: identifier_pb2.Identifier) -> workflow_pb2.LaunchPlan | None:
        """The registered launch plan, or None."""
        ...


def id_key(id: identifier_pb2.Identifier) -> str:
    """The canonical key of an identifier: ``project/domain/name/version``.

    The resource type is excluded; empty project and domain take their documented defaults
    ("default", "development") so that both spellings name the same entity.

    Args:
        id: The identifier.

    Returns:
        The key used for every dict of templates in the engine.
    """
    return f"{id.project or 'default'}/{id.domain or 'development'}/{id.name}/{id.version}"


# --------------------------------------------------------------------------------------------
# Upstreams


def node_upstreams(node: workflow_pb2.Node) -> set[str]:
    """The ids of the sibling nodes `node` depends on.

    Promises anywhere in its bindings, in the bindings of branch cases' then-nodes (and else
    node), and explicit `upstream_node_ids`; "start-node" excluded. An array node's inner node
    bindings are ignored by the engine and so are not counted.

    Args:
        node: The node.

    Returns:
        The ids.
    """
    out: set[str] = set()
    _collect_upstreams(node, out)
    out.discard(START_NODE)
    return out


def _collect_upstreams(node: workflow_pb2.Node, out: set[str]) -> None:
    out.update(node.upstream_node_ids)
    for b in node.inputs:
        _collect_promises(b.binding, out)
    if node.WhichOneof("target") == "branch_node":
        bn = node.branch_node
        for blk in (bn.case, *bn.other):
            if blk.HasField("then_node"):
                _collect_upstreams(blk.then_node, out)
        if bn.HasField("else_node"):
            _collect_upstreams(bn.else_node, out)


def _collect_promises(bd: literals_pb2.BindingData, out: set[str]) -> None:
    kind = bd.WhichOneof("value")
    if kind == "promise":
        out.add(bd.promise.node_id)
    elif kind == "collection":
        for el in bd.collection.bindings:
            _collect_promises(el, out)
    elif kind == "map":
        for el in bd.map.bindings.values():
            _collect_promises(el, out)


# --------------------------------------------------------------------------------------------
# Template-level checks


def _identifier_problems(
    id: identifier_pb2.Identifier, field_: str, kind: identifier_pb2.ResourceType.ValueType
) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if not id.name:
        out.append((f"{field_}.name", "the identifier has no name"))
    elif len(id.name) > 255:
        out.append((f"{field_}.name", "the name is longer than 255 characters"))
    if not id.version:
        out.append((f"{field_}.version", "the identifier has no version"))
    if id.resource_type not in (identifier_pb2.RESOURCE_TYPE_UNSPECIFIED, kind):
        out.append(
            (
                f"{field_}.resource_type",
                f"resource_type is {identifier_pb2.ResourceType.Name(id.resource_type)}, "
                f"expected {identifier_pb2.ResourceType.Name(kind)}",
            )
        )
    return out


def _variables_problems(vmap: interface_pb2.VariableMap, field_: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, v in enumerate(vmap.variables):
        if not _VAR_NAME.fullmatch(v.name):
            out.append((f"{field_}[{i}].name", f"{v.name!r} is not a valid identifier"))
        elif v.name in seen:
            out.append((f"{field_}[{i}].name", f"duplicate variable {v.name!r}"))
        seen.add(v.name)
        if not v.HasField("type"):
            out.append((f"{field_}[{i}].type", f"variable {v.name!r} has no type"))
        else:
            out.extend(type_problems(v.type, f"{field_}[{i}].type"))
    return out


def _interface_problems(iface: interface_pb2.TypedInterface, field_: str) -> list[tuple[str, str]]:
    return _variables_problems(iface.inputs, f"{field_}.inputs") + _variables_problems(
        iface.outputs, f"{field_}.outputs"
    )


def _retry_problems(r: tasks_pb2.RetryStrategy, field_: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if r.retries > MAX_RETRIES:
        out.append((f"{field_}.retries", f"{r.retries} retries is over the limit of {MAX_RETRIES}"))
    if r.HasField("system_retries") and r.system_retries > MAX_RETRIES:
        out.append(
            (
                f"{field_}.system_retries",
                f"{r.system_retries} system retries is over the limit of {MAX_RETRIES}",
            )
        )
    return out


def _task_problems(task: tasks_pb2.TaskTemplate) -> list[tuple[str, str]]:
    out = _identifier_problems(task.id, "id", identifier_pb2.RESOURCE_TYPE_TASK)
    out.extend(_interface_problems(task.interface, "interface"))
    md = task.metadata
    out.extend(_retry_problems(md.retries, "metadata.retries"))
    if md.timeout.seconds < 0 or md.timeout.nanos < 0:
        out.append(("metadata.timeout", "the timeout is negative"))
    inputs = {v.name for v in task.interface.inputs.variables}
    for i, name in enumerate(md.cache_ignore_inputs):
        if name not in inputs:
            out.append((f"metadata.cache_ignore_inputs[{i}]", f"{name!r} is not an input"))
    target = task.WhichOneof("target")
    if target is None:
        out.append(("target", "the task has no target (worker or process)"))
    elif target == "worker":
        if not task.worker.queue:
            out.append(("worker.queue", "a worker target needs a queue"))
        if not task.worker.handler:
            out.append(("worker.handler", "a worker target needs a handler"))
    elif not task.process.command or not task.process.command[0]:
        out.append(("process.command", "a process target needs a command"))
    return out


def _raise(subject: str, problems: Sequence[tuple[str, str]]) -> None:
    if problems:
        violations = [FieldViolation(f, d) for f, d in dict.fromkeys(problems)]
        raise InvalidArgument(_summary(subject, violations), violations)


def _summary(subject: str, violations: Sequence[FieldViolation]) -> str:
    first = violations[0]
    more = len(violations) - 1
    tail = f" (and {more} more violation{'s' if more > 1 else ''})" if more else ""
    return f"{subject} is invalid: {first.field}: {first.description}{tail}"


def validate_task(task: tasks_pb2.TaskTemplate) -> None:
    """Check a task template on its own.

    The identifier has a name and version; interface variable names are valid identifiers,
    unique, and their types well formed; the target is complete (a worker target names a
    queue and a handler, a process target a command); retry budgets are at most
    `MAX_RETRIES` and the timeout is not negative.

    Args:
        task: The template.

    Raises:
        InvalidArgument: With one violation per problem; field paths are relative to the task.
    """
    _raise(f"task {id_key(task.id)}", _task_problems(task))


def _launch_plan_problems(
    lp: workflow_pb2.LaunchPlan, wf: workflow_pb2.WorkflowTemplate | None
) -> list[tuple[str, str]]:
    out = _identifier_problems(lp.id, "id", identifier_pb2.RESOURCE_TYPE_LAUNCH_PLAN)
    if wf is None:
        out.append(("workflow_id", f"workflow {id_key(lp.workflow_id)} not found"))
        return out
    types = {v.name: v.type for v in wf.interface.inputs.variables}
    for name in sorted(lp.fixed_inputs.literals):
        t = types.get(name)
        if t is None:
            out.append((f"fixed_inputs.{name}", f"{name!r} is not an input of the workflow"))
            continue
        p = literal_problem(lp.fixed_inputs.literals[name], t)
        if p is not None:
            out.append((f"fixed_inputs.{name}", p))
    for i, param in enumerate(lp.default_inputs.parameters):
        name = param.var.name
        f = f"default_inputs.parameters[{i}]"
        t = types.get(name)
        if t is None:
            out.append((f"{f}.var.name", f"{name!r} is not an input of the workflow"))
            continue
        if name in lp.fixed_inputs.literals:
            out.append((f"{f}.var.name", f"{name!r} is both fixed and defaulted"))
        if param.var.HasField("type") and not same_type(param.var.type, t):
            out.append(
                (
                    f"{f}.var.type",
                    f"declared {type_str(param.var.type)}, the workflow says {type_str(t)}",
                )
            )
        if param.WhichOneof("behavior") == "default":
            p = literal_problem(param.default, t)
            if p is not None:
                out.append((f"{f}.default", p))
    return out


def validate_launch_plan(lp: workflow_pb2.LaunchPlan, resolver: Resolver) -> None:
    """Check a launch plan against its (registered) workflow.

    Args:
        lp: The launch plan.
        resolver: Where its workflow is looked up.

    Raises:
        InvalidArgument: When the workflow is unknown, a fixed or default input names no input
            of the workflow or has the wrong type, or an input is both fixed and defaulted.
    """
    wf = resolver.get_workflow(lp.workflow_id)
    _raise(f"launch plan {id_key(lp.id)}", _launch_plan_problems(lp, wf))


def resolve_execution_inputs(
    interface: interface_pb2.TypedInterface,
    defaults: interface_pb2.ParameterMap,
    inputs: literals_pb2.LiteralMap,
    fixed: literals_pb2.LiteralMap | None = None,
) -> literals_pb2.LiteralMap:
    """Validate a caller's execution inputs and complete them with defaults and fixed inputs.

    Args:
        interface: The workflow's interface.
        defaults: Defaults (the workflow's, or a launch plan's default_inputs). A parameter
            marked `required` has no default.
        inputs: What the caller gave.
        fixed: A launch plan's fixed inputs; the caller may not give them.

    Returns:
        The complete inputs: the caller's, then defaults for what is missing, then fixed.

    Raises:
        InvalidArgument: Field ``inputs.<name>`` for an unknown, fixed, missing or mistyped
            input; all problems at once.
    """
    fixed_map = fixed.literals if fixed is not None else {}
    types = {v.name: v.type for v in interface.inputs.variables}
    default_of = {
        p.var.name: p.default for p in defaults.parameters if p.WhichOneof("behavior") == "default"
    }
    problems: list[tuple[str, str]] = []
    result = literals_pb2.LiteralMap()
    for name in sorted(inputs.literals):
        f = f"inputs.{name}"
        t = types.get(name)
        if t is None:
            known = ", ".join(types) or "none"
            problems.append((f, f"unknown input {name!r} (inputs: {known})"))
        elif name in fixed_map:
            problems.append((f, f"input {name!r} is fixed by the launch plan and cannot be set"))
        else:
            p = literal_problem(inputs.literals[name], t)
            if p is not None:
                problems.append((f, f"input {name!r}: {p}"))
            else:
                result.literals[name].CopyFrom(inputs.literals[name])
    for name, t in types.items():
        if name in inputs.literals:
            continue
        if name in fixed_map:
            result.literals[name].CopyFrom(fixed_map[name])
        elif name in default_of:
            result.literals[name].CopyFrom(default_of[name])
        else:
            problems.append((f"inputs.{name}", f"missing required input {name!r} ({type_str(t)})"))
    _raise("execution inputs", problems)
    return result


# --------------------------------------------------------------------------------------------
# The graph compiler


@dataclass
class _Target:
    """What a node runs, as seen by its bindings."""

    what: str
    inputs: dict[str, TypeRef]
    outputs: dict[str, TypeRef]
    optional: frozenset[str] = frozenset()
    fixed: frozenset[str] = frozenset()
    plan: _Plan | None = None


@dataclass
class _Case:
    node: workflow_pb2.Node
    path: str
    plan: _Plan
    block: workflow_pb2.IfBlock | None  # None for the else node
    block_path: str


@dataclass
class _Plan:
    """Pass-one result for a node: its resolved target and output types."""

    target: _Target | None = None
    outputs: dict[str, TypeRef] | None = None
    cases: list[_Case] = field(default_factory=list)


def _plan_of(target: _Target | None) -> _Plan:
    # Nodes running the same target share one plan: 10k fan-out nodes need no 10k objects.
    if target is None:
        return _Plan()
    if target.plan is None:
        target.plan = _Plan(target, target.outputs)
    return target.plan


@dataclass
class _Graph:
    """A scope: the inputs of "start-node" and the outputs of the sibling nodes."""

    inputs: dict[str, TypeRef]
    start_what: str
    field_prefix: str = ""
    desc_prefix: str = ""
    fold_field: str | None = None
    outputs_of: dict[str, dict[str, TypeRef] | None] = field(default_factory=dict)
    branch_ids: set[str] = field(default_factory=set)


class _Site:
    """Where a binding is being checked: its scope, what it found, and (lazily, since only
    errors need it) the context that messages start with."""

    __slots__ = ("deps", "g", "infer", "problems", "var", "what")

    def __init__(
        self, g: _Graph, what: str, var: str, deps: set[str], *, infer: bool = False
    ) -> None:
        self.g = g
        self.what = what
        self.var = var
        self.deps = deps
        self.infer = infer
        self.problems: list[tuple[str, str]] = []

    @property
    def ctx(self) -> str:
        return f"{self.what} {self.var!r}"


def _vars(vmap: interface_pb2.VariableMap) -> dict[str, TypeRef]:
    return {v.name: TypeRef(v.type) for v in vmap.variables}


def _names(d: Iterable[str]) -> str:
    return ", ".join(d) or "none"


def _count_nodes(nodes: Iterable[workflow_pb2.Node]) -> int:
    n = 0
    stack = list(nodes)
    while stack:
        node = stack.pop()
        n += 1
        kind = node.WhichOneof("target")
        if kind == "branch_node":
            bn = node.branch_node
            stack.extend(b.then_node for b in (bn.case, *bn.other) if b.HasField("then_node"))
            if bn.HasField("else_node"):
                stack.append(bn.else_node)
        elif kind == "array_node" and node.array_node.HasField("node"):
            stack.append(node.array_node.node)
    return n


def _operand_classes(t: types_pb2.LiteralType) -> frozenset[str]:
    kind = t.WhichOneof("type")
    if kind == "simple":
        return {
            types_pb2.SIMPLE_TYPE_INTEGER: frozenset({"num"}),
            types_pb2.SIMPLE_TYPE_FLOAT: frozenset({"num"}),
            types_pb2.SIMPLE_TYPE_STRING: frozenset({"str"}),
            types_pb2.SIMPLE_TYPE_BOOLEAN: frozenset({"bool"}),
            types_pb2.SIMPLE_TYPE_DATETIME: frozenset({"datetime"}),
            types_pb2.SIMPLE_TYPE_DURATION: frozenset({"duration"}),
            types_pb2.SIMPLE_TYPE_NONE: frozenset({"none"}),
        }.get(t.simple, frozenset())
    if kind == "enum_type":
        return frozenset({"str"})
    if kind == "union_type":
        out: frozenset[str] = frozenset()
        for v in t.union_type.variants:
            out |= _operand_classes(v)
        return out
    return frozenset()


_T = TypeVar("_T", tasks_pb2.TaskTemplate, workflow_pb2.WorkflowTemplate, workflow_pb2.LaunchPlan)

# An operand's comparable classes and its printed type; None when unknown (already reported).
_Operand = tuple[frozenset[str], str] | None


class _Compiler:
    def __init__(
        self,
        resolver: Resolver,
        limits: Limits,
        spec: dynamic_job_pb2.DynamicJobSpec | None,
        *,
        compile_subworkflows: bool = True,
    ) -> None:
        self.resolver = resolver
        self.limits = limits
        self.compile_subworkflows = compile_subworkflows
        self.violations: list[FieldViolation] = []
        self.emb_tasks: dict[str, tuple[int, tasks_pb2.TaskTemplate]] = {}
        self.emb_wfs: dict[str, tuple[int, workflow_pb2.WorkflowTemplate]] = {}
        self.emb_lps: dict[str, tuple[int, workflow_pb2.LaunchPlan]] = {}
        self.task_targets: dict[str, _Target | None] = {}
        self.wf_cache: dict[str, workflow_pb2.WorkflowTemplate | None] = {}
        self.lp_cache: dict[str, workflow_pb2.LaunchPlan | None] = {}
        self.lp_checked: dict[str, list[tuple[str, str]]] = {}
        self.array_targets: dict[tuple[str, tuple[str, ...], bool], _Target] = {}
        self.cl_tasks: dict[str, tasks_pb2.TaskTemplate] = {}
        self.cl_wfs: dict[str, workflow_pb2.WorkflowTemplate] = {}
        self.cl_lps: dict[str, workflow_pb2.LaunchPlan] = {}
        self.stack: list[str] = []
        self.compiled: set[str] = set()
        if spec is not None:
            self._index_embedded(spec)

    # -- reporting ---------------------------------------------------------------------------

    def err(self, g: _Graph | None, field_: str, desc: str) -> None:
        if g is None:
            self.violations.append(FieldViolation(field_, desc))
        elif g.fold_field is not None:
            self.violations.append(FieldViolation(g.fold_field, f"{g.desc_prefix}{field_}: {desc}"))
        else:
            self.violations.append(FieldViolation(g.field_prefix + field_, g.desc_prefix + desc))

    def finish(self, subject: str) -> None:
        if self.violations:
            violations = list(dict.fromkeys(self.violations))
            # A 10k-node spec with one mistake repeated must not yield a 10k-entry status.
            raise InvalidArgument(_summary(subject, violations), violations[:MAX_VIOLATIONS])

    # -- templates -----------------------------------------------------------------------------

    def _index_embedded(self, spec: dynamic_job_pb2.DynamicJobSpec) -> None:
        self._index("tasks", spec.tasks, self.emb_tasks)
        self._index("subworkflows", spec.subworkflows, self.emb_wfs)
        self._index("launch_plans", spec.launch_plans, self.emb_lps)

    def _index(self, name: str, items: Sequence[_T], index: dict[str, tuple[int, _T]]) -> None:
        for i, item in enumerate(items):
            key = id_key(item.id)
            prev = index.get(key)
            if prev is None:
                index[key] = (i, item)
            elif prev[1] != item:
                self.err(
                    None,
                    f"{name}[{i}].id",
                    f"{key} is listed twice with different content ({name}[{prev[0]}])",
                )

    def task_target(self, key: str, id: identifier_pb2.Identifier) -> _Target | None:
        if key in self.task_targets:
            return self.task_targets[key]
        emb = self.emb_tasks.get(key)
        task: tasks_pb2.TaskTemplate | None
        if emb is not None:
            i, task = emb
            problems = _task_problems(task)
            for f, d in problems:
                self.err(None, f"tasks[{i}].{f}", f"task {key}: {d}")
            if problems:
                task = None
        else:
            task = self.resolver.get_task(id)
        target = None
        if task is not None:
            self.cl_tasks.setdefault(key, task)
            target = _Target(
                f"task {key}", _vars(task.interface.inputs), _vars(task.interface.outputs)
            )
        self.task_targets[key] = target
        return target

    def get_workflow(
        self, key: str, id: identifier_pb2.Identifier
    ) -> workflow_pb2.WorkflowTemplate | None:
        if key not in self.wf_cache:
            emb = self.emb_wfs.get(key)
            self.wf_cache[key] = emb[1] if emb is not None else self.resolver.get_workflow(id)
        return self.wf_cache[key]

    def get_launch_plan(
        self, key: str, id: identifier_pb2.Identifier
    ) -> workflow_pb2.LaunchPlan | None:
        if key not in self.lp_cache:
            emb = self.emb_lps.get(key)
            self.lp_cache[key] = emb[1] if emb is not None else self.resolver.get_launch_plan(id)
        return self.lp_cache[key]

    # -- graphs --------------------------------------------------------------------------------

    def compile_workflow_template(self, wf: workflow_pb2.WorkflowTemplate, g: _Graph) -> None:
        for f, d in _identifier_problems(wf.id, "id", identifier_pb2.RESOURCE_TYPE_WORKFLOW):
            self.err(g, f, d)
        iface_problems = _interface_problems(wf.interface, "interface")
        for f, d in iface_problems:
            self.err(g, f, d)
        for i, p in enumerate(wf.defaults.parameters):
            f = f"defaults.parameters[{i}]"
            t = g.inputs.get(p.var.name)
            if t is None:
                self.err(g, f"{f}.var.name", f"default for unknown input {p.var.name!r}")
            elif p.WhichOneof("behavior") == "default" and not iface_problems:
                prob = literal_problem(p.default, t.pb)
                if prob is not None:
                    self.err(g, f"{f}.default", f"default of input {p.var.name!r}: {prob}")
        if iface_problems:
            return  # types are unusable; checking the nodes would only add noise
        self.compile_graph(g, wf.nodes, wf.outputs, _vars(wf.interface.outputs))

    def compile_graph(
        self,
        g: _Graph,
        nodes: Sequence[workflow_pb2.Node],
        outputs: Sequence[literals_pb2.Binding],
        out_vars: dict[str, TypeRef],
    ) -> None:
        count = _count_nodes(nodes)
        if count > self.limits.max_nodes:
            self.err(
                g,
                "nodes",
                f"{count} nodes is over the limit of {self.limits.max_nodes} per graph; "
                "split the work into subworkflows or nested dynamic tasks",
            )
            return
        index_of: dict[str, int] = {}
        plans: list[_Plan] = []
        for i, node in enumerate(nodes):
            path = f"nodes[{i}]"
            nid = node.id
            if nid == START_NODE or not _NODE_ID.fullmatch(nid):
                self.check_node_id(g, nid, f"{path}.id")
            if nid in index_of:
                self.err(
                    g, f"{path}.id", f"duplicate node id {nid!r} (also nodes[{index_of[nid]}])"
                )
            else:
                index_of[nid] = i
            plan = self.plan(g, node, path)
            plans.append(plan)
            if nid not in g.outputs_of:
                g.outputs_of[nid] = plan.outputs
                if plan.cases:
                    g.branch_ids.add(nid)
        deps: dict[str, set[str]] = {}
        for i, node in enumerate(nodes):
            d: set[str] = set()
            self.check_node(g, node, plans[i], f"nodes[{i}]", d)
            if index_of.get(node.id) == i:
                deps[node.id] = d
        cycle = _find_cycle(deps)
        if cycle is not None:
            self.err(
                g,
                f"nodes[{index_of[cycle[0]]}]",
                f"node {cycle[0]!r} is part of a dependency cycle: "
                + " -> ".join(cycle)
                + " (each node waits for the next)",
            )
        self.check_outputs(g, outputs, out_vars)

    def check_node_id(self, g: _Graph, nid: str, field_: str) -> None:
        if nid == START_NODE:
            self.err(g, field_, f"{START_NODE!r} is reserved for the enclosing inputs")
        elif not _NODE_ID.fullmatch(nid):
            self.err(
                g,
                field_,
                f"node id {nid!r} must match [A-Za-z0-9_.-]{{1,63}} "
                "(no '/': the engine builds paths '<parent>/<child>')",
            )

    def check_outputs(
        self, g: _Graph, outputs: Sequence[literals_pb2.Binding], out_vars: dict[str, TypeRef]
    ) -> None:
        seen: set[str] = set()
        sink: set[str] = set()
        for b in outputs:
            f = f"outputs.{b.var}"
            if b.var in seen:
                self.err(g, f, f"output {b.var!r} is bound twice")
                continue
            seen.add(b.var)
            t = out_vars.get(b.var)
            if t is None:
                self.err(g, f, f"{b.var!r} is not an output (outputs: {_names(out_vars)})")
            self.check_binding(_Site(g, "output", b.var, sink), b.binding, t, f)
        for name, t in out_vars.items():
            if name not in seen:
                self.err(g, f"outputs.{name}", f"output {name!r} ({type_str(t.pb)}) is not bound")

    # -- pass one: targets and output types -----------------------------------------------------

    def plan(self, g: _Graph, node: workflow_pb2.Node, path: str) -> _Plan:
        kind = node.WhichOneof("target")
        nid = node.id
        if kind == "task_node":
            target = self.resolve_task(g, node.task_node.task_id, f"{path}.task_node.task_id", nid)
            return _plan_of(target)
        if kind == "workflow_node":
            target = self.resolve_workflow_node(g, node.workflow_node, f"{path}.workflow_node", nid)
            return _plan_of(target)
        if kind == "array_node":
            target = self.resolve_array(g, node.array_node, f"{path}.array_node", nid)
            return _plan_of(target)
        if kind == "branch_node":
            return self.plan_branch(g, node, path)
        self.err(g, path, f"node {nid!r} has no target (task, workflow, branch or array node)")
        return _Plan()

    def resolve_task(
        self, g: _Graph, id: identifier_pb2.Identifier, field_: str, nid: str
    ) -> _Target | None:
        key = id_key(id)
        target = self.task_target(key, id)
        if target is None and key not in self.emb_tasks:
            self.err(
                g, field_, f"node {nid!r}: task {key} not found (not in the spec, not registered)"
            )
        return target

    def resolve_workflow_node(
        self, g: _Graph, wn: workflow_pb2.WorkflowNode, path: str, nid: str
    ) -> _Target | None:
        ref = wn.WhichOneof("reference")
        if ref is None:
            self.err(g, path, f"node {nid!r}: workflow node names no workflow or launch plan")
            return None
        if ref == "sub_workflow_id":
            f = f"{path}.sub_workflow_id"
            key = id_key(wn.sub_workflow_id)
            wf = self.get_workflow(key, wn.sub_workflow_id)
            if wf is None:
                self.err(
                    g,
                    f,
                    f"node {nid!r}: workflow {key} not found (not in the spec, not registered)",
                )
                return None
            self.enter_workflow(g, key, wf, f, nid)
            return _Target(
                f"workflow {key}",
                _vars(wf.interface.inputs),
                _vars(wf.interface.outputs),
                optional=frozenset(
                    p.var.name
                    for p in wf.defaults.parameters
                    if p.WhichOneof("behavior") == "default"
                ),
            )
        f = f"{path}.launch_plan_id"
        lkey = id_key(wn.launch_plan_id)
        lp = self.get_launch_plan(lkey, wn.launch_plan_id)
        if lp is None:
            self.err(g, f, f"node {nid!r}: launch plan {lkey} not found")
            return None
        wkey = id_key(lp.workflow_id)
        wf = self.get_workflow(wkey, lp.workflow_id)
        if lkey not in self.lp_checked:
            self.lp_checked[lkey] = _launch_plan_problems(lp, wf)
            for pf, d in self.lp_checked[lkey]:
                self.err(g, f, f"node {nid!r}: launch plan {lkey}: {pf}: {d}")
        if wf is None or self.lp_checked[lkey]:
            return None
        self.cl_lps.setdefault(lkey, lp)
        self.enter_workflow(g, wkey, wf, f, nid)
        wf_defaults = {
            p.var.name for p in wf.defaults.parameters if p.WhichOneof("behavior") == "default"
        }
        lp_defaults = {
            p.var.name
            for p in lp.default_inputs.parameters
            if p.WhichOneof("behavior") == "default"
        }
        lp_required = {
            p.var.name
            for p in lp.default_inputs.parameters
            if p.WhichOneof("behavior") == "required"
        }
        return _Target(
            f"launch plan {lkey}",
            _vars(wf.interface.inputs),
            _vars(wf.interface.outputs),
            optional=frozenset((wf_defaults - lp_required) | lp_defaults),
            fixed=frozenset(lp.fixed_inputs.literals),
        )

    def enter_workflow(
        self, g: _Graph, key: str, wf: workflow_pb2.WorkflowTemplate, field_: str, nid: str
    ) -> None:
        """Compile a referenced workflow once, refusing workflows that contain themselves."""
        if key in self.stack:
            chain = " -> ".join([*self.stack[self.stack.index(key) :], key])
            self.err(
                g,
                field_,
                f"node {nid!r}: workflow {key} contains itself ({chain}); a workflow cannot "
                "contain itself, use @dynamic for recursion",
            )
            return
        self.cl_wfs.setdefault(key, wf)
        if key in self.compiled or not self.compile_subworkflows:
            return
        self.compiled.add(key)
        emb = self.emb_wfs.get(key)
        if emb is not None:
            sub = _Graph(
                _vars(wf.interface.inputs),
                "workflow inputs",
                field_prefix=f"subworkflows[{emb[0]}].",
                desc_prefix=f"subworkflow {key}: ",
            )
        else:
            outer = g.fold_field if g.fold_field is not None else g.field_prefix + field_
            sub = _Graph(
                _vars(wf.interface.inputs),
                "workflow inputs",
                desc_prefix=f"{g.desc_prefix}workflow {key}: ",
                fold_field=outer,
            )
        self.stack.append(key)
        try:
            self.compile_workflow_template(wf, sub)
        finally:
            self.stack.pop()

    def resolve_array(
        self, g: _Graph, an: workflow_pb2.ArrayNode, path: str, nid: str
    ) -> _Target | None:
        crit = an.WhichOneof("success_criteria")
        if crit == "min_success_ratio" and not valid_ratio(an.min_success_ratio):
            self.err(
                g,
                f"{path}.min_success_ratio",
                f"node {nid!r}: min_success_ratio {an.min_success_ratio} is not in [0, 1]",
            )
        inner = an.node
        if not an.HasField("node") or inner.WhichOneof("target") != "task_node":
            self.err(g, f"{path}.node", f"array node {nid!r}: the inner node must be a task node")
            return None
        key = id_key(inner.task_node.task_id)
        task = self.resolve_task(g, inner.task_node.task_id, f"{path}.node.task_node.task_id", nid)
        if task is None:
            return None
        broadcast = tuple(an.broadcast_inputs)
        bad = False
        for j, name in enumerate(broadcast):
            if name not in task.inputs:
                bad = True
                self.err(
                    g,
                    f"{path}.broadcast_inputs[{j}]",
                    f"array node {nid!r}: {name!r} is not an input of {task.what} "
                    f"(inputs: {_names(task.inputs)})",
                )
        if task.inputs and all(n in broadcast for n in task.inputs):
            self.err(
                g,
                f"{path}.broadcast_inputs",
                f"array node {nid!r}: every input is broadcast; at least one must be mapped",
            )
        elif not task.inputs:
            self.err(g, f"{path}.node", f"array node {nid!r}: {task.what} has no input to map over")
        if bad:
            return None
        # The list length is known only at run time, so any min_successes may let some fail.
        tolerant = crit == "min_successes" or (
            crit == "min_success_ratio" and an.min_success_ratio < 1.0
        )
        ckey = (key, broadcast, tolerant)
        cached = self.array_targets.get(ckey)
        if cached is None:
            inputs = {
                n: t if n in broadcast else TypeRef(types_pb2.LiteralType(collection_type=t.pb))
                for n, t in task.inputs.items()
            }
            outputs = {
                n: TypeRef(
                    types_pb2.LiteralType(collection_type=_optional(t.pb) if tolerant else t.pb)
                )
                for n, t in task.outputs.items()
            }
            cached = self.array_targets[ckey] = _Target(f"array of {task.what}", inputs, outputs)
        return cached

    def plan_branch(self, g: _Graph, node: workflow_pb2.Node, path: str) -> _Plan:
        bn = node.branch_node
        nid = node.id
        bpath = f"{path}.branch_node"
        plan = _Plan()
        blocks: list[tuple[workflow_pb2.IfBlock, str]] = []
        if not bn.HasField("case"):
            self.err(g, f"{bpath}.case", f"branch node {nid!r} has no case")
        else:
            blocks.append((bn.case, f"{bpath}.case"))
        blocks.extend((blk, f"{bpath}.other[{j}]") for j, blk in enumerate(bn.other))
        seen: dict[str, str] = {}

        def add(
            tn: workflow_pb2.Node, tpath: str, blk: workflow_pb2.IfBlock | None, bp: str
        ) -> None:
            self.check_node_id(g, tn.id, f"{tpath}.id")
            if tn.id in seen:
                self.err(
                    g,
                    f"{tpath}.id",
                    f"branch node {nid!r}: then-node id {tn.id!r} is used twice "
                    f"(also {seen[tn.id]})",
                )
            seen.setdefault(tn.id, tpath)
            plan.cases.append(_Case(tn, tpath, self.plan(g, tn, tpath), blk, bp))

        for blk, bp in blocks:
            if not blk.HasField("condition"):
                self.err(g, f"{bp}.condition", f"branch node {nid!r}: the case has no condition")
            if not blk.HasField("then_node"):
                self.err(g, f"{bp}.then_node", f"branch node {nid!r}: the case has no then_node")
            else:
                add(blk.then_node, f"{bp}.then_node", blk, bp)
        default = bn.WhichOneof("default")
        if default == "else_node":
            add(bn.else_node, f"{bpath}.else_node", None, f"{bpath}.else_node")
        elif default is None:
            self.err(g, bpath, f"branch node {nid!r} has neither an else_node nor an error default")
        case_outputs = [c.plan.outputs for c in plan.cases]
        if not case_outputs or any(o is None for o in case_outputs):
            return plan
        first = case_outputs[0]
        assert first is not None
        shared: dict[str, TypeRef] = {}
        for name, t in first.items():
            if all(
                o is not None
                and name in o
                and castable_ref(o[name], t)
                and castable_ref(t, o[name])
                for o in case_outputs[1:]
            ):
                shared[name] = t
        plan.outputs = shared
        return plan

    # -- pass two: bindings, conditions, dependencies -------------------------------------------

    def check_node(
        self, g: _Graph, node: workflow_pb2.Node, plan: _Plan, path: str, deps: set[str]
    ) -> None:
        nid = node.id
        for k, uid in enumerate(node.upstream_node_ids):
            if uid == START_NODE or uid not in g.outputs_of:
                self.err(
                    g,
                    f"{path}.upstream_node_ids[{k}]",
                    f"node {nid!r}: unknown upstream node {uid!r}",
                )
            else:
                deps.add(uid)
        if node.WhichOneof("target") == "branch_node":
            self.check_branch(g, node, plan, path, deps)
            return
        target = plan.target
        seen: set[str] = set()
        what = f"node {nid!r} input"
        for b in node.inputs:
            name = b.var
            f = f"{path}.inputs.{name}"
            if name in seen:
                self.err(g, f, f"{what} {name!r} is bound twice")
                continue
            seen.add(name)
            t: TypeRef | None = None
            if target is not None:
                if name in target.fixed:
                    self.err(g, f, f"{what} {name!r} is fixed by {target.what} and cannot be bound")
                elif name not in target.inputs:
                    self.err(
                        g,
                        f,
                        f"node {nid!r}: {name!r} is not an input of {target.what} "
                        f"(inputs: {_names(target.inputs)})",
                    )
                else:
                    t = target.inputs[name]
            self.check_binding(_Site(g, what, name, deps), b.binding, t, f)
        if target is not None and len(seen) < len(target.inputs) + len(target.fixed):
            for name, t in target.inputs.items():
                if name not in seen and name not in target.optional and name not in target.fixed:
                    self.err(
                        g,
                        f"{path}.inputs.{name}",
                        f"node {nid!r}: input {name!r} ({type_str(t.pb)}) of {target.what} "
                        "is not bound",
                    )

    def check_branch(
        self, g: _Graph, node: workflow_pb2.Node, plan: _Plan, path: str, deps: set[str]
    ) -> None:
        nid = node.id
        operands: dict[str, _Operand] = {}
        for b in node.inputs:
            f = f"{path}.inputs.{b.var}"
            ctx = f"branch node {nid!r} input {b.var!r}"
            if b.var in operands:
                self.err(g, f, f"{ctx} is bound twice")
                continue
            t = self.check_binding(
                _Site(g, f"branch node {nid!r} input", b.var, deps, infer=True), b.binding, None, f
            )
            if t is None:
                operands[b.var] = None
            elif t.pb.WhichOneof("type") is None:  # a list or map built from bindings
                operands[b.var] = (frozenset(), "a list or map")
            else:
                operands[b.var] = (_operand_classes(t.pb), type_str(t.pb))
        for case in plan.cases:
            if case.block is not None and case.block.HasField("condition"):
                self.check_expr(
                    g, case.block.condition, f"{case.block_path}.condition", nid, operands
                )
            self.check_node(g, case.node, case.plan, case.path, deps)

    def check_expr(
        self,
        g: _Graph,
        expr: condition_pb2.BooleanExpression,
        path: str,
        nid: str,
        operands: Mapping[str, _Operand],
    ) -> None:
        kind = expr.WhichOneof("expr")
        if kind == "conjunction":
            c = expr.conjunction
            p = f"{path}.conjunction"
            if c.operator == condition_pb2.ConjunctionExpression.LOGICAL_OPERATOR_UNSPECIFIED:
                self.err(
                    g, f"{p}.operator", f"branch node {nid!r}: logical operator is unspecified"
                )
            for side in ("left_expression", "right_expression"):
                if not c.HasField(side):
                    self.err(g, f"{p}.{side}", f"branch node {nid!r}: {side} is missing")
                else:
                    self.check_expr(g, getattr(c, side), f"{p}.{side}", nid, operands)
            return
        if kind is None:
            self.err(g, path, f"branch node {nid!r}: empty boolean expression")
            return
        c2 = expr.comparison
        p = f"{path}.comparison"
        left = self.operand(g, c2.left_value, f"{p}.left_value", nid, operands)
        right = self.operand(g, c2.right_value, f"{p}.right_value", nid, operands)
        op = _OP_NAMES.get(c2.operator)
        if op is None:
            self.err(g, f"{p}.operator", f"branch node {nid!r}: comparison operator is unspecified")
            return
        if left is None or right is None:
            return
        common = left[0] & right[0]
        if c2.operator not in _EQUALITY_OPS:
            common &= _ORDERED_CLASSES
        if not common:
            self.err(
                g,
                p,
                f"branch node {nid!r}: cannot compare {left[1]} {op} {right[1]} "
                "(ints and floats compare with each other, strings and enums with strings; "
                "bools and none support only == and !=)",
            )

    def operand(
        self,
        g: _Graph,
        o: condition_pb2.Operand,
        path: str,
        nid: str,
        operands: Mapping[str, _Operand],
    ) -> _Operand:
        kind = o.WhichOneof("value")
        if kind == "var":
            if o.var not in operands:
                self.err(
                    g,
                    f"{path}.var",
                    f"branch node {nid!r}: operand {o.var!r} is not an input of the branch node "
                    f"(inputs: {_names(operands)})",
                )
                return None
            got = operands[o.var]
            if got is not None and not got[0]:
                self.err(
                    g,
                    f"{path}.var",
                    f"branch node {nid!r}: operand {o.var!r} ({got[1]}) is not a scalar",
                )
                return None
            return got
        if kind == "literal":
            t = scalar_literal_type(o.literal)
            classes = _operand_classes(t) if t is not None else frozenset()
            if not classes:
                self.err(
                    g, f"{path}.literal", f"branch node {nid!r}: operand literal is not a scalar"
                )
                return None
            assert t is not None
            return classes, type_str(t)
        self.err(g, path, f"branch node {nid!r}: operand is empty")
        return None

    def check_binding(
        self, site: _Site, bd: literals_pb2.BindingData, t: TypeRef | None, field_: str
    ) -> TypeRef | None:
        """Check one binding against its declared type (None: unknown, only walk it).

        With `site.infer`, returns the binding's own type when it is evident (a promise, a
        scalar literal or a union variant), which branch conditions use.
        """
        got = self.walk_binding(site, bd, t, field_, check_variant=True)
        if site.problems:
            ctx = site.ctx
            for f, d in site.problems:
                self.err(site.g, f, f"{ctx}: {d}")
        return got

    def walk_binding(
        self,
        s: _Site,
        bd: literals_pb2.BindingData,
        t: TypeRef | None,
        field_: str,
        *,
        check_variant: bool,
    ) -> TypeRef | None:
        g, problems = s.g, s.problems
        uv: TypeRef | None = None
        if check_variant and bd.HasField("union_variant"):
            uv = TypeRef(bd.union_variant)
            if t is not None:
                if t.pb.WhichOneof("type") != "union_type":
                    problems.append(
                        (field_, f"union_variant is set but {type_str(t.pb)} is not a union")
                    )
                    t = None  # reported once; checking the value too would only echo it
                elif not is_variant_of(uv, t.pb):
                    problems.append(
                        (
                            field_,
                            f"union_variant {type_str(uv.pb)} is not a variant of {type_str(t.pb)}",
                        )
                    )
                    t = None
                else:
                    t = uv
        kind = bd.WhichOneof("value")
        if kind == "promise":
            src = self.promise_type(s, bd.promise, field_)
            if src is not None and t is not None and not castable_ref(src, t):
                p = bd.promise
                problems.append(
                    (
                        field_,
                        f"expected {type_str(t.pb)}, got {type_str(src.pb)} "
                        f"from {p.node_id}.{p.var}",
                    )
                )
            return uv or src
        if kind == "literal":
            lit = bd.literal
            size = lit.ByteSize()
            if size > self.limits.max_literal_bytes:
                self.err(
                    g,
                    field_,
                    f"{s.ctx}: inline literal is {size} bytes, over the limit of "
                    f"{self.limits.max_literal_bytes} bytes; pass large values by reference",
                )
            elif t is not None:
                prob = literal_problem(lit, t.pb)
                if prob is not None:
                    problems.append((field_, prob))
            if uv is not None or not s.infer:
                return uv
            st = scalar_literal_type(lit)
            return TypeRef(st) if st is not None else TypeRef(types_pb2.LiteralType())
        if kind in ("collection", "map"):
            want = "collection_type" if kind == "collection" else "map_value_type"
            elem: TypeRef | None = None
            if t is not None:
                tk = t.pb.WhichOneof("type")
                if tk == "union_type":
                    self.walk_union(s, bd, t, field_, want)
                    return uv
                if tk != want:
                    noun = "a list" if kind == "collection" else "a map"
                    problems.append((field_, f"expected {type_str(t.pb)}, got {noun} of bindings"))
                else:
                    elem = TypeRef(getattr(t.pb, want))
            if kind == "collection":
                for j, el in enumerate(bd.collection.bindings):
                    self.walk_binding(s, el, elem, f"{field_}[{j}]", check_variant=True)
            else:
                for k in sorted(bd.map.bindings):
                    self.walk_binding(
                        s, bd.map.bindings[k], elem, f'{field_}["{k}"]', check_variant=True
                    )
            # Containers are never comparable; an empty type marks "known, not a scalar".
            return uv or TypeRef(types_pb2.LiteralType())
        problems.append((field_, "the binding has no value"))
        return None

    def walk_union(
        self, s: _Site, bd: literals_pb2.BindingData, t: TypeRef, field_: str, want: str
    ) -> None:
        candidates = [v for v in t.pb.union_type.variants if v.WhichOneof("type") == want]
        if not candidates:
            noun = "a list" if want == "collection_type" else "a map"
            s.problems.append((field_, f"expected {type_str(t.pb)}, got {noun} of bindings"))
            self.walk_binding(
                _Site(s.g, s.what, s.var, s.deps), bd, None, field_, check_variant=False
            )
            return
        first: list[tuple[str, str]] | None = None
        for v in candidates:
            sub = _Site(s.g, s.what, s.var, s.deps)
            self.walk_binding(sub, bd, TypeRef(v), field_, check_variant=False)
            trial = sub.problems
            if not trial:
                return
            first = trial if first is None else first
        assert first is not None
        s.problems.extend(first)

    def promise_type(
        self, s: _Site, p: literals_pb2.OutputReference, field_: str
    ) -> TypeRef | None:
        g = s.g
        nid = p.node_id
        if nid == START_NODE:
            outs: dict[str, TypeRef] | None = g.inputs
            if p.var not in g.inputs:
                self.err(
                    g,
                    field_,
                    f"{s.ctx}: promise {START_NODE}.{p.var} names no {g.start_what[:-1]} "
                    f"(inputs: {_names(g.inputs)})",
                )
                return None
        else:
            if nid not in g.outputs_of:
                self.err(g, field_, f"{s.ctx}: promise refers to unknown node {nid!r}")
                return None
            s.deps.add(nid)
            outs = g.outputs_of[nid]
            if outs is None:
                return None  # the node's target is unresolved, reported there
            if p.var not in outs:
                hint = (
                    "; a branch node has only the outputs every case produces"
                    if nid in g.branch_ids
                    else ""
                )
                self.err(
                    g,
                    field_,
                    f"{s.ctx}: node {nid!r} has no output {p.var!r} "
                    f"(outputs: {_names(outs)}{hint})",
                )
                return None
        assert outs is not None
        t = outs[p.var]
        if not p.attr_path:
            return t
        cur = t.pb
        for k, step in enumerate(p.attr_path):
            sk = step.WhichOneof("value")
            ck = cur.WhichOneof("type")
            nxt: types_pb2.LiteralType | None = None
            if sk == "name" and ck == "record_type":
                nxt = next((f.type for f in cur.record_type.fields if f.name == step.name), None)
            elif sk == "name" and ck == "map_value_type":
                nxt = cur.map_value_type
            elif sk == "index" and ck == "collection_type" and step.index >= 0:
                nxt = cur.collection_type
            if nxt is None:
                what = (
                    repr(step.name)
                    if sk == "name"
                    else f"[{step.index}]"
                    if sk
                    else "an empty step"
                )
                self.err(
                    g,
                    field_,
                    f"{s.ctx}: promise {nid}.{p.var} attr_path[{k}]: cannot take {what} "
                    f"of {type_str(cur)}",
                )
                return None
            cur = nxt
        return TypeRef(cur)

    # -- closure -----------------------------------------------------------------------------

    def closure(
        self,
        nodes: Sequence[workflow_pb2.Node],
        outputs: Sequence[literals_pb2.Binding],
        min_successes: int = 0,
    ) -> dynamic_job_pb2.DynamicJobSpec:
        out = dynamic_job_pb2.DynamicJobSpec(min_successes=min_successes)
        out.nodes.extend(nodes)
        out.outputs.extend(outputs)
        out.tasks.extend(self.cl_tasks.values())
        out.subworkflows.extend(self.cl_wfs.values())
        out.launch_plans.extend(self.cl_lps.values())
        return out


def _optional(t: types_pb2.LiteralType) -> types_pb2.LiteralType:
    if t.WhichOneof("type") == "union_type":
        if any(same_type(v, _NONE_TYPE) for v in t.union_type.variants):
            return t
        u = types_pb2.LiteralType()
        u.CopyFrom(t)
        u.union_type.variants.add().CopyFrom(_NONE_TYPE)
        return u
    return types_pb2.LiteralType(union_type=types_pb2.UnionType(variants=[t, _NONE_TYPE]))


def _find_cycle(deps: Mapping[str, set[str]]) -> list[str] | None:
    """One dependency cycle, as ``[a, b, ..., a]``, or None (Kahn's algorithm, linear)."""
    pending = {n: len(d) for n, d in deps.items()}
    users: dict[str, list[str]] = {}
    for n, d in deps.items():
        for up in d:
            users.setdefault(up, []).append(n)
    ready = [n for n, c in pending.items() if c == 0]
    while ready:
        n = ready.pop()
        for u in users.get(n, ()):
            pending[u] -= 1
            if pending[u] == 0:
                ready.append(u)
    left = {n for n, c in pending.items() if c > 0}
    if not left:
        return None
    # Every leftover node still waits on a leftover node, so walking them must loop.
    cur = next(n for n in deps if n in left)
    path: list[str] = []
    at: dict[str, int] = {}
    while cur not in at:
        at[cur] = len(path)
        path.append(cur)
        cur = min(d for d in deps[cur] if d in left)
    return [*path[at[cur] :], cur]


def compile_workflow(
    wf: workflow_pb2.WorkflowTemplate, resolver: Resolver, limits: Limits = Limits()
) -> dynamic_job_pb2.DynamicJobSpec:
    """Check a workflow template and build its closure.

    Args:
        wf: The workflow.
        resolver: Looks up registered tasks, workflows and launch plans.
        limits: Bounds to enforce.

    Returns:
        The closure: `nodes`/`outputs` are the workflow's; `tasks`, `subworkflows` and
        `launch_plans` hold every template the workflow reaches, each once.

    Raises:
        InvalidArgument: With every violation found; the message summarizes the first.
    """
    c = _Compiler(resolver, limits, None)
    key = id_key(wf.id)
    g = _Graph(_vars(wf.interface.inputs), "workflow inputs")
    c.stack.append(key)
    c.compiled.add(key)
    c.compile_workflow_template(wf, g)
    c.finish(f"workflow {key}")
    return c.closure(wf.nodes, wf.outputs)


def compile_dynamic(
    spec: dynamic_job_pb2.DynamicJobSpec,
    generator: tasks_pb2.TaskTemplate,
    resolver: Resolver,
    limits: Limits = Limits(),
    *,
    depth: int = 1,
) -> dynamic_job_pb2.DynamicJobSpec:
    """Check a spec yielded by `generator` against the generator's interface.

    Promises to "start-node" read the generator's inputs; `outputs` must bind every output of
    the generator. Templates are looked up in the spec first, then in the resolver.

    Args:
        spec: The spec the generator returned.
        generator: The task that returned it.
        resolver: Looks up registered templates.
        limits: Bounds to enforce.
        depth: How deeply this spec is nested in dynamic specs (1 for a generator run directly
            by a workflow).

    Returns:
        The closure (see `compile_workflow`), holding only the templates the spec reaches.

    Raises:
        InvalidArgument: With every violation found; the message summarizes the first.
    """
    subject = f"dynamic spec of generator {id_key(generator.id)}"
    c = _Compiler(resolver, limits, spec)
    if depth > limits.max_depth:
        c.err(
            None,
            "nodes",
            f"dynamic nesting depth {depth} is over the limit of {limits.max_depth}; "
            "does the recursion have a base case?",
        )
        c.finish(subject)
    g = _Graph(_vars(generator.interface.inputs), "generator inputs")
    c.compile_graph(g, spec.nodes, spec.outputs, _vars(generator.interface.outputs))
    if spec.min_successes > len(spec.nodes):
        c.err(
            None,
            "min_successes",
            f"min_successes {spec.min_successes} is more than the {len(spec.nodes)} nodes",
        )
    c.finish(subject)
    return c.closure(spec.nodes, spec.outputs, spec.min_successes)


class _NoResolver:
    def get_task(self, id: identifier_pb2.Identifier) -> tasks_pb2.TaskTemplate | None:
        return None

    def get_workflow(self, id: identifier_pb2.Identifier) -> workflow_pb2.WorkflowTemplate | None:
        return None

    def get_launch_plan(self, id: identifier_pb2.Identifier) -> workflow_pb2.LaunchPlan | None:
        return None


def node_output_types(
    node: workflow_pb2.Node, closure: dynamic_job_pb2.DynamicJobSpec
) -> dict[str, types_pb2.LiteralType]:
    """The output types of a node of a compiled closure.

    Task and workflow nodes have their target's outputs; array nodes lists of them (``T |
    none`` elements when failures are tolerated); branch nodes the outputs every case shares.

    Args:
        node: A node of the closure (or of one of its subworkflows).
        closure: The closure returned by a compile function.

    Returns:
        Output name to type.

    Raises:
        InvalidArgument: When the node's target is not in the closure.
    """
    c = _Compiler(_NoResolver(), Limits(), closure, compile_subworkflows=False)
    plan = c.plan(_Graph({}, "inputs"), node, "node")
    c.finish(f"node {node.id!r}")
    return {n: t.pb for n, t in (plan.outputs or {}).items()}
