"""The templates a compilation reaches: looked up once (the spec first, then the resolver) and
collected into the closure the scheduler runs without the registry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from plaitidl.core.v1 import (
    dynamic_job_pb2,
    identifier_pb2,
    literals_pb2,
    tasks_pb2,
    workflow_pb2,
)

from plait_engine.compiler.limits import Limits, Resolver
from plait_engine.compiler.report import Reporter
from plait_engine.compiler.scope import Target, variables
from plait_engine.compiler.templates import task_problems
from plait_engine.ids import id_key

__all__ = ["Templates"]

_T = TypeVar("_T", tasks_pb2.TaskTemplate, workflow_pb2.WorkflowTemplate, workflow_pb2.LaunchPlan)


class Templates:
    """Template lookup with caches, and the closure of everything looked up successfully.

    Templates embedded in a dynamic spec win over registered ones with the same identifier;
    an embedded task with problems is reported (at ``tasks[i]``) and treated as unknown.
    """

    def __init__(
        self,
        resolver: Resolver,
        limits: Limits,
        report: Reporter,
        spec: dynamic_job_pb2.DynamicJobSpec | None,
    ) -> None:
        self.resolver = resolver
        self.limits = limits
        self.report = report
        self.emb_tasks: dict[str, tuple[int, tasks_pb2.TaskTemplate]] = {}
        self.emb_wfs: dict[str, tuple[int, workflow_pb2.WorkflowTemplate]] = {}
        self.emb_lps: dict[str, tuple[int, workflow_pb2.LaunchPlan]] = {}
        self._task_targets: dict[str, Target | None] = {}
        self._wf_cache: dict[str, workflow_pb2.WorkflowTemplate | None] = {}
        self._lp_cache: dict[str, workflow_pb2.LaunchPlan | None] = {}
        self.tasks: dict[str, tasks_pb2.TaskTemplate] = {}
        self.workflows: dict[str, workflow_pb2.WorkflowTemplate] = {}
        self.launch_plans: dict[str, workflow_pb2.LaunchPlan] = {}
        # The versions references without one resolved to ("newest" at compile time), by key.
        self.pins: dict[str, str] = {}
        if spec is not None:
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
                self.report.err(
                    None,
                    f"{name}[{i}].id",
                    f"{key} is listed twice with different content ({name}[{prev[0]}])",
                )

    def task_target(self, key: str, id: identifier_pb2.Identifier) -> Target | None:
        """The task `id` (whose key is `key`) as a node target, or None when unknown."""
        if key in self._task_targets:
            return self._task_targets[key]
        emb = self.emb_tasks.get(key)
        task: tasks_pb2.TaskTemplate | None
        if emb is not None:
            i, task = emb
            problems = task_problems(task, self.limits)
            for f, d in problems:
                self.report.err(None, f"tasks[{i}].{f}", f"task {key}: {d}")
            if problems:
                task = None
        else:
            task = self.resolver.get_task(id)
        target = None
        if task is not None:
            self._pin(id, task.id)
            self.tasks.setdefault(key, task)
            iface = task.interface
            target = Target(f"task {key}", variables(iface.inputs), variables(iface.outputs))
        self._task_targets[key] = target
        return target

    def workflow(
        self, key: str, id: identifier_pb2.Identifier
    ) -> workflow_pb2.WorkflowTemplate | None:
        """The workflow `id`, or None."""
        if key not in self._wf_cache:
            emb = self.emb_wfs.get(key)
            found = emb[1] if emb is not None else self.resolver.get_workflow(id)
            if found is not None:
                self._pin(id, found.id)
            self._wf_cache[key] = found
        return self._wf_cache[key]

    def launch_plan(
        self, key: str, id: identifier_pb2.Identifier
    ) -> workflow_pb2.LaunchPlan | None:
        """The launch plan `id`, or None."""
        if key not in self._lp_cache:
            emb = self.emb_lps.get(key)
            found = emb[1] if emb is not None else self.resolver.get_launch_plan(id)
            if found is not None:
                self._pin(id, found.id)
            self._lp_cache[key] = found
        return self._lp_cache[key]

    def _pin(self, asked: identifier_pb2.Identifier, got: identifier_pb2.Identifier) -> None:
        if not asked.version and got.version:
            self.pins[id_key(asked)] = got.version

    def closure(
        self,
        nodes: Sequence[workflow_pb2.Node],
        outputs: Sequence[literals_pb2.Binding],
        min_successes: int = 0,
    ) -> dynamic_job_pb2.DynamicJobSpec:
        """A spec of `nodes` and `outputs` with every template reached, each once."""
        out = dynamic_job_pb2.DynamicJobSpec(min_successes=min_successes)
        out.nodes.extend(nodes)
        out.outputs.extend(outputs)
        self._fill(out)
        return out

    def closure_in_place(self, spec: dynamic_job_pb2.DynamicJobSpec) -> None:
        """Turn the compiled `spec` itself into its closure: its nodes and outputs stay where
        they are (a spec of a million nodes is not copied), its templates become those the
        compilation reached."""
        reached = [_copied(t) for t in self.tasks.values()]
        workflows = [_copied(w) for w in self.workflows.values()]
        launch_plans = [_copied(lp) for lp in self.launch_plans.values()]
        del spec.tasks[:], spec.subworkflows[:], spec.launch_plans[:]
        spec.tasks.extend(reached)
        spec.subworkflows.extend(workflows)
        spec.launch_plans.extend(launch_plans)
        self._pin_all(spec)

    def _fill(self, out: dynamic_job_pb2.DynamicJobSpec) -> None:
        out.tasks.extend(self.tasks.values())
        out.subworkflows.extend(self.workflows.values())
        out.launch_plans.extend(self.launch_plans.values())
        self._pin_all(out)

    def _pin_all(self, out: dynamic_job_pb2.DynamicJobSpec) -> None:
        if not self.pins:
            return
        # A reference without a version ran what "newest" meant at compile time: pin it, so
        # the run never depends on what is registered later.
        for node in out.nodes:
            _pin_node(node, self.pins)
        for wf in out.subworkflows:
            for node in wf.nodes:
                _pin_node(node, self.pins)
        for lp in out.launch_plans:
            _pin_id(lp.workflow_id, self.pins)


def _copied(template: _T) -> _T:
    """A template detached from the spec it may belong to (which is about to drop it)."""
    out = type(template)()
    out.CopyFrom(template)
    return out


def _pin_id(id: identifier_pb2.Identifier, pins: dict[str, str]) -> None:
    if not id.version:
        id.version = pins.get(id_key(id), "")


def _pin_node(node: workflow_pb2.Node, pins: dict[str, str]) -> None:
    which = node.WhichOneof("target")
    if which == "task_node":
        _pin_id(node.task_node.task_id, pins)
    elif which == "workflow_node":
        wn = node.workflow_node
        _pin_id(wn.launch_plan_id if wn.HasField("launch_plan_id") else wn.sub_workflow_id, pins)
    elif which == "array_node":
        _pin_node(node.array_node.node, pins)
    elif which == "branch_node":
        br = node.branch_node
        for case in [br.case, *br.other]:
            _pin_node(case.then_node, pins)
        if br.HasField("else_node"):
            _pin_node(br.else_node, pins)
