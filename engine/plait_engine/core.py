"""The engine's service logic: registration, executions, watching.

The gRPC adapters and the embedded runner both call `Engine`; neither knows about the store or
the scheduler directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from plaitidl.core.v1 import (
    dynamic_job_pb2,
    events_pb2,
    execution_pb2,
    identifier_pb2,
    interface_pb2,
    literals_pb2,
    tasks_pb2,
    workflow_pb2,
)

from plait_engine import compiler
from plait_engine.blobstore import BlobStore
from plait_engine.errors import FieldViolation, InvalidArgument, NotFound
from plait_engine.executors import Executor, InProcessExecutor, ProcessExecutor, TaskRunner
from plait_engine.payloads import Payloads
from plait_engine.scheduler import Run, Scheduler, SchedulerConfig
from plait_engine.store import ExecutionRecord, SqliteStore, Store, TemplateKind

DEFAULT_PROJECT = "default"
DEFAULT_DOMAIN = "development"
EP = execution_pb2
TERMINAL = {EP.EXECUTION_PHASE_SUCCEEDED, EP.EXECUTION_PHASE_FAILED, EP.EXECUTION_PHASE_ABORTED}


@dataclass
class EngineConfig:
    """Everything an engine needs to start."""

    data_dir: Path
    limits: compiler.Limits = field(default_factory=compiler.Limits)
    system_retries: int = 3
    # Runs Python SDK tasks in-process (the embedded engine); None when workers serve them.
    task_runner: TaskRunner | None = None
    task_threads: int = 8
    # Whether `task_runner` already checks outputs against the interface (the SDK's does).
    task_runner_checks_outputs: bool = False
    process_slots: int | None = None


def _kind_name(kind: TemplateKind) -> str:
    return {
        TemplateKind.TASK: "task",
        TemplateKind.WORKFLOW: "workflow",
        TemplateKind.LAUNCH_PLAN: "launch plan",
    }[kind]


def normalize_id(id: identifier_pb2.Identifier, kind: TemplateKind) -> None:
    """Fill the defaults of an identifier in place."""
    id.resource_type = int(kind)  # type: ignore[assignment]
    if not id.project:
        id.project = DEFAULT_PROJECT
    if not id.domain:
        id.domain = DEFAULT_DOMAIN


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


class _StoreResolver:
    """A `compiler.Resolver` over the store, with an overlay of not-yet-stored templates."""

    def __init__(self, store: Store, overlay: dynamic_job_pb2.DynamicJobSpec | None = None):
        self._store = store
        self._tasks: dict[str, tasks_pb2.TaskTemplate] = {}
        self._wfs: dict[str, workflow_pb2.WorkflowTemplate] = {}
        self._lps: dict[str, workflow_pb2.LaunchPlan] = {}
        if overlay is not None:
            self._tasks = {compiler.id_key(t.id): t for t in overlay.tasks}
            self._wfs = {compiler.id_key(w.id): w for w in overlay.subworkflows}
            self._lps = {compiler.id_key(lp.id): lp for lp in overlay.launch_plans}

    def _key(self, id: identifier_pb2.Identifier, kind: TemplateKind) -> str:
        if id.version:
            return compiler.id_key(id)
        prefix = (
            compiler.id_key(
                identifier_pb2.Identifier(
                    project=id.project or DEFAULT_PROJECT,
                    domain=id.domain or DEFAULT_DOMAIN,
                    name=id.name,
                )
            ).rstrip("/")
            + "/"
        )
        return self._store.latest_template_key(kind, prefix) or compiler.id_key(id)

    def get_task(self, id: identifier_pb2.Identifier) -> tasks_pb2.TaskTemplate | None:
        key = self._key(id, TemplateKind.TASK)
        if key in self._tasks:
            return self._tasks[key]
        body = self._store.get_template(TemplateKind.TASK, key)
        if body is None:
            return None
        task = tasks_pb2.TaskTemplate.FromString(body)
        if id.version:
            # Registered versions are immutable: safe to keep.
            self._tasks[key] = task
        return task

    def get_workflow(self, id: identifier_pb2.Identifier) -> workflow_pb2.WorkflowTemplate | None:
        key = self._key(id, TemplateKind.WORKFLOW)
        if key in self._wfs:
            return self._wfs[key]
        body = self._store.get_template(TemplateKind.WORKFLOW, key)
        return None if body is None else workflow_pb2.WorkflowTemplate.FromString(body)

    def get_launch_plan(self, id: identifier_pb2.Identifier) -> workflow_pb2.LaunchPlan | None:
        key = self._key(id, TemplateKind.LAUNCH_PLAN)
        if key in self._lps:
            return self._lps[key]
        body = self._store.get_template(TemplateKind.LAUNCH_PLAN, key)
        return None if body is None else workflow_pb2.LaunchPlan.FromString(body)


@dataclass
class RegisterResult:
    """What `Engine.register` stored."""

    created: list[identifier_pb2.Identifier]
    unchanged: list[identifier_pb2.Identifier]


class Engine:
    """One engine over one store: registry, executions and the scheduler that drives them."""

    def __init__(
        self,
        config: EngineConfig,
        *,
        store: Store | None = None,
        worker_executor: Executor | None = None,
        recover: bool = True,
    ) -> None:
        self.config = config
        self._recover = recover
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = store or SqliteStore(config.data_dir / "plait.db")
        self.blobs = BlobStore(config.data_dir / "blobs")
        self.payloads = Payloads(self.blobs)
        self.process_executor = ProcessExecutor(self.blobs, config.process_slots)
        self.worker_executor: Executor | None = worker_executor
        if worker_executor is None and config.task_runner is not None:
            self.worker_executor = InProcessExecutor(
                config.task_runner, config.task_threads, trusted=config.task_runner_checks_outputs
            )
        self.scheduler = Scheduler(
            self.store,
            self._executor_for,
            SchedulerConfig(limits=config.limits, system_retries=config.system_retries),
            registry=_StoreResolver(self.store),
            payloads=self.payloads,
        )
        self._started = False

    def _executor_for(self, task: tasks_pb2.TaskTemplate) -> Executor | None:
        if task.HasField("process"):
            return self.process_executor
        if task.HasField("worker"):
            return self.worker_executor
        return None

    async def start(self) -> None:
        """Start executors and the scheduler; unfinished executions resume."""
        loop = asyncio.get_running_loop()
        self.process_executor.start(self.scheduler.post_results, loop)
        if self.worker_executor is not None:
            self.worker_executor.start(self.scheduler.post_results, loop)
        await self.scheduler.start(recover=self._recover)
        self._started = True

    async def stop(self) -> None:
        """Stop the scheduler and executors; the store keeps everything for a restart."""
        await self.scheduler.stop()
        await self.process_executor.stop()
        if self.worker_executor is not None:
            await self.worker_executor.stop()
        self.store.close()

    # -- registry ----------------------------------------------------------------------
    def register(
        self,
        tasks: Sequence[tasks_pb2.TaskTemplate] = (),
        workflows: Sequence[workflow_pb2.WorkflowTemplate] = (),
        launch_plans: Sequence[workflow_pb2.LaunchPlan] = (),
    ) -> RegisterResult:
        """Compile and store templates atomically (see `RegistryService.Register`)."""
        overlay = dynamic_job_pb2.DynamicJobSpec()
        for t in tasks:
            c = overlay.tasks.add()
            c.CopyFrom(t)
            normalize_id(c.id, TemplateKind.TASK)
        for w in workflows:
            c2 = overlay.subworkflows.add()
            c2.CopyFrom(w)
            normalize_id(c2.id, TemplateKind.WORKFLOW)
        for lp in launch_plans:
            c3 = overlay.launch_plans.add()
            c3.CopyFrom(lp)
            normalize_id(c3.id, TemplateKind.LAUNCH_PLAN)
            if not c3.workflow_id.project:
                c3.workflow_id.project = DEFAULT_PROJECT
            if not c3.workflow_id.domain:
                c3.workflow_id.domain = DEFAULT_DOMAIN
        violations: list[FieldViolation] = []
        resolver = _StoreResolver(self.store, overlay)
        for i, t in enumerate(overlay.tasks):
            _collect(violations, f"tasks[{i}]", lambda t=t: compiler.validate_task(t))
        for i, w in enumerate(overlay.subworkflows):
            _collect(
                violations,
                f"workflows[{i}]",
                lambda w=w: compiler.compile_workflow(w, resolver, self.config.limits),
            )
        for i, lp in enumerate(overlay.launch_plans):
            _collect(
                violations,
                f"launch_plans[{i}]",
                lambda lp=lp: compiler.validate_launch_plan(lp, resolver),
            )
        if violations:
            raise InvalidArgument(
                f"registration refused: {violations[0].field}: {violations[0].description}",
                violations,
            )
        items: list[tuple[TemplateKind, str, str, bytes]] = []
        ids: list[identifier_pb2.Identifier] = []
        for kind, msgs in (
            (TemplateKind.TASK, overlay.tasks),
            (TemplateKind.WORKFLOW, overlay.subworkflows),
            (TemplateKind.LAUNCH_PLAN, overlay.launch_plans),
        ):
            for m in msgs:
                body = m.SerializeToString(deterministic=True)
                items.append((kind, compiler.id_key(m.id), _digest(body), body))
                ids.append(m.id)
        created = self.store.put_templates(items)
        return RegisterResult(
            created=[i for i, c in zip(ids, created, strict=True) if c],
            unchanged=[i for i, c in zip(ids, created, strict=True) if not c],
        )

    def resolver(self) -> compiler.Resolver:
        """A resolver over registered templates (empty version means newest)."""
        return _StoreResolver(self.store)

    def get_template(
        self, kind: TemplateKind, id: identifier_pb2.Identifier
    ) -> tasks_pb2.TaskTemplate | workflow_pb2.WorkflowTemplate | workflow_pb2.LaunchPlan:
        """One registered template; `NotFound` when unknown."""
        r = _StoreResolver(self.store)
        found: tasks_pb2.TaskTemplate | workflow_pb2.WorkflowTemplate | workflow_pb2.LaunchPlan
        found_or_none = (
            r.get_task(id)
            if kind == TemplateKind.TASK
            else r.get_workflow(id)
            if kind == TemplateKind.WORKFLOW
            else r.get_launch_plan(id)
        )
        if found_or_none is None:
            raise NotFound(f"{_kind_name(kind)} {compiler.id_key(id)} is not registered")
        found = found_or_none
        return found

    # -- executions ----------------------------------------------------------------------
    def create_execution(
        self,
        *,
        workflow_id: identifier_pb2.Identifier | None = None,
        launch_plan_id: identifier_pb2.Identifier | None = None,
        inputs: literals_pb2.LiteralMap | None = None,
        request_id: str = "",
        project: str = "",
        domain: str = "",
        name: str = "",
        labels: dict[str, str] | None = None,
    ) -> ExecutionRecord:
        """Validate inputs, store a new execution and start it (see `CreateExecution`)."""
        resolver = _StoreResolver(self.store)
        fixed: literals_pb2.LiteralMap | None = None
        defaults = interface_pb2.ParameterMap()
        lp_key = ""
        if launch_plan_id is not None:
            lp = resolver.get_launch_plan(launch_plan_id)
            if lp is None:
                raise NotFound(f"launch plan {compiler.id_key(launch_plan_id)} is not registered")
            lp_key = compiler.id_key(lp.id)
            fixed = lp.fixed_inputs
            wf_id = lp.workflow_id
        elif workflow_id is not None:
            wf_id = workflow_id
        else:
            raise InvalidArgument(
                "a workflow_id or a launch_plan_id is required",
                [FieldViolation("target", "set workflow_id or launch_plan_id")],
            )
        wf = resolver.get_workflow(wf_id)
        if wf is None:
            raise NotFound(f"workflow {compiler.id_key(wf_id)} is not registered")
        defaults.CopyFrom(wf.defaults)
        if launch_plan_id is not None:
            lp2 = resolver.get_launch_plan(launch_plan_id)
            assert lp2 is not None
            by_name = {p.var.name: i for i, p in enumerate(defaults.parameters)}
            for p in lp2.default_inputs.parameters:
                if p.var.name in by_name:
                    defaults.parameters[by_name[p.var.name]].CopyFrom(p)
                else:
                    defaults.parameters.add().CopyFrom(p)
        closure = compiler.compile_workflow(wf, resolver, self.config.limits)
        resolved = compiler.resolve_execution_inputs(
            wf.interface, defaults, inputs or literals_pb2.LiteralMap(), fixed
        )
        now = time.time()
        first = events_pb2.ExecutionEvent(
            sequence=1,
            execution=events_pb2.ExecutionTransition(phase=EP.EXECUTION_PHASE_QUEUED),
        )
        record = ExecutionRecord(
            eid=0,
            project=project or wf.id.project,
            domain=domain or wf.id.domain,
            name=name or ("x" + secrets.token_hex(8)),
            workflow_key=compiler.id_key(wf.id),
            launch_plan_key=lp_key,
            phase=EP.EXECUTION_PHASE_QUEUED,
            closure=self.payloads.pack(closure.SerializeToString(), "closures"),
            workflow=wf.SerializeToString(),
            inputs=self.payloads.pack(resolved.SerializeToString(), "inputs"),
            outputs=b"",
            error=b"",
            created_at=now,
            updated_at=now,
            request_id=request_id,
            labels=dict(labels or {}),
        )
        first.execution_id.project = record.project
        first.execution_id.domain = record.domain
        first.execution_id.name = record.name
        first.occurred_at.FromNanoseconds(int(now * 1e9))
        stored = self.store.create_execution(record, first.SerializeToString())
        if stored.phase not in TERMINAL:
            self.scheduler.submit_execution(stored)
        return stored

    def get_execution(self, project: str, domain: str, name: str) -> ExecutionRecord:
        """The stored state of an execution; `NotFound` when unknown."""
        project, domain = project or DEFAULT_PROJECT, domain or DEFAULT_DOMAIN
        rec = self.store.get_execution(project, domain, name)
        if rec is None:
            raise NotFound(f"execution {project}/{domain}/{name} does not exist")
        return rec

    def counts(self, rec: ExecutionRecord) -> dict[str, int]:
        """Node counts of an execution (live when it runs, from the store otherwise)."""
        run = self.scheduler.run_of(rec.eid)
        if run is not None:
            return dict(run.counts)
        if rec.counts is not None:
            return dict(rec.counts)
        counts = {"total": 0, "succeeded": 0, "running": 0, "failed": 0, "skipped": 0, "cached": 0}
        for n in self.store.node_records(rec.eid):
            counts["total"] += 1
            if n.phase == execution_pb2.NODE_PHASE_SUCCEEDED:
                counts["succeeded"] += 1
                if n.cache_status == execution_pb2.CACHE_STATUS_HIT:
                    counts["cached"] += 1
            elif n.phase == execution_pb2.NODE_PHASE_FAILED:
                counts["failed"] += 1
            elif n.phase == execution_pb2.NODE_PHASE_SKIPPED:
                counts["skipped"] += 1
            elif n.phase in (
                execution_pb2.NODE_PHASE_RUNNING,
                execution_pb2.NODE_PHASE_DYNAMIC_RUNNING,
            ):
                counts["running"] += 1
        return counts

    def terminate(self, rec: ExecutionRecord, reason: str) -> None:
        """Abort an execution (no-op when finished)."""
        if rec.phase in TERMINAL:
            return
        self.scheduler.terminate(rec.eid, reason)

    async def wait(
        self,
        rec: ExecutionRecord,
        timeout: float | None = None,
        *,
        on_change: Callable[[], None] | None = None,
    ) -> ExecutionRecord:
        """Wait until the execution is terminal and return its final record.

        `on_change` is called after each commit that touched the execution (for progress).
        """
        ev = self.scheduler.watch(rec.eid)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                ev.clear()
                current = self.store.get_execution_by_eid(rec.eid)
                if current is None:
                    raise NotFound(f"execution {rec.name} does not exist")
                if on_change is not None:
                    on_change()
                if current.phase in TERMINAL:
                    return current
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"execution {rec.name} did not finish in time")
                # Also poll: another engine replica may be driving this execution.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ev.wait(), min(remaining or 1.0, 1.0))
        finally:
            self.scheduler.unwatch(rec.eid, ev)

    async def watch(
        self, rec: ExecutionRecord, after_seq: int, *, timeout: float | None = None
    ) -> AsyncIterator[list[events_pb2.ExecutionEvent]]:
        """Yield batches of committed events after `after_seq` until the execution ends."""
        ev = self.scheduler.watch(rec.eid)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            seq = after_seq
            while True:
                ev.clear()
                rows = self.store.events(rec.eid, seq, 5000)
                if rows:
                    batch = [events_pb2.ExecutionEvent.FromString(b) for _, b in rows]
                    seq = rows[-1][0]
                    yield batch
                    if len(rows) == 5000:
                        continue
                current = self.store.get_execution_by_eid(rec.eid)
                if current is None:
                    return
                if current.phase in TERMINAL and current.last_seq <= seq:
                    return
                if rows:
                    continue
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"execution {rec.name} did not finish in time")
                try:
                    # Also poll: another engine replica may be driving this execution.
                    await asyncio.wait_for(ev.wait(), min(remaining or 1.0, 1.0))
                except TimeoutError:
                    pass
        finally:
            self.scheduler.unwatch(rec.eid, ev)

    def execution_inputs(self, rec: ExecutionRecord) -> literals_pb2.LiteralMap:
        """The inputs of an execution, defaults applied."""
        return literals_pb2.LiteralMap.FromString(self.payloads.unpack(rec.inputs))

    def execution_outputs(self, rec: ExecutionRecord) -> literals_pb2.LiteralMap:
        """The outputs of an execution; empty until it succeeded."""
        return literals_pb2.LiteralMap.FromString(self.payloads.unpack(rec.outputs))

    def execution_closure(self, rec: ExecutionRecord) -> dynamic_job_pb2.DynamicJobSpec:
        """The compiled root graph of an execution with every template it reaches."""
        return dynamic_job_pb2.DynamicJobSpec.FromString(self.payloads.unpack(rec.closure))

    def node_data(
        self, rec: ExecutionRecord, node_id: str
    ) -> tuple[literals_pb2.LiteralMap, literals_pb2.LiteralMap]:
        """A node's resolved inputs and its outputs; `NotFound` for an unknown node."""
        node = self.store.get_node(rec.eid, node_id)
        if node is None:
            raise NotFound(f"execution {rec.name} has no node {node_id!r}")
        return (
            literals_pb2.LiteralMap.FromString(self.payloads.unpack(node.inputs)),
            literals_pb2.LiteralMap.FromString(self.payloads.unpack(node.outputs)),
        )

    def dynamic_spec(self, rec: ExecutionRecord, node_id: str) -> dynamic_job_pb2.DynamicJobSpec:
        """The compiled spec a dynamic node yielded; `NotFound` when it yielded none."""
        spec = self.store.dynamic_specs(rec.eid).get(node_id)
        if spec is None:
            raise NotFound(f"node {node_id!r} of execution {rec.name} yielded no dynamic spec")
        return dynamic_job_pb2.DynamicJobSpec.FromString(self.payloads.unpack(spec[0]))

    def live_run(self, rec: ExecutionRecord) -> Run | None:
        """The scheduler's run of an execution, when it is being driven here."""
        return self.scheduler.run_of(rec.eid)


def _collect(violations: list[FieldViolation], prefix: str, fn: object) -> None:
    assert callable(fn)
    try:
        fn()
    except InvalidArgument as exc:
        if exc.violations:
            violations.extend(
                FieldViolation(f"{prefix}.{v.field}", v.description) for v in exc.violations
            )
        else:
            violations.append(FieldViolation(prefix, exc.message))
