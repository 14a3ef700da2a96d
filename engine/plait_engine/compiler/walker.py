"""The graph walker: compiles one graph (and every subworkflow it reaches) in two passes.

Pass one resolves each node's target and output types (`plan`); pass two checks bindings,
branch conditions and dependencies against them (`check_node`), then looks for cycles and
checks the graph's output bindings. The parts it delegates to (targets, bindings, conditions,
template lookup) sit below it and never call back except through `TargetResolver.enter`.
"""

from __future__ import annotations

from collections.abc import Sequence

from plaitidl.core.v1 import dynamic_job_pb2, identifier_pb2, literals_pb2, workflow_pb2

from plait_engine.compiler.bindings import BindingChecker
from plait_engine.compiler.closure import Templates
from plait_engine.compiler.conditions import ConditionChecker, Operand, operand_of
from plait_engine.compiler.fast import FastNodes
from plait_engine.compiler.graph import count_nodes, find_cycle, index_nodes
from plait_engine.compiler.limits import Limits, Resolver
from plait_engine.compiler.report import Reporter
from plait_engine.compiler.scope import Case, Graph, Plan, Site, names, plan_of, variables
from plait_engine.compiler.targets import TargetResolver
from plait_engine.compiler.templates import (
    interface_problems,
    literal_value_problem,
    template_id_problems,
)
from plait_engine.compiler.validation import node_id_problem, variable_name_problem
from plait_engine.ids import START_NODE
from plait_engine.type_check import TypeRef, castable_ref, type_str

__all__ = ["GraphCompiler"]


class GraphCompiler:
    """One compilation: the violations found and the templates reached."""

    def __init__(
        self,
        resolver: Resolver,
        limits: Limits,
        spec: dynamic_job_pb2.DynamicJobSpec | None,
        *,
        compile_subworkflows: bool = True,
    ) -> None:
        self.limits = limits
        self.report = Reporter()
        self.templates = Templates(resolver, limits, self.report, spec)
        self.targets = TargetResolver(self.report, self.templates, self.enter_workflow)
        self.bindings = BindingChecker(self.report, limits)
        self.fast = FastNodes(limits)
        self.compile_subworkflows = compile_subworkflows
        self.stack: list[str] = []
        self.compiled: set[str] = set()
        self._good_vars: set[str] = set()

    # -- graphs --------------------------------------------------------------------------------

    def workflow(self, wf: workflow_pb2.WorkflowTemplate, g: Graph) -> None:
        """Check a workflow template: identifier, interface, defaults, then its graph.

        `g.inputs` is filled here, once the interface is known to be sound: a type nested
        too deeply must be refused before anything serializes it.
        """
        err = self.report.err
        self.report.errs(
            g, template_id_problems(wf.id, "id", identifier_pb2.RESOURCE_TYPE_WORKFLOW)
        )
        iface_problems = interface_problems(wf.interface, "interface", self.limits)
        self.report.errs(g, iface_problems)
        if not iface_problems:
            g.inputs = variables(wf.interface.inputs)
        known = {v.name for v in wf.interface.inputs.variables}
        for i, p in enumerate(wf.defaults.parameters):
            f = f"defaults.parameters[{i}]"
            if p.var.name not in known:
                err(g, f"{f}.var.name", f"default for unknown input {p.var.name!r}")
            elif p.WhichOneof("behavior") == "default" and not iface_problems:
                t = g.inputs[p.var.name].pb
                prob = literal_value_problem(p.default, t, self.limits)
                if prob is not None:
                    err(g, f"{f}.default", f"default of input {p.var.name!r}: {prob}")
        if iface_problems:
            return  # types are unusable; checking the nodes would only add noise
        self.graph(g, wf.nodes, wf.outputs, variables(wf.interface.outputs))

    def graph(
        self,
        g: Graph,
        nodes: Sequence[workflow_pb2.Node],
        outputs: Sequence[literals_pb2.Binding],
        out_vars: dict[str, TypeRef],
    ) -> None:
        """Check the nodes and output bindings of one graph."""
        count = count_nodes(nodes)
        if count > self.limits.max_nodes:
            self.report.err(
                g,
                "nodes",
                f"{count} nodes is over the limit of {self.limits.max_nodes} per graph; "
                "split the work into subworkflows or nested dynamic tasks",
            )
            return
        index_of, duplicates = index_nodes(nodes)
        dup = set(duplicates)
        plans = [self._plan_node(g, node, i, i in dup, index_of) for i, node in enumerate(nodes)]
        deps: dict[str, set[str]] = {}
        fast = self.fast
        for i, node in enumerate(nodes):
            d: set[str] = set()
            if not fast.check(g, node, plans[i], d):
                self.check_node(g, node, plans[i], f"nodes[{i}]", d)
            if d and i not in dup:
                deps[node.id] = d
        cycle = find_cycle(deps)
        if cycle is not None:
            self.report.err(
                g,
                f"nodes[{index_of[cycle[0]]}]",
                f"node {cycle[0]!r} is part of a dependency cycle: "
                + " -> ".join(cycle)
                + " (each node waits for the next)",
            )
        self.check_outputs(g, outputs, out_vars)

    def _plan_node(
        self, g: Graph, node: workflow_pb2.Node, i: int, dup: bool, index_of: dict[str, int]
    ) -> Plan:
        """Pass one for the node at `i`: its id, and its plan (known ones reused)."""
        nid = node.id
        if not self.fast.good_id(nid):
            self.check_node_id(g, nid, f"nodes[{i}].id")
        if dup:
            self.report.err(
                g, f"nodes[{i}].id", f"duplicate node id {nid!r} (also nodes[{index_of[nid]}])"
            )
        plan, key = self.fast.plan(node)
        if plan is None:
            before = len(self.report.violations)
            plan = self.plan(g, node, f"nodes[{i}]")
            if len(self.report.violations) == before:
                self.fast.remember(key, plan)
        if nid not in g.outputs_of:
            g.outputs_of[nid] = plan.outputs
            if plan.cases:
                g.branch_ids.add(nid)
        return plan

    def enter_workflow(
        self, g: Graph, key: str, wf: workflow_pb2.WorkflowTemplate, field: str, nid: str
    ) -> None:
        """Compile a referenced workflow once, refusing workflows that contain themselves."""
        if key in self.stack:
            chain = " -> ".join([*self.stack[self.stack.index(key) :], key])
            self.report.err(
                g,
                field,
                f"node {nid!r}: workflow {key} contains itself ({chain}); a workflow cannot "
                "contain itself, use @dynamic for recursion",
            )
            return
        self.templates.workflows.setdefault(key, wf)
        if key in self.compiled or not self.compile_subworkflows:
            return
        self.compiled.add(key)
        emb = self.templates.emb_wfs.get(key)
        inputs: dict[str, TypeRef] = {}  # filled by `workflow` once the interface is checked
        if emb is not None:
            sub = Graph(
                inputs,
                "workflow inputs",
                field_prefix=f"subworkflows[{emb[0]}].",
                desc_prefix=f"subworkflow {key}: ",
            )
        else:
            outer = g.fold_field if g.fold_field is not None else g.field_prefix + field
            sub = Graph(
                inputs,
                "workflow inputs",
                desc_prefix=f"{g.desc_prefix}workflow {key}: ",
                fold_field=outer,
            )
        self.stack.append(key)
        try:
            self.workflow(wf, sub)
        finally:
            self.stack.pop()

    def check_node_id(self, g: Graph, nid: str, field: str) -> None:
        """Report a node id that is reserved or not path-safe."""
        problem = node_id_problem(nid)
        if problem is not None:
            self.report.err(g, field, problem)

    def _bad_var(self, g: Graph, var: str, field: str, context: str) -> bool:
        if var in self._good_vars:
            return False
        problem = variable_name_problem(var, self.limits.max_name_length)
        if problem is not None:
            self.report.err(g, field, f"{context}: {problem}")
            return True
        self._good_vars.add(var)
        return False

    def check_outputs(
        self, g: Graph, outputs: Sequence[literals_pb2.Binding], out_vars: dict[str, TypeRef]
    ) -> None:
        """Check a graph's output bindings: each output bound once, with a fitting value."""
        seen: set[str] = set()
        sink: set[str] = set()
        for k, b in enumerate(outputs):
            if self._bad_var(g, b.var, f"outputs[{k}].var", "output"):
                continue
            f = f"outputs.{b.var}"
            if b.var in seen:
                self.report.err(g, f, f"output {b.var!r} is bound twice")
                continue
            seen.add(b.var)
            t = out_vars.get(b.var)
            if t is None:
                self.report.err(g, f, f"{b.var!r} is not an output (outputs: {names(out_vars)})")
            self.bindings.check(Site(g, "output", b.var, sink), b.binding, t, f)
        for name, t in out_vars.items():
            if name not in seen:
                self.report.err(
                    g, f"outputs.{name}", f"output {name!r} ({type_str(t.pb)}) is not bound"
                )

    # -- pass one: targets and output types -----------------------------------------------------

    def plan(self, g: Graph, node: workflow_pb2.Node, path: str) -> Plan:
        """Resolve what `node` runs and the types of its outputs."""
        kind = node.WhichOneof("target")
        nid = node.id
        if kind == "task_node":
            field = f"{path}.task_node.task_id"
            return plan_of(self.targets.task(g, node.task_node.task_id, field, nid))
        if kind == "workflow_node":
            field = f"{path}.workflow_node"
            return plan_of(self.targets.workflow_node(g, node.workflow_node, field, nid))
        if kind == "array_node":
            return plan_of(self.targets.array(g, node.array_node, f"{path}.array_node", nid))
        if kind == "branch_node":
            return self.plan_branch(g, node, path)
        self.report.err(
            g, path, f"node {nid!r} has no target (task, workflow, branch or array node)"
        )
        return Plan()

    def plan_branch(self, g: Graph, node: workflow_pb2.Node, path: str) -> Plan:
        """Plan each case of a branch node; its outputs are those every case shares."""
        bn = node.branch_node
        nid = node.id
        bpath = f"{path}.branch_node"
        plan = Plan()
        blocks: list[tuple[workflow_pb2.IfBlock, str]] = []
        if not bn.HasField("case"):
            self.report.err(g, f"{bpath}.case", f"branch node {nid!r} has no case")
        else:
            blocks.append((bn.case, f"{bpath}.case"))
        blocks.extend((blk, f"{bpath}.other[{j}]") for j, blk in enumerate(bn.other))
        seen: dict[str, str] = {}
        for blk, bp in blocks:
            if not blk.HasField("condition"):
                self.report.err(
                    g, f"{bp}.condition", f"branch node {nid!r}: the case has no condition"
                )
            if not blk.HasField("then_node"):
                self.report.err(
                    g, f"{bp}.then_node", f"branch node {nid!r}: the case has no then_node"
                )
            else:
                self._add_case(g, plan, seen, nid, (blk.then_node, f"{bp}.then_node", blk, bp))
        default = bn.WhichOneof("default")
        if default == "else_node":
            epath = f"{bpath}.else_node"
            self._add_case(g, plan, seen, nid, (bn.else_node, epath, None, epath))
        elif default is None:
            self.report.err(
                g, bpath, f"branch node {nid!r} has neither an else_node nor an error default"
            )
        plan.outputs = _shared_outputs(plan.cases)
        return plan

    def _add_case(
        self,
        g: Graph,
        plan: Plan,
        seen: dict[str, str],
        nid: str,
        case: tuple[workflow_pb2.Node, str, workflow_pb2.IfBlock | None, str],
    ) -> None:
        tn, tpath, blk, bp = case
        self.check_node_id(g, tn.id, f"{tpath}.id")
        if tn.id in seen:
            self.report.err(
                g,
                f"{tpath}.id",
                f"branch node {nid!r}: then-node id {tn.id!r} is used twice (also {seen[tn.id]})",
            )
        seen.setdefault(tn.id, tpath)
        plan.cases.append(Case(tn, tpath, self.plan(g, tn, tpath), blk, bp))

    # -- pass two: bindings, conditions, dependencies -------------------------------------------

    def check_node(
        self, g: Graph, node: workflow_pb2.Node, plan: Plan, path: str, deps: set[str]
    ) -> None:
        """Check a node's upstreams and bindings, adding the siblings it waits for to `deps`."""
        nid = node.id
        for k, uid in enumerate(node.upstream_node_ids):
            if uid == START_NODE or uid not in g.outputs_of:
                self.report.err(
                    g,
                    f"{path}.upstream_node_ids[{k}]",
                    f"node {nid!r}: unknown upstream node {uid!r}",
                )
            else:
                deps.add(uid)
        if node.WhichOneof("target") == "branch_node":
            self.check_branch(g, node, plan, path, deps)
            return
        seen = self._check_inputs(g, node, plan, path, deps)
        target = plan.target
        if target is None or len(seen) >= len(target.inputs) + len(target.fixed):
            return
        for name, t in target.inputs.items():
            if name not in seen and name not in target.optional and name not in target.fixed:
                self.report.err(
                    g,
                    f"{path}.inputs.{name}",
                    f"node {nid!r}: input {name!r} ({type_str(t.pb)}) of {target.what} "
                    "is not bound",
                )

    def _check_inputs(
        self, g: Graph, node: workflow_pb2.Node, plan: Plan, path: str, deps: set[str]
    ) -> set[str]:
        nid = node.id
        target = plan.target
        seen: set[str] = set()
        what = f"node {nid!r} input"
        for k, b in enumerate(node.inputs):
            name = b.var
            if self._bad_var(g, name, f"{path}.inputs[{k}].var", f"node {nid!r}"):
                continue
            f = f"{path}.inputs.{name}"
            if name in seen:
                self.report.err(g, f, f"{what} {name!r} is bound twice")
                continue
            seen.add(name)
            t: TypeRef | None = None
            if target is None:
                pass
            elif name in target.fixed:
                self.report.err(
                    g, f, f"{what} {name!r} is fixed by {target.what} and cannot be bound"
                )
            elif name not in target.inputs:
                self.report.err(
                    g,
                    f,
                    f"node {nid!r}: {name!r} is not an input of {target.what} "
                    f"(inputs: {names(target.inputs)})",
                )
            else:
                t = target.inputs[name]
            self.bindings.check(Site(g, what, name, deps), b.binding, t, f)
        return seen

    def check_branch(
        self, g: Graph, node: workflow_pb2.Node, plan: Plan, path: str, deps: set[str]
    ) -> None:
        """Check a branch node's inputs, its conditions and each case's node."""
        nid = node.id
        operands: dict[str, Operand] = {}
        what = f"branch node {nid!r} input"
        for k, b in enumerate(node.inputs):
            if self._bad_var(g, b.var, f"{path}.inputs[{k}].var", f"branch node {nid!r}"):
                continue
            f = f"{path}.inputs.{b.var}"
            if b.var in operands:
                self.report.err(g, f, f"{what} {b.var!r} is bound twice")
                continue
            site = Site(g, what, b.var, deps, infer=True)
            operands[b.var] = operand_of(self.bindings.check(site, b.binding, None, f))
        conditions = ConditionChecker(self.report, self.limits, g, nid, operands)
        for case in plan.cases:
            if case.block is not None and case.block.HasField("condition"):
                conditions.check_expr(case.block.condition, f"{case.block_path}.condition")
            self.check_node(g, case.node, case.plan, case.path, deps)


def _shared_outputs(cases: Sequence[Case]) -> dict[str, TypeRef] | None:
    """The outputs every case produces with one type; None when a case is unresolved."""
    case_outputs = [c.plan.outputs for c in cases]
    if not case_outputs or any(o is None for o in case_outputs):
        return None
    first = case_outputs[0]
    assert first is not None
    shared: dict[str, TypeRef] = {}
    for name, t in first.items():
        if all(
            o is not None and name in o and castable_ref(o[name], t) and castable_ref(t, o[name])
            for o in case_outputs[1:]
        ):
            shared[name] = t
    return shared
