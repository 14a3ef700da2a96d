"""What a node runs: tasks, subworkflows, launch plans and array nodes, as `Target`s."""

from __future__ import annotations

from collections.abc import Callable

from plaitidl.core.v1 import identifier_pb2, types_pb2, workflow_pb2

from plait_engine.compiler.closure import Templates
from plait_engine.compiler.report import Reporter
from plait_engine.compiler.scope import Graph, Target, names, variables
from plait_engine.compiler.templates import (
    interface_problems,
    launch_plan_problems,
    reference_problems,
)
from plait_engine.compiler.validation import Problem, node_id_problem
from plait_engine.ids import id_key
from plait_engine.type_check import TypeRef, same_type, valid_ratio

__all__ = ["EnterWorkflow", "TargetResolver", "optional"]

EnterWorkflow = Callable[[Graph, str, workflow_pb2.WorkflowTemplate, str, str], None]
"""Compiles a referenced workflow: ``(graph, key, workflow, field, node id)``. Passed in by
the walker, which sits above this module."""

_NONE_TYPE = types_pb2.LiteralType(simple=types_pb2.SIMPLE_TYPE_NONE)


def optional(t: types_pb2.LiteralType) -> types_pb2.LiteralType:
    """``t | none`` (`t` itself when it already admits none)."""
    if t.WhichOneof("type") == "union_type":
        if any(same_type(v, _NONE_TYPE) for v in t.union_type.variants):
            return t
        u = types_pb2.LiteralType()
        u.CopyFrom(t)
        u.union_type.variants.add().CopyFrom(_NONE_TYPE)
        return u
    return types_pb2.LiteralType(union_type=types_pb2.UnionType(variants=[t, _NONE_TYPE]))


def _defaulted(params: workflow_pb2.LaunchPlan | workflow_pb2.WorkflowTemplate) -> set[str]:
    pm = params.default_inputs if isinstance(params, workflow_pb2.LaunchPlan) else params.defaults
    return {p.var.name for p in pm.parameters if p.WhichOneof("behavior") == "default"}


class TargetResolver:
    """Resolves node targets, reporting unknown, invalid and self-containing references."""

    def __init__(self, report: Reporter, templates: Templates, enter: EnterWorkflow) -> None:
        self.report = report
        self.templates = templates
        self.enter = enter
        self._lp_checked: dict[str, list[Problem]] = {}
        self._array_targets: dict[tuple[str, tuple[str, ...], bool], Target] = {}
        self._good_refs: set[tuple[str, str, str, str]] = set()
        self._sound: dict[str, bool] = {}

    def _bad_reference(self, g: Graph, id: identifier_pb2.Identifier, field: str, nid: str) -> bool:
        parts = (id.project, id.domain, id.name, id.version)
        if parts in self._good_refs:  # 10k nodes often run one task
            return False
        problems = reference_problems(id, field)
        if not problems:
            self._good_refs.add(parts)
        self.report.errs(g, problems, f"node {nid!r}: ")
        return bool(problems)

    def _sound_interface(self, key: str, wf: workflow_pb2.WorkflowTemplate) -> bool:
        # The workflow's own compilation reports the problems; a node running it just has no
        # usable target (and its types, maybe nested too deep, are never serialized).
        sound = self._sound.get(key)
        if sound is None:
            problems = interface_problems(wf.interface, "interface", self.templates.limits)
            sound = self._sound[key] = not problems
        return sound

    def task(self, g: Graph, id: identifier_pb2.Identifier, field: str, nid: str) -> Target | None:
        """The task `id` that node `nid` runs, or None (reported)."""
        if self._bad_reference(g, id, field, nid):
            return None
        key = id_key(id)
        target = self.templates.task_target(key, id)
        if target is None and key not in self.templates.emb_tasks:
            self.report.err(
                g, field, f"node {nid!r}: task {key} not found (not in the spec, not registered)"
            )
        return target

    def workflow_node(
        self, g: Graph, wn: workflow_pb2.WorkflowNode, path: str, nid: str
    ) -> Target | None:
        """The subworkflow or launch plan a workflow node runs, or None (reported)."""
        ref = wn.WhichOneof("reference")
        if ref is None:
            self.report.err(
                g, path, f"node {nid!r}: workflow node names no workflow or launch plan"
            )
            return None
        if ref == "sub_workflow_id":
            return self._sub_workflow(g, wn.sub_workflow_id, f"{path}.sub_workflow_id", nid)
        return self._launch_plan(g, wn.launch_plan_id, f"{path}.launch_plan_id", nid)

    def _sub_workflow(
        self, g: Graph, id: identifier_pb2.Identifier, field: str, nid: str
    ) -> Target | None:
        if self._bad_reference(g, id, field, nid):
            return None
        key = id_key(id)
        wf = self.templates.workflow(key, id)
        if wf is None:
            self.report.err(
                g,
                field,
                f"node {nid!r}: workflow {key} not found (not in the spec, not registered)",
            )
            return None
        self.enter(g, key, wf, field, nid)
        if not self._sound_interface(key, wf):
            return None
        return Target(
            f"workflow {key}",
            variables(wf.interface.inputs),
            variables(wf.interface.outputs),
            optional=frozenset(_defaulted(wf)),
        )

    def _launch_plan(
        self, g: Graph, id: identifier_pb2.Identifier, field: str, nid: str
    ) -> Target | None:
        if self._bad_reference(g, id, field, nid):
            return None
        lkey = id_key(id)
        lp = self.templates.launch_plan(lkey, id)
        if lp is None:
            self.report.err(g, field, f"node {nid!r}: launch plan {lkey} not found")
            return None
        wkey = id_key(lp.workflow_id)
        wf = None
        if not reference_problems(lp.workflow_id, "workflow_id"):
            wf = self.templates.workflow(wkey, lp.workflow_id)
        if wf is not None and not self._sound_interface(wkey, wf):
            self.enter(g, wkey, wf, field, nid)  # reports the interface's problems
            return None
        if lkey not in self._lp_checked:
            problems = launch_plan_problems(lp, wf, self.templates.limits)
            self._lp_checked[lkey] = problems
            for pf, d in problems:
                self.report.err(g, field, f"node {nid!r}: launch plan {lkey}: {pf}: {d}")
        if wf is None or self._lp_checked[lkey]:
            return None
        self.templates.launch_plans.setdefault(lkey, lp)
        self.enter(g, wkey, wf, field, nid)
        required = {
            p.var.name
            for p in lp.default_inputs.parameters
            if p.WhichOneof("behavior") == "required"
        }
        return Target(
            f"launch plan {lkey}",
            variables(wf.interface.inputs),
            variables(wf.interface.outputs),
            optional=frozenset((_defaulted(wf) - required) | _defaulted(lp)),
            fixed=frozenset(lp.fixed_inputs.literals),
        )

    def array(self, g: Graph, an: workflow_pb2.ArrayNode, path: str, nid: str) -> Target | None:
        """The target of an array node: its task, with lists for mapped inputs and outputs."""
        crit = an.WhichOneof("success_criteria")
        if crit == "min_success_ratio" and not valid_ratio(an.min_success_ratio):
            self.report.err(
                g,
                f"{path}.min_success_ratio",
                f"node {nid!r}: min_success_ratio {an.min_success_ratio} is not in [0, 1]",
            )
        inner = an.node
        if not an.HasField("node") or inner.WhichOneof("target") != "task_node":
            self.report.err(
                g, f"{path}.node", f"array node {nid!r}: the inner node must be a task node"
            )
            return None
        if inner.id:  # unused by the engine, so it may stay empty; never a path escape
            bad_id = node_id_problem(inner.id)
            if bad_id is not None:
                self.report.err(g, f"{path}.node.id", f"array node {nid!r}: {bad_id}")
        task_id = inner.task_node.task_id
        task = self.task(g, task_id, f"{path}.node.task_node.task_id", nid)
        if task is None:
            return None
        broadcast = tuple(an.broadcast_inputs)
        if not self._broadcast_ok(g, task, broadcast, path, nid):
            return None
        # The list length is known only at run time, so any min_successes may let some fail.
        tolerant = crit == "min_successes" or (
            crit == "min_success_ratio" and an.min_success_ratio < 1.0
        )
        ckey = (id_key(task_id), broadcast, tolerant)
        cached = self._array_targets.get(ckey)
        if cached is None:
            cached = self._array_targets[ckey] = _array_target(task, broadcast, tolerant)
        return cached

    def _broadcast_ok(
        self, g: Graph, task: Target, broadcast: tuple[str, ...], path: str, nid: str
    ) -> bool:
        ok = True
        for j, name in enumerate(broadcast):
            if name not in task.inputs:
                ok = False
                self.report.err(
                    g,
                    f"{path}.broadcast_inputs[{j}]",
                    f"array node {nid!r}: {name!r} is not an input of {task.what} "
                    f"(inputs: {names(task.inputs)})",
                )
        if task.inputs and all(n in broadcast for n in task.inputs):
            self.report.err(
                g,
                f"{path}.broadcast_inputs",
                f"array node {nid!r}: every input is broadcast; at least one must be mapped",
            )
        elif not task.inputs:
            self.report.err(
                g, f"{path}.node", f"array node {nid!r}: {task.what} has no input to map over"
            )
        return ok


def _array_target(task: Target, broadcast: tuple[str, ...], tolerant: bool) -> Target:
    inputs = {
        n: t if n in broadcast else TypeRef(types_pb2.LiteralType(collection_type=t.pb))
        for n, t in task.inputs.items()
    }
    outputs = {
        n: TypeRef(types_pb2.LiteralType(collection_type=optional(t.pb) if tolerant else t.pb))
        for n, t in task.outputs.items()
    }
    return Target(f"array of {task.what}", inputs, outputs)
