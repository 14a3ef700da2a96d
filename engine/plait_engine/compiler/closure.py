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
            self._wf_cache[key] = emb[1] if emb is not None else self.resolver.get_workflow(id)
        return self._wf_cache[key]

    def launch_plan(
        self, key: str, id: identifier_pb2.Identifier
    ) -> workflow_pb2.LaunchPlan | None:
        """The launch plan `id`, or None."""
        if key not in self._lp_cache:
            emb = self.emb_lps.get(key)
            self._lp_cache[key] = emb[1] if emb is not None else self.resolver.get_launch_plan(id)
        return self._lp_cache[key]

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
        out.tasks.extend(self.tasks.values())
        out.subworkflows.extend(self.workflows.values())
        out.launch_plans.extend(self.launch_plans.values())
        return out
