"""The scheduler: an asyncio reconciler over the store.

Each pass drains what arrived (new executions, results, terminations), advances the in-memory
graphs, commits every transition and its events in one transaction, and only then acts on it
(dispatches attempts, wakes watchers). After a restart the same graphs are rebuilt by walking
them again from the root while consuming the stored node records: a node that succeeded is not
run again, and a generator whose spec was stored is not asked for it again.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from google.protobuf import timestamp_pb2
from google.protobuf.message import Message
from plaitidl.core.v1 import (
    condition_pb2,
    dynamic_job_pb2,
    errors_pb2,
    events_pb2,
    execution_pb2,
    identifier_pb2,
    literals_pb2,
    tasks_pb2,
    types_pb2,
    workflow_pb2,
)

from plait_engine import compiler, type_check
from plait_engine.blobstore import BlobStore
from plait_engine.errors import FieldViolation, InvalidArgument
from plait_engine.executors import Dispatch, Executor, Result, system_error
from plait_engine.literals import interface_signature, literal_map_hash
from plait_engine.payloads import Payloads
from plait_engine.store import (
    CacheEntry,
    ExecutionRecord,
    NodeRecord,
    NodeUpdate,
    Store,
    WriteBatch,
)

log = logging.getLogger("plait.scheduler")
_INLINE_COMMIT_ROWS = 64  # batches up to this many rows commit on the loop thread
_T = TypeVar("_T")

START = "start-node"
NP = execution_pb2
EP = execution_pb2
USER = errors_pb2.ExecutionError.KIND_USER
SYSTEM = errors_pb2.ExecutionError.KIND_SYSTEM
TERMINAL_NODE = {
    NP.NODE_PHASE_SUCCEEDED,
    NP.NODE_PHASE_FAILED,
    NP.NODE_PHASE_SKIPPED,
    NP.NODE_PHASE_ABORTED,
}
TERMINAL_EXEC = {
    EP.EXECUTION_PHASE_SUCCEEDED,
    EP.EXECUTION_PHASE_FAILED,
    EP.EXECUTION_PHASE_ABORTED,
}


@dataclass
class SchedulerConfig:
    """Scheduler knobs."""

    limits: compiler.Limits = field(default_factory=compiler.Limits)
    system_retries: int = 3  # default budget for system errors
    cache_wait_poll: float = 0.5  # how often a serialized-cache waiter looks again (seconds)
    reservation_ttl: float = 600.0  # lifetime of a cache_serialize reservation without renewal


def _now() -> float:
    return time.time()


def _ts(t: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(t * 1e9))
    return ts


def user_error(code: str, message: str, *, recoverable: bool = False) -> errors_pb2.ExecutionError:
    """An error caused by the user's code or spec."""
    return errors_pb2.ExecutionError(code=code, message=message, kind=USER, recoverable=recoverable)


class _BindingError(Exception):
    """A binding could not be resolved at run time (e.g. an index out of range)."""


class Templates:
    """The templates a graph may reference, by key (from a closure)."""

    def __init__(self, closure: dynamic_job_pb2.DynamicJobSpec) -> None:
        self.tasks = {compiler.id_key(t.id): t for t in closure.tasks}
        self.workflows = {compiler.id_key(w.id): w for w in closure.subworkflows}
        self.launch_plans = {compiler.id_key(lp.id): lp for lp in closure.launch_plans}

    def task(self, id: identifier_pb2.Identifier) -> tasks_pb2.TaskTemplate | None:
        return _find(self.tasks, id)

    def workflow(self, id: identifier_pb2.Identifier) -> workflow_pb2.WorkflowTemplate | None:
        return _find(self.workflows, id)

    def launch_plan(self, id: identifier_pb2.Identifier) -> workflow_pb2.LaunchPlan | None:
        return _find(self.launch_plans, id)


def _find(by_key: dict[str, _T], id: identifier_pb2.Identifier) -> _T | None:
    found = by_key.get(compiler.id_key(id))
    if found is None and not id.version:
        # A reference without a version means the newest: the compiler resolved it into the
        # closure under its full identifier.
        prefix = compiler.id_key(id).rstrip("/") + "/"
        matches = [v for k, v in by_key.items() if k.startswith(prefix)]
        found = matches[-1] if matches else None
    return found


class Frame:
    """One running instance of a graph: the root workflow, a subworkflow, a dynamic sub-graph,
    the case a branch took, or the instances of an array node."""

    def __init__(
        self,
        run: Run,
        owner: NodeExec | None,
        prefix: str,
        inputs: literals_pb2.LiteralMap,
        templates: Templates,
        depth: int,
        outer: Frame | None = None,
    ) -> None:
        self.run = run
        self.owner = owner
        self.prefix = prefix
        self.inputs = inputs
        self.templates = templates
        self.depth = depth  # dynamic nesting depth
        self.outer = outer  # branch frames read unknown node ids from the enclosing frame
        self.nodes: dict[str, NodeExec] = {}
        self.outputs: Sequence[literals_pb2.Binding] = ()
        self.remaining = 0
        self.done = False
        # array frames
        self.is_array = False
        self.array_waiting: deque[NodeExec] = deque()
        self.array_running = 0
        self.array_parallelism = 0
        self.array_failures = 0
        self.array_tolerance = 0
        self.array_output_types: dict[str, types_pb2.LiteralType] = {}
        self.array_optional = False

    def path(self, local_id: str) -> str:
        return f"{self.prefix}/{local_id}" if self.prefix else local_id

    def lookup(self, node_id: str, var: str) -> literals_pb2.Literal:
        if node_id == START:
            frame: Frame | None = self
            # a branch case reads the enclosing graph's inputs
            while frame is not None and frame.outer is not None:
                frame = frame.outer
            assert frame is not None
            if var not in frame.inputs.literals:
                raise _BindingError(f"input {var!r} has no value")
            return frame.inputs.literals[var]
        n = self.nodes.get(node_id)
        if n is None:
            if self.outer is not None:
                return self.outer.lookup(node_id, var)
            raise _BindingError(f"unknown node {node_id!r}")
        if n.outputs is None or var not in n.outputs.literals:
            raise _BindingError(f"node {node_id!r} has no output {var!r}")
        return n.outputs.literals[var]


class NodeExec:
    """The in-memory state of one node."""

    __slots__ = (
        "assignment_id",
        "attempt",
        "cache_key",
        "cache_status",
        "child",
        "created_at",
        "deadline",
        "detail",
        "downstream",
        "frame",
        "inputs",
        "is_dynamic",
        "local_id",
        "node",
        "outputs",
        "path",
        "pending",
        "persisted",
        "phase",
        "preset_inputs",
        "started_at",
        "system_failures",
        "task",
        "task_key",
        "user_failures",
        "worker",
    )

    def __init__(self, frame: Frame, local_id: str, node: workflow_pb2.Node) -> None:
        self.frame = frame
        self.local_id = local_id
        self.node = node
        self.path = frame.path(local_id)
        self.downstream: list[NodeExec] = []
        self.pending = 0
        self.phase = 0
        self.attempt = 0
        self.user_failures = 0
        self.system_failures = 0
        self.inputs: literals_pb2.LiteralMap | None = None
        self.preset_inputs: literals_pb2.LiteralMap | None = None
        self.outputs: literals_pb2.LiteralMap | None = None
        self.child: Frame | None = None
        self.task: tasks_pb2.TaskTemplate | None = None
        self.task_key = ""
        self.cache_key: str | None = None
        self.cache_status = 0
        self.assignment_id: str | None = None
        self.deadline: float | None = None
        self.is_dynamic = False
        self.detail = ""
        self.created_at = 0.0
        self.worker = ""  # the worker that answered the last attempt
        self.persisted = False  # whether the store has this node's row (with its inputs)
        self.started_at = 0.0  # when the last attempt started on its worker (0: unknown)


class Run:
    """An execution being driven by the scheduler."""

    def __init__(self, record: ExecutionRecord) -> None:
        self.record = record
        self.key = f"{record.project}/{record.domain}/{record.name}"
        self.recovered: dict[str, NodeRecord] = {}
        self.specs: dict[str, tuple[bytes, int]] = {}
        self.root: Frame | None = None
        self.nodes: dict[str, NodeExec] = {}  # by path, only live ones that may get results
        self.counts = {
            "total": 0,
            "succeeded": 0,
            "running": 0,
            "failed": 0,
            "skipped": 0,
            "cached": 0,
        }
        self.finished = asyncio.Event()
        self.dirty = False

    @property
    def terminal(self) -> bool:
        return self.record.phase in TERMINAL_EXEC


ExecutorFor = Callable[[tasks_pb2.TaskTemplate], Executor | None]


class Scheduler:
    """Drives every unfinished execution of one store."""

    def __init__(
        self,
        store: Store,
        executor_for: ExecutorFor,
        config: SchedulerConfig | None = None,
        registry: compiler.Resolver | None = None,
        payloads: Payloads | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.payloads = payloads or Payloads(BlobStore(tempfile.mkdtemp(prefix="plait-blobs-")))
        self.executor_for = executor_for
        self.config = config or SchedulerConfig()
        self.runs: dict[int, Run] = {}
        self._assignments: dict[str, NodeExec] = {}
        self._inbox_results: list[Result] = []
        self._inbox_runs: list[ExecutionRecord] = []
        self._inbox_terminate: list[tuple[int, str]] = []
        self._ready: deque[NodeExec] = deque()
        self._batch = WriteBatch()
        self._to_dispatch: list[tuple[Executor, Dispatch]] = []
        self._to_cancel: list[tuple[Executor, str]] = []
        self._deadlines: list[tuple[float, str, int]] = []
        self._cache_waiters: dict[str, list[NodeExec]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._watchers: dict[int, list[asyncio.Event]] = {}
        self.ignored_results = 0
        self._stopping = False
        self._pass_ts: timestamp_pb2.Timestamp | None = None

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self, *, recover: bool = True) -> None:
        """Start the loop; with `recover`, every unfinished execution resumes."""
        if recover:
            for record in self.store.unfinished_executions():
                self.submit_execution(record)
        self._task = asyncio.get_running_loop().create_task(self._loop())
        self._wake.set()

    async def stop(self) -> None:
        """Stop the loop; state stays in the store for the next start."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    # -- inputs from the outside (loop thread) --------------------------------------------
    def submit_execution(self, record: ExecutionRecord) -> Run:
        """Start driving a stored execution."""
        run = self.runs.get(record.eid)
        if run is None:
            run = Run(record)
            self.runs[record.eid] = run
            self._inbox_runs.append(record)
            self._wake.set()
        return run

    def post_results(self, results: Sequence[Result]) -> None:
        """Results from executors; applied on the next pass."""
        self._inbox_results.extend(results)
        self._wake.set()

    def terminate(self, eid: int, reason: str) -> None:
        """Abort an execution on the next pass."""
        self._inbox_terminate.append((eid, reason))
        self._wake.set()

    def watch(self, eid: int) -> asyncio.Event:
        """An event set after each commit that touched the execution."""
        ev = asyncio.Event()
        self._watchers.setdefault(eid, []).append(ev)
        return ev

    def unwatch(self, eid: int, ev: asyncio.Event) -> None:
        """Forget a watcher."""
        lst = self._watchers.get(eid)
        if lst and ev in lst:
            lst.remove(ev)
            if not lst:
                del self._watchers[eid]

    def run_of(self, eid: int) -> Run | None:
        """The live run of an execution, if it is being driven."""
        return self.runs.get(eid)

    # -- the loop ------------------------------------------------------------------------
    async def _loop(self) -> None:
        while not self._stopping:
            timeout = self._next_wakeup()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                self._pass()
                batch = self._take_batch()
                if batch.size() > _INLINE_COMMIT_ROWS:
                    # sqlite releases the GIL while it writes: tasks and gRPC traffic go on
                    # meanwhile. Nothing of this pass is acted on before the commit returns.
                    await asyncio.to_thread(self.store.apply, batch)
                elif batch:
                    # A small commit is quicker than the hand-off to a thread: it is the
                    # latency of every hop of a chain of tasks.
                    self.store.apply(batch)
                self._after_commit()
            except Exception:  # never let one bad pass kill the engine
                log.exception("scheduler pass failed; rebuilding state from the store")
                await asyncio.sleep(0.1)
                self._rebuild()

    def _rebuild(self) -> None:
        """Forget in-memory state and recover every driven execution from the store, exactly
        as a restarted engine would. Results of the dropped attempts are fenced out."""
        self._batch = WriteBatch()
        self._to_dispatch.clear()
        cancels = [
            (self.executor_for(n.task), aid)
            for aid, n in self._assignments.items()
            if n.task is not None
        ]
        self._to_cancel = [(ex, aid) for ex, aid in cancels if ex is not None]
        self._assignments.clear()
        self._ready.clear()
        self._deadlines.clear()
        self._cache_waiters.clear()
        old = self.runs
        self.runs = {}
        for eid, run in old.items():
            record = self.store.get_execution_by_eid(eid)
            if record is None or record.phase in TERMINAL_EXEC:
                run.finished.set()
                continue
            fresh = self.submit_execution(record)
            fresh.finished = run.finished
        self._wake.set()

    def _next_wakeup(self) -> float | None:
        waits: list[float] = []
        if self._deadlines:
            waits.append(max(0.0, self._deadlines[0][0] - _now()))
        if self._cache_waiters:
            waits.append(self.config.cache_wait_poll)
        return min(waits) if waits else None

    def _pass(self) -> None:
        self._pass_ts = None
        runs, self._inbox_runs = self._inbox_runs, []
        for record in runs:
            self._start_run(record)
        results, self._inbox_results = self._inbox_results, []
        for r in results:
            self._on_result(r)
        terms, self._inbox_terminate = self._inbox_terminate, []
        for eid, reason in terms:
            self._terminate(eid, reason)
        self._check_deadlines()
        if self._cache_waiters:
            self._poll_cache_waiters()
        self._drain_ready()

    def _take_batch(self) -> WriteBatch:
        batch, self._batch = self._batch, WriteBatch()
        for run in self.runs.values():
            if run.dirty and run.terminal:
                # Final counts travel with the terminal transition: reading a finished
                # execution never has to scan its nodes.
                run.record.counts = dict(run.counts)
        # The execution row carries the last event sequence: persist it with the events, or a
        # restarted engine would number new events from a stale sequence.
        batch.executions.extend(run.record for run in self.runs.values() if run.dirty)
        return batch

    def _after_commit(self) -> None:
        dispatches, self._to_dispatch = self._to_dispatch, []
        by_executor: dict[int, tuple[Executor, list[Dispatch]]] = {}
        for ex, d in dispatches:
            by_executor.setdefault(id(ex), (ex, []))[1].append(d)
        for ex, ds in by_executor.values():
            ex.submit(ds)
        cancels, self._to_cancel = self._to_cancel, []
        by_ex: dict[int, tuple[Executor, list[str]]] = {}
        for ex, aid in cancels:
            by_ex.setdefault(id(ex), (ex, []))[1].append(aid)
        for ex, aids in by_ex.values():
            ex.cancel(aids)
        for eid, run in list(self.runs.items()):
            if run.dirty:
                run.dirty = False
                for ev in self._watchers.get(eid, ()):
                    ev.set()
            if run.terminal:
                run.finished.set()
                self._forget_run(run)

    def _forget_run(self, run: Run) -> None:
        del self.runs[run.record.eid]
        for aid in [a for a, n in self._assignments.items() if n.frame.run is run]:
            del self._assignments[aid]

    def _pack(self, m: literals_pb2.LiteralMap | None, run: Run, path: str, what: str) -> bytes:
        if m is None:
            return b""
        data = m.SerializeToString()
        if len(data) <= self.payloads.threshold:
            return data
        return self.payloads.pack(data, "executions", str(run.record.eid), *_safe_parts(path), what)

    # -- events and records ----------------------------------------------------------------
    def _event(self, run: Run, ev: events_pb2.ExecutionEvent) -> None:
        run.record.last_seq += 1
        ev.sequence = run.record.last_seq
        ev.execution_id.project = run.record.project
        ev.execution_id.domain = run.record.domain
        ev.execution_id.name = run.record.name
        if self._pass_ts is None:
            # Events of one pass commit together: they share the commit's timestamp.
            self._pass_ts = _ts(_now())
        ev.occurred_at.CopyFrom(self._pass_ts)
        self._batch.events.append((run.record.eid, ev.sequence, ev.SerializeToString()))
        run.dirty = True

    def _save_exec(self, run: Run) -> None:
        run.record.updated_at = _now()
        run.dirty = True

    def _set_phase(
        self,
        n: NodeExec,
        phase: int,
        *,
        error: errors_pb2.ExecutionError | None = None,
        dynamic: events_pb2.DynamicInfo | None = None,
        emit: bool = True,
    ) -> None:
        run = n.frame.run
        old = n.phase
        if old == phase and not emit:
            return
        _count_transition(run, old, phase, n.cache_status)
        n.phase = phase
        now = _now()
        if not n.created_at:
            n.created_at = now
        if n.persisted:
            # The row exists: write only what a transition changes (inputs never do).
            self._batch.node_updates.append(
                NodeUpdate(
                    eid=run.record.eid,
                    node_id=n.path,
                    phase=phase,
                    attempt=n.attempt,
                    user_failures=n.user_failures,
                    system_failures=n.system_failures,
                    outputs=self._pack(n.outputs, run, n.path, "outputs"),
                    error=error.SerializeToString() if error is not None else b"",
                    cache_status=n.cache_status,
                    is_dynamic=n.is_dynamic,
                    detail=n.detail,
                    updated_at=now,
                )
            )
        else:
            n.persisted = True
            self._batch.nodes.append(
                NodeRecord(
                    eid=run.record.eid,
                    node_id=n.path,
                    phase=phase,
                    attempt=n.attempt,
                    user_failures=n.user_failures,
                    system_failures=n.system_failures,
                    inputs=self._pack(n.inputs, run, n.path, "inputs"),
                    outputs=self._pack(n.outputs, run, n.path, "outputs"),
                    error=error.SerializeToString() if error is not None else b"",
                    cache_status=n.cache_status,
                    parent_id=n.frame.prefix,
                    task_key=n.task_key,
                    is_dynamic=n.is_dynamic,
                    detail=n.detail,
                    created_at=n.created_at,
                    updated_at=now,
                )
            )
        if emit:
            # Built in place: the constructor-with-kwargs form costs twice as much, and every
            # node emits several of these.
            ev = events_pb2.ExecutionEvent()
            t = ev.node
            t.node_id = n.path
            t.phase = phase  # type: ignore[assignment]
            if n.attempt:
                t.attempt = n.attempt
            if n.cache_status:
                t.cache_status = n.cache_status  # type: ignore[assignment]
            if n.frame.prefix:
                t.parent_node_id = n.frame.prefix
            if error is not None:
                t.error.CopyFrom(error)
            if dynamic is not None:
                t.dynamic.CopyFrom(dynamic)
            if n.task is not None and (phase == NP.NODE_PHASE_RUNNING or old == 0):
                # Once per attempt is enough to tell which task a node runs.
                t.task_id.CopyFrom(n.task.id)
            if n.worker:
                t.worker_id = n.worker
            if n.started_at and phase != NP.NODE_PHASE_RUNNING:
                whole = int(n.started_at)
                t.started_at.seconds = whole
                t.started_at.nanos = int((n.started_at - whole) * 1e9)
            self._event(run, ev)

    # -- starting and recovering runs ------------------------------------------------------
    def _start_run(self, record: ExecutionRecord) -> None:
        run = self.runs.get(record.eid)
        if run is None:
            run = Run(record)
            self.runs[record.eid] = run
        if run.root is not None:
            return
        nodes = self.store.node_records(record.eid)
        run.recovered = {r.node_id: r for r in nodes}
        run.specs = self.store.dynamic_specs(record.eid)
        if run.recovered:
            log.info("recovering execution %s with %d stored nodes", run.key, len(nodes))
        closure = dynamic_job_pb2.DynamicJobSpec.FromString(self.payloads.unpack(record.closure))
        inputs = literals_pb2.LiteralMap.FromString(self.payloads.unpack(record.inputs))
        root = Frame(run, None, "", inputs, Templates(closure), depth=0)
        run.root = root
        if record.phase == EP.EXECUTION_PHASE_QUEUED:
            record.phase = EP.EXECUTION_PHASE_RUNNING
            self._save_exec(run)
            self._event(
                run,
                events_pb2.ExecutionEvent(
                    execution=events_pb2.ExecutionTransition(phase=EP.EXECUTION_PHASE_RUNNING)
                ),
            )
        self._populate(root, closure.nodes, closure.outputs)

    def _populate(
        self,
        frame: Frame,
        nodes: Sequence[workflow_pb2.Node],
        outputs: Sequence[literals_pb2.Binding],
    ) -> None:
        frame.outputs = outputs
        for node in nodes:
            n = NodeExec(frame, node.id, node)
            frame.nodes[node.id] = n
        frame.remaining = len(frame.nodes)
        for n in frame.nodes.values():
            ups = [u for u in compiler.node_upstreams(n.node) if u in frame.nodes]
            n.pending = len(ups)
            for u in ups:
                frame.nodes[u].downstream.append(n)
        if frame.remaining == 0:
            self._finish_frame(frame)
            return
        for n in frame.nodes.values():
            if n.pending == 0:
                self._ready.append(n)

    # -- making progress -----------------------------------------------------------------
    def _drain_ready(self) -> None:
        while self._ready:
            wave = list(self._ready)
            self._ready.clear()
            lookups: list[NodeExec] = []
            for n in wave:
                if n.frame.run.terminal or n.frame.done:
                    continue
                if self._begin(n):
                    lookups.append(n)
            if lookups:
                self._cache_lookup(lookups)

    def _begin(self, n: NodeExec) -> bool:
        """Start a ready node. Returns True when it waits for a cache lookup."""
        run = n.frame.run
        rec = run.recovered.pop(n.path, None)
        if rec is not None:
            n.persisted = True
            n.attempt = rec.attempt
            n.user_failures = rec.user_failures
            n.system_failures = rec.system_failures
            n.created_at = rec.created_at
            n.cache_status = rec.cache_status
            n.detail = rec.detail
            if rec.phase == NP.NODE_PHASE_SUCCEEDED:
                n.outputs = literals_pb2.LiteralMap.FromString(self.payloads.unpack(rec.outputs))
                n.inputs = (
                    literals_pb2.LiteralMap.FromString(self.payloads.unpack(rec.inputs))
                    if rec.inputs
                    else None
                )
                n.task_key = rec.task_key
                n.is_dynamic = rec.is_dynamic
                run.counts["total"] += 1
                _count_transition(run, 0, NP.NODE_PHASE_SUCCEEDED, n.cache_status)
                n.phase = NP.NODE_PHASE_SUCCEEDED
                self._after_success(n)
                return False
        run.counts["total"] += 1 if n.phase == 0 else 0
        try:
            n.inputs = self._resolve_inputs(n)
        except _BindingError as exc:
            self._fail(n, user_error("BindingError", f"node {n.path!r}: {exc}"))
            return False
        which = n.node.WhichOneof("target")
        if which == "task_node":
            return self._begin_task(n, rec)
        if which == "workflow_node":
            self._begin_workflow(n)
        elif which == "branch_node":
            self._begin_branch(n)
        elif which == "array_node":
            self._begin_array(n)
        else:
            self._fail(n, user_error("InvalidNode", f"node {n.path!r} has no target"))
        return False

    def _resolve_inputs(self, n: NodeExec) -> literals_pb2.LiteralMap:
        if n.preset_inputs is not None:
            return n.preset_inputs
        out = literals_pb2.LiteralMap()
        frame = n.frame
        for b in n.node.inputs:
            out.literals[b.var].CopyFrom(_resolve_binding(frame, b.binding))
        return out

    # -- task nodes ----------------------------------------------------------------------
    def _begin_task(self, n: NodeExec, rec: NodeRecord | None) -> bool:
        key = compiler.id_key(n.node.task_node.task_id)
        task = n.frame.templates.task(n.node.task_node.task_id)
        if task is None:
            self._fail(n, user_error("TaskNotFound", f"node {n.path!r}: task {key} not found"))
            return False
        n.task = task
        n.task_key = compiler.id_key(task.id)
        if rec is not None and rec.phase == NP.NODE_PHASE_DYNAMIC_RUNNING:
            spec = n.frame.run.specs.get(n.path)
            if spec is not None:
                # The generator already yielded; run its stored sub-graph, don't ask again.
                closure = dynamic_job_pb2.DynamicJobSpec.FromString(self.payloads.unpack(spec[0]))
                self._start_dynamic(n, closure, spec[1], store_spec=False)
                return False
        if self._cacheable(n):
            n.cache_key = _cache_key(task, n.inputs or literals_pb2.LiteralMap(), n.node)
            return True
        self._dispatch(n)
        return False

    def _cacheable(self, n: NodeExec) -> bool:
        assert n.task is not None
        md = n.node.metadata
        return md.cache if md.HasField("cache") else n.task.metadata.cache

    def _cache_lookup(self, nodes: list[NodeExec]) -> None:
        keys = [n.cache_key for n in nodes if n.cache_key]
        found = self.store.cache_get_many(keys)
        for n in nodes:
            assert n.cache_key is not None and n.task is not None
            entry = found.get(n.cache_key)
            if entry is not None:
                n.cache_status = execution_pb2.CACHE_STATUS_HIT
                n.outputs = literals_pb2.LiteralMap.FromString(self.payloads.unpack(entry.outputs))
                self._succeed(n)
                continue
            if n.task.metadata.cache_serialize:
                holder = self.store.cache_reserve(
                    n.cache_key, self._owner(n), _now(), self.config.reservation_ttl
                )
                if holder != self._owner(n):
                    n.cache_status = execution_pb2.CACHE_STATUS_WAITING
                    if n.phase != NP.NODE_PHASE_QUEUED:
                        self._set_phase(n, NP.NODE_PHASE_QUEUED)
                    self._cache_waiters.setdefault(n.cache_key, []).append(n)
                    continue
            n.cache_status = execution_pb2.CACHE_STATUS_MISS
            self._dispatch(n)

    def _owner(self, n: NodeExec) -> str:
        return f"{n.frame.run.record.eid}:{n.path}"

    def _poll_cache_waiters(self) -> None:
        waiting = [n for ns in self._cache_waiters.values() for n in ns]
        self._cache_waiters.clear()
        live = [n for n in waiting if not n.frame.run.terminal and not n.frame.done]
        if live:
            self._cache_lookup(live)

    def _dispatch(self, n: NodeExec) -> None:
        assert n.task is not None and n.inputs is not None
        executor = self.executor_for(n.task)
        if executor is None:
            self._fail(
                n,
                system_error("NoExecutor", f"no executor can run task {n.task_key}"),
            )
            return
        n.attempt += 1
        run = n.frame.run
        n.assignment_id = f"{run.record.eid}:{n.path}:{n.attempt}"
        timeout = _timeout(n)
        n.deadline = _now() + timeout if timeout else None
        self._assignments[n.assignment_id] = n
        if n.deadline is not None:
            heapq.heappush(self._deadlines, (n.deadline, n.assignment_id, n.attempt))
        n.started_at = 0.0
        n.worker = ""
        self._set_phase(n, NP.NODE_PHASE_RUNNING)
        self._to_dispatch.append(
            (
                executor,
                Dispatch(
                    assignment_id=n.assignment_id,
                    attempt=n.attempt,
                    task=n.task,
                    task_key=n.task_key,
                    inputs=n.inputs,
                    deadline=n.deadline,
                    execution=run.key,
                    node_id=n.path,
                    # Only process targets write files.
                    blob_parts=(
                        "executions",
                        str(run.record.eid),
                        *_safe_parts(n.path),
                        f"attempt-{n.attempt}",
                    )
                    if n.task.HasField("process")
                    else (),
                ),
            )
        )

    def _on_result(self, r: Result) -> None:
        n = self._assignments.get(r.assignment_id)
        if n is None or n.attempt != r.attempt or n.phase != NP.NODE_PHASE_RUNNING:
            self.ignored_results += 1
            log.info("ignored stale result for %s attempt %d", r.assignment_id, r.attempt)
            return
        del self._assignments[r.assignment_id]
        n.assignment_id = None
        n.worker = r.worker_id
        n.started_at = r.started_at
        n.deadline = None
        outcome = r.outcome
        if isinstance(outcome, errors_pb2.ExecutionError):
            self._attempt_failed(n, outcome)
        elif isinstance(outcome, dynamic_job_pb2.DynamicJobSpec):
            self._on_spec(n, outcome)
        else:
            problem = None if r.checked else _check_outputs(n.task, outcome)
            if problem:
                self._fail(n, user_error("BadOutputs", f"node {n.path!r}: {problem}"))
                return
            n.outputs = outcome
            if n.cache_key is not None:
                n.cache_status = execution_pb2.CACHE_STATUS_POPULATED
            self._succeed(n)

    def _attempt_failed(self, n: NodeExec, err: errors_pb2.ExecutionError) -> None:
        if not err.node_id:
            err.node_id = n.path
        if err.kind == SYSTEM:
            n.system_failures += 1
            budget = _system_budget(n, self.config.system_retries)
            retry = n.system_failures <= budget
        else:
            n.user_failures += 1
            retry = err.recoverable and n.user_failures <= _user_budget(n)
        if retry:
            self._set_phase(n, NP.NODE_PHASE_RETRYING, error=err)
            self._dispatch(n)
        else:
            self._fail(n, err)

    def _check_deadlines(self) -> None:
        now = _now()
        while self._deadlines and self._deadlines[0][0] <= now:
            _, aid, attempt = heapq.heappop(self._deadlines)
            n = self._assignments.get(aid)
            if n is None or n.attempt != attempt or n.phase != NP.NODE_PHASE_RUNNING:
                continue
            del self._assignments[aid]
            assert n.task is not None
            ex = self.executor_for(n.task)
            if ex is not None:
                self._to_cancel.append((ex, aid))
            timeout = _timeout(n)
            self._attempt_failed(
                n,
                user_error(
                    "Timeout",
                    f"attempt {attempt} of node {n.path!r} exceeded its timeout of {timeout:g}s",
                    recoverable=True,
                ),
            )

    # -- dynamic -------------------------------------------------------------------------
    def _on_spec(self, n: NodeExec, spec: dynamic_job_pb2.DynamicJobSpec) -> None:
        assert n.task is not None
        depth = n.frame.depth + 1
        try:
            self._check_embedded(spec)
            closure = compiler.compile_dynamic(
                spec,
                n.task,
                _FrameResolver(n.frame, self.registry),
                self.config.limits,
                depth=depth,
            )
        except InvalidArgument as exc:
            details = "\n".join(f"{v.field}: {v.description}" for v in exc.violations)
            self._fail(
                n,
                errors_pb2.ExecutionError(
                    code="InvalidDynamicSpec",
                    message=f"node {n.path!r} yielded an invalid spec: {exc.message}",
                    kind=USER,
                    recoverable=False,
                    details=details,
                ),
            )
            return
        self._start_dynamic(n, closure, depth, store_spec=True)

    def _check_embedded(self, spec: dynamic_job_pb2.DynamicJobSpec) -> None:
        """Registered versions are immutable: a spec may embed a registered template only with
        the same content."""
        if self.registry is None:
            return
        reg = self.registry
        pairs: list[tuple[str, identifier_pb2.Identifier, Message, Message | None]] = [
            *((f"tasks[{i}]", t.id, t, reg.get_task(t.id)) for i, t in enumerate(spec.tasks)
              if t.id.version),
            *((f"subworkflows[{i}]", w.id, w, reg.get_workflow(w.id))
              for i, w in enumerate(spec.subworkflows) if w.id.version),
            *((f"launch_plans[{i}]", lp.id, lp, reg.get_launch_plan(lp.id))
              for i, lp in enumerate(spec.launch_plans) if lp.id.version),
        ]  # fmt: skip
        violations = [
            FieldViolation(
                field,
                f"{compiler.id_key(id_)} is registered with different content; registered "
                "versions are immutable: embed a new version",
            )
            for field, id_, embedded, registered in pairs
            if registered is not None and not _same_content(embedded, registered)
        ]
        if violations:
            raise InvalidArgument(violations[0].description, violations)

    def _start_dynamic(
        self, n: NodeExec, closure: dynamic_job_pb2.DynamicJobSpec, depth: int, *, store_spec: bool
    ) -> None:
        run = n.frame.run
        n.is_dynamic = True
        if store_spec:
            self._batch.dynamic_specs.append(
                (
                    run.record.eid,
                    n.path,
                    self.payloads.pack(
                        closure.SerializeToString(),
                        "executions",
                        str(run.record.eid),
                        *_safe_parts(n.path),
                        "spec",
                    ),
                    depth,
                )
            )
        info = events_pb2.DynamicInfo(
            node_count=len(closure.nodes), depth=depth, spec_uri=f"plait://{run.key}/{n.path}"
        )
        self._set_phase(n, NP.NODE_PHASE_DYNAMIC_RUNNING, dynamic=info)
        child = Frame(
            run,
            n,
            n.path,
            n.inputs or literals_pb2.LiteralMap(),
            _merge_templates(n.frame.templates, closure),
            depth,
        )
        n.child = child
        self._populate(child, closure.nodes, closure.outputs)

    # -- workflow nodes --------------------------------------------------------------------
    def _begin_workflow(self, n: NodeExec) -> None:
        wn = n.node.workflow_node
        templates = n.frame.templates
        inputs = literals_pb2.LiteralMap()
        inputs.CopyFrom(n.inputs or literals_pb2.LiteralMap())
        if wn.HasField("launch_plan_id"):
            lp = templates.launch_plan(wn.launch_plan_id)
            if lp is None:
                self._fail(n, user_error("NotFound", f"node {n.path!r}: launch plan not found"))
                return
            for p in lp.default_inputs.parameters:
                if p.var.name not in inputs.literals and p.HasField("default"):
                    inputs.literals[p.var.name].CopyFrom(p.default)
            for k, v in lp.fixed_inputs.literals.items():
                inputs.literals[k].CopyFrom(v)
            wf_id = lp.workflow_id
        else:
            wf_id = wn.sub_workflow_id
        wf = templates.workflow(wf_id)
        if wf is None:
            self._fail(n, user_error("NotFound", f"node {n.path!r}: workflow not found"))
            return
        for p in wf.defaults.parameters:
            if p.var.name not in inputs.literals and p.HasField("default"):
                inputs.literals[p.var.name].CopyFrom(p.default)
        n.inputs = inputs
        self._set_phase(n, NP.NODE_PHASE_RUNNING)
        child = Frame(n.frame.run, n, n.path, inputs, n.frame.templates, n.frame.depth)
        n.child = child
        self._populate(child, wf.nodes, wf.outputs)

    # -- branch nodes ----------------------------------------------------------------------
    def _begin_branch(self, n: NodeExec) -> None:
        br = n.node.branch_node
        inputs = n.inputs or literals_pb2.LiteralMap()
        cases = [br.case, *br.other]
        chosen: workflow_pb2.Node | None = None
        try:
            for case in cases:
                if _evaluate(case.condition, inputs):
                    chosen = case.then_node
                    break
        except _BindingError as exc:
            self._fail(n, user_error("ConditionError", f"branch {n.path!r}: {exc}"))
            return
        if chosen is None:
            if br.HasField("else_node"):
                chosen = br.else_node
            else:
                msg = br.error.message or "no condition matched"
                self._fail(n, user_error("BranchFailed", f"branch {n.path!r}: {msg}"))
                return
        self._set_phase(n, NP.NODE_PHASE_RUNNING)
        run = n.frame.run
        others = [c.then_node for c in cases] + ([br.else_node] if br.HasField("else_node") else [])
        for other in others:
            if other.id != chosen.id:
                self._record_skipped(n, other.id)
        n.detail = chosen.id
        child = Frame(
            run, n, n.path, literals_pb2.LiteralMap(), n.frame.templates, n.frame.depth, n.frame
        )
        n.child = child
        outs = [
            literals_pb2.Binding(
                var=v,
                binding=literals_pb2.BindingData(
                    promise=literals_pb2.OutputReference(node_id=chosen.id, var=v)
                ),
            )
            for v in _output_names(chosen, n.frame.templates)
        ]
        self._populate(child, [chosen], outs)

    def _record_skipped(self, parent: NodeExec, local_id: str) -> None:
        run = parent.frame.run
        path = f"{parent.path}/{local_id}"
        now = _now()
        run.counts["total"] += 1
        run.counts["skipped"] += 1
        self._batch.nodes.append(
            NodeRecord(
                eid=run.record.eid,
                node_id=path,
                phase=NP.NODE_PHASE_SKIPPED,
                parent_id=parent.path,
                created_at=now,
                updated_at=now,
            )
        )
        t = events_pb2.NodeTransition(
            node_id=path, phase=NP.NODE_PHASE_SKIPPED, parent_node_id=parent.path
        )
        self._event(run, events_pb2.ExecutionEvent(node=t))

    # -- array nodes -----------------------------------------------------------------------
    def _begin_array(self, n: NodeExec) -> None:
        arr = n.node.array_node
        inner = arr.node
        key = compiler.id_key(inner.task_node.task_id)
        task = n.frame.templates.task(inner.task_node.task_id)
        if task is None:
            self._fail(n, user_error("TaskNotFound", f"array node {n.path!r}: task {key}"))
            return
        inputs = n.inputs or literals_pb2.LiteralMap()
        broadcast = set(arr.broadcast_inputs)
        mapped = [k for k in inputs.literals if k not in broadcast]
        lengths = {k: len(inputs.literals[k].collection.literals) for k in mapped}
        if len(set(lengths.values())) > 1:
            self._fail(
                n,
                user_error(
                    "ArrayLengthMismatch",
                    f"array node {n.path!r}: mapped inputs have different lengths {lengths}",
                ),
            )
            return
        size = next(iter(lengths.values()), 0)
        run = n.frame.run
        self._set_phase(n, NP.NODE_PHASE_RUNNING)
        child = Frame(run, n, n.path, inputs, n.frame.templates, n.frame.depth)
        child.is_array = True
        child.array_parallelism = arr.parallelism or size or 1
        if arr.HasField("min_successes"):
            required = min(size, arr.min_successes)
        elif arr.HasField("min_success_ratio"):
            required = math.ceil(size * arr.min_success_ratio - 1e-9)
        else:
            required = size
        child.array_tolerance = size - required
        child.array_optional = arr.HasField("min_successes") or arr.HasField("min_success_ratio")
        child.array_output_types = {v.name: v.type for v in task.interface.outputs.variables}
        n.child = child
        for i in range(size):
            inst = NodeExec(child, str(i), inner)
            preset = literals_pb2.LiteralMap()
            for k, v in inputs.literals.items():
                preset.literals[k].CopyFrom(v if k in broadcast else v.collection.literals[i])
            inst.preset_inputs = preset
            child.nodes[inst.local_id] = inst
            child.array_waiting.append(inst)
        child.remaining = size
        if size == 0:
            self._finish_frame(child)
            return
        self._array_fill(child)

    def _array_fill(self, frame: Frame) -> None:
        while frame.array_waiting and frame.array_running < frame.array_parallelism:
            frame.array_running += 1
            self._ready.append(frame.array_waiting.popleft())

    # -- completion ----------------------------------------------------------------------
    def _succeed(self, n: NodeExec) -> None:
        assert n.outputs is not None
        if n.cache_key is not None and n.cache_status == execution_pb2.CACHE_STATUS_POPULATED:
            run = n.frame.run
            self._batch.cache_entries.append(
                CacheEntry(
                    n.cache_key,
                    self.payloads.pack(n.outputs.SerializeToString(), "cache"),
                    run.record.eid,
                    n.path,
                    _now(),
                )
            )
            if n.task is not None and n.task.metadata.cache_serialize:
                self._batch.released_reservations.append(n.cache_key)
                self._wake_cache_waiters(n.cache_key)
        self._set_phase(n, NP.NODE_PHASE_SUCCEEDED)
        self._after_success(n)

    def _wake_cache_waiters(self, key: str) -> None:
        waiters = self._cache_waiters.pop(key, [])
        # Serve them from the entry committed in this pass.
        for w in waiters:
            w.cache_status = execution_pb2.CACHE_STATUS_HIT
            w.outputs = literals_pb2.LiteralMap()
            assert w.cache_key is not None
            src = next(e for e in self._batch.cache_entries if e.key == key)
            w.outputs.ParseFromString(self.payloads.unpack(src.outputs))
            self._succeed(w)

    def _after_success(self, n: NodeExec) -> None:
        frame = n.frame
        n.child = None
        if frame.is_array:
            frame.array_running -= 1
            self._array_fill(frame)
        for d in n.downstream:
            d.pending -= 1
            if d.pending == 0:
                self._ready.append(d)
        frame.remaining -= 1
        if frame.remaining == 0:
            self._finish_frame(frame)

    def _finish_frame(self, frame: Frame) -> None:
        if frame.done:
            return
        frame.done = True
        run = frame.run
        try:
            outputs = self._frame_outputs(frame)
        except _BindingError as exc:
            err = user_error("BindingError", f"outputs of {frame.prefix or 'workflow'!r}: {exc}")
            if frame.owner is None:
                self._fail_execution(run, err)
            else:
                self._fail(frame.owner, err)
            return
        owner = frame.owner
        if owner is None:
            run.record.outputs = self.payloads.pack(
                outputs.SerializeToString(), "executions", str(run.record.eid), "outputs"
            )
            run.record.phase = EP.EXECUTION_PHASE_SUCCEEDED
            self._save_exec(run)
            self._event(
                run,
                events_pb2.ExecutionEvent(
                    execution=events_pb2.ExecutionTransition(phase=EP.EXECUTION_PHASE_SUCCEEDED)
                ),
            )
            return
        owner.outputs = outputs
        if owner.is_dynamic and owner.cache_key is not None:
            owner.cache_status = execution_pb2.CACHE_STATUS_POPULATED
        self._succeed(owner)

    def _frame_outputs(self, frame: Frame) -> literals_pb2.LiteralMap:
        out = literals_pb2.LiteralMap()
        if frame.is_array:
            insts = [frame.nodes[str(i)] for i in range(len(frame.nodes))]
            for var, t in frame.array_output_types.items():
                coll = out.literals[var].collection
                coll.SetInParent()  # an empty list is still a list
                for inst in insts:
                    item = coll.literals.add()
                    ok = inst.outputs is not None and var in inst.outputs.literals
                    if frame.array_optional:
                        if ok:
                            assert inst.outputs is not None
                            item.scalar.union.value.CopyFrom(inst.outputs.literals[var])
                            item.scalar.union.type.CopyFrom(t)
                        else:
                            item.scalar.union.value.scalar.none_value.SetInParent()
                            item.scalar.union.type.simple = types_pb2.SIMPLE_TYPE_NONE
                    elif ok:
                        assert inst.outputs is not None
                        item.CopyFrom(inst.outputs.literals[var])
            return out
        for b in frame.outputs:
            out.literals[b.var].CopyFrom(_resolve_binding(frame, b.binding))
        return out

    def _fail(self, n: NodeExec, err: errors_pb2.ExecutionError) -> None:
        if not err.node_id:
            err.node_id = n.path
        if n.cache_key is not None and n.task is not None and n.task.metadata.cache_serialize:
            # Waiters look again on their next poll; one of them takes the reservation over.
            self._batch.released_reservations.append(n.cache_key)
        self._set_phase(n, NP.NODE_PHASE_FAILED, error=err)
        frame = n.frame
        run = frame.run
        if frame.is_array:
            frame.array_failures += 1
            frame.array_running -= 1
            if frame.array_failures <= frame.array_tolerance:
                frame.remaining -= 1
                self._array_fill(frame)
                if frame.remaining == 0:
                    self._finish_frame(frame)
                return
        if frame.done:
            return
        frame.done = True
        self._abort_frame(frame)
        if frame.owner is None:
            self._fail_execution(run, err)
        else:
            self._fail(frame.owner, err)

    def _abort_frame(self, frame: Frame) -> None:
        """Stop everything still running in a failed frame (fail fast)."""
        for m in frame.nodes.values():
            if m.phase in (
                NP.NODE_PHASE_RUNNING,
                NP.NODE_PHASE_QUEUED,
                NP.NODE_PHASE_RETRYING,
                NP.NODE_PHASE_DYNAMIC_RUNNING,
            ):
                if m.child is not None and not m.child.done:
                    m.child.done = True
                    self._abort_frame(m.child)
                if m.assignment_id is not None:
                    self._assignments.pop(m.assignment_id, None)
                    if m.task is not None:
                        ex = self.executor_for(m.task)
                        if ex is not None:
                            self._to_cancel.append((ex, m.assignment_id))
                    m.assignment_id = None
                self._set_phase(m, NP.NODE_PHASE_ABORTED)

    def _fail_execution(self, run: Run, err: errors_pb2.ExecutionError) -> None:
        if run.terminal:
            return
        run.record.phase = EP.EXECUTION_PHASE_FAILED
        run.record.error = err.SerializeToString()
        self._save_exec(run)
        self._event(
            run,
            events_pb2.ExecutionEvent(
                execution=events_pb2.ExecutionTransition(phase=EP.EXECUTION_PHASE_FAILED, error=err)
            ),
        )

    def _terminate(self, eid: int, reason: str) -> None:
        run = self.runs.get(eid)
        if run is None or run.terminal:
            return
        if run.root is not None:
            run.root.done = True
            self._abort_frame(run.root)
        err = errors_pb2.ExecutionError(
            code="Terminated", message=reason or "terminated by request", kind=USER
        )
        run.record.phase = EP.EXECUTION_PHASE_ABORTED
        run.record.error = err.SerializeToString()
        self._save_exec(run)
        self._event(
            run,
            events_pb2.ExecutionEvent(
                execution=events_pb2.ExecutionTransition(
                    phase=EP.EXECUTION_PHASE_ABORTED, error=err
                )
            ),
        )


# -- helpers -----------------------------------------------------------------------------


class _FrameResolver:
    """Resolves templates for a dynamic spec: first the closure the generator runs in, then the
    registry (a spec may reference registered tasks and workflows it does not embed)."""

    def __init__(self, frame: Frame, registry: compiler.Resolver | None) -> None:
        self._t = frame.templates
        self._registry = registry

    def get_task(self, id: identifier_pb2.Identifier) -> tasks_pb2.TaskTemplate | None:
        found = self._t.tasks.get(compiler.id_key(id))
        if found is None and self._registry is not None:
            found = self._registry.get_task(id)
        return found

    def get_workflow(self, id: identifier_pb2.Identifier) -> workflow_pb2.WorkflowTemplate | None:
        found = self._t.workflows.get(compiler.id_key(id))
        if found is None and self._registry is not None:
            found = self._registry.get_workflow(id)
        return found

    def get_launch_plan(self, id: identifier_pb2.Identifier) -> workflow_pb2.LaunchPlan | None:
        found = self._t.launch_plans.get(compiler.id_key(id))
        if found is None and self._registry is not None:
            found = self._registry.get_launch_plan(id)
        return found


def _same_content(embedded: Message, registered: Message) -> bool:
    """Equal but for the defaults registration fills into identifiers."""
    clone = type(embedded)()
    clone.CopyFrom(embedded)
    clone.id.CopyFrom(registered.id)  # type: ignore[attr-defined]
    if isinstance(clone, workflow_pb2.LaunchPlan):
        wid = clone.workflow_id
        wid.project = wid.project or "default"
        wid.domain = wid.domain or "development"
    return clone == registered


def _merge_templates(base: Templates, closure: dynamic_job_pb2.DynamicJobSpec) -> Templates:
    merged = Templates(closure)
    for k, t in base.tasks.items():
        merged.tasks.setdefault(k, t)
    for k, w in base.workflows.items():
        merged.workflows.setdefault(k, w)
    for k, lp in base.launch_plans.items():
        merged.launch_plans.setdefault(k, lp)
    return merged


_ACTIVE = frozenset((NP.NODE_PHASE_RUNNING, NP.NODE_PHASE_DYNAMIC_RUNNING, NP.NODE_PHASE_RETRYING))


def _count_transition(run: Run, old: int, new: int, cache_status: int) -> None:
    c = run.counts
    if old in _ACTIVE:
        c["running"] -= 1
    if new in _ACTIVE:
        c["running"] += 1
    if new == NP.NODE_PHASE_SUCCEEDED and old != new:
        c["succeeded"] += 1
        if cache_status == execution_pb2.CACHE_STATUS_HIT:
            c["cached"] += 1
    elif new == NP.NODE_PHASE_FAILED and old != new:
        c["failed"] += 1
    elif new == NP.NODE_PHASE_SKIPPED and old != new:
        c["skipped"] += 1


def _safe_parts(path: str) -> list[str]:
    return [p.replace(":", "_") or "_" for p in path.split("/")]


def _timeout(n: NodeExec) -> float:
    md = n.node.metadata
    if md.HasField("timeout"):
        return md.timeout.ToTimedelta().total_seconds()
    if n.task is not None and n.task.metadata.HasField("timeout"):
        return n.task.metadata.timeout.ToTimedelta().total_seconds()
    return 0.0


def _user_budget(n: NodeExec) -> int:
    md = n.node.metadata
    if md.HasField("retries"):
        return md.retries.retries
    assert n.task is not None
    return n.task.metadata.retries.retries


def _system_budget(n: NodeExec, default: int) -> int:
    md = n.node.metadata
    if md.HasField("retries") and md.retries.HasField("system_retries"):
        return md.retries.system_retries
    assert n.task is not None
    r = n.task.metadata.retries
    return r.system_retries if r.HasField("system_retries") else default


def _cache_key(
    task: tasks_pb2.TaskTemplate, inputs: literals_pb2.LiteralMap, node: workflow_pb2.Node
) -> str:
    version = node.metadata.cache_version or task.metadata.cache_version
    ignore = set(task.metadata.cache_ignore_inputs)
    parts = [
        task.id.project,
        task.id.domain,
        task.id.name,
        version,
        interface_signature(task.interface),
        literal_map_hash(inputs, ignore),
    ]
    return "|".join(parts)


def _check_outputs(
    task: tasks_pb2.TaskTemplate | None, outputs: literals_pb2.LiteralMap
) -> str | None:
    if task is None:
        return None
    declared = [v.name for v in task.interface.outputs.variables]
    missing = [v for v in declared if v not in outputs.literals]
    if missing:
        return f"the task returned no value for output(s) {missing}"
    extra = [k for k in outputs.literals if k not in declared]
    if extra:
        return f"the task returned undeclared output(s) {sorted(extra)}"
    for v in task.interface.outputs.variables:
        if not type_check.literal_matches(outputs.literals[v.name], v.type):
            return f"output {v.name!r} does not match its declared type"
    return None


def _resolve_binding(frame: Frame, b: literals_pb2.BindingData) -> literals_pb2.Literal:
    which = b.WhichOneof("value")
    if which == "literal":
        lit = b.literal
    elif which == "promise":
        lit = frame.lookup(b.promise.node_id, b.promise.var)
        for step in b.promise.attr_path:
            lit = _step(lit, step)
    elif which == "collection":
        lit = literals_pb2.Literal()
        lit.collection.SetInParent()
        items = lit.collection.literals
        for item in b.collection.bindings:
            items.add().CopyFrom(_resolve_binding(frame, item))
    elif which == "map":
        lit = literals_pb2.Literal()
        lit.map.SetInParent()
        m = lit.map.literals
        for k, item in b.map.bindings.items():
            m[k].CopyFrom(_resolve_binding(frame, item))
    else:
        raise _BindingError("empty binding")
    if b.HasField("union_variant") and not (
        lit.HasField("scalar") and lit.scalar.HasField("union")
    ):
        wrapped = literals_pb2.Literal()
        wrapped.scalar.union.value.CopyFrom(lit)
        wrapped.scalar.union.type.CopyFrom(b.union_variant)
        return wrapped
    return lit


def _step(lit: literals_pb2.Literal, step: literals_pb2.PromiseAttribute) -> literals_pb2.Literal:
    while lit.HasField("scalar") and lit.scalar.HasField("union"):
        lit = lit.scalar.union.value
    if step.HasField("index"):
        items = lit.collection.literals
        if not lit.HasField("collection") or not -len(items) <= step.index < len(items):
            raise _BindingError(f"index {step.index} is out of range")
        return items[step.index]
    name = step.name
    if lit.HasField("map"):
        if name not in lit.map.literals:
            raise _BindingError(f"key {name!r} is missing")
        return lit.map.literals[name]
    if lit.HasField("record"):
        for f in lit.record.fields:
            if f.name == name:
                return f.value
        raise _BindingError(f"field {name!r} is missing")
    raise _BindingError(f"cannot take {name!r} of this value")


def _scalar_of(lit: literals_pb2.Literal) -> object:
    while lit.HasField("scalar") and lit.scalar.HasField("union"):
        lit = lit.scalar.union.value
    if not lit.HasField("scalar"):
        raise _BindingError("conditions compare scalars only")
    s = lit.scalar
    if s.HasField("none_value"):
        return None
    if not s.HasField("primitive"):
        raise _BindingError("conditions compare primitives only")
    p = s.primitive
    which = p.WhichOneof("value")
    if which == "integer":
        return p.integer
    if which == "float_value":
        return p.float_value
    if which == "string_value":
        return p.string_value
    if which == "boolean":
        return p.boolean
    if which == "datetime":
        return p.datetime.ToNanoseconds()
    if which == "duration":
        return p.duration.ToNanoseconds()
    raise _BindingError("empty primitive")


def _operand(op: condition_pb2.Operand, inputs: literals_pb2.LiteralMap) -> object:
    if op.HasField("var"):
        if op.var not in inputs.literals:
            raise _BindingError(f"condition input {op.var!r} is not bound")
        return _scalar_of(inputs.literals[op.var])
    return _scalar_of(op.literal)


_OPS: dict[int, Callable[[object, object], bool]] = {
    condition_pb2.ComparisonExpression.OPERATOR_EQ: lambda a, b: a == b,
    condition_pb2.ComparisonExpression.OPERATOR_NEQ: lambda a, b: a != b,
    condition_pb2.ComparisonExpression.OPERATOR_GT: lambda a, b: a > b,  # type: ignore[operator]
    condition_pb2.ComparisonExpression.OPERATOR_GTE: lambda a, b: a >= b,  # type: ignore[operator]
    condition_pb2.ComparisonExpression.OPERATOR_LT: lambda a, b: a < b,  # type: ignore[operator]
    condition_pb2.ComparisonExpression.OPERATOR_LTE: lambda a, b: a <= b,  # type: ignore[operator]
}


def _evaluate(expr: condition_pb2.BooleanExpression, inputs: literals_pb2.LiteralMap) -> bool:
    if expr.HasField("conjunction"):
        c = expr.conjunction
        left = _evaluate(c.left_expression, inputs)
        if c.operator == condition_pb2.ConjunctionExpression.LOGICAL_OPERATOR_AND:
            return left and _evaluate(c.right_expression, inputs)
        return left or _evaluate(c.right_expression, inputs)
    cmp = expr.comparison
    op = _OPS.get(cmp.operator)
    if op is None:
        raise _BindingError("comparison has no operator")
    a = _operand(cmp.left_value, inputs)
    b = _operand(cmp.right_value, inputs)
    try:
        return op(a, b)
    except TypeError as exc:
        raise _BindingError(f"cannot compare {a!r} with {b!r}") from exc


def _output_names(node: workflow_pb2.Node, templates: Templates) -> list[str]:
    """Names of every output the node produces (what a branch that chose it exposes)."""
    which = node.WhichOneof("target")
    if which == "task_node":
        t = templates.task(node.task_node.task_id)
        return [v.name for v in t.interface.outputs.variables] if t else []
    if which == "array_node":
        t = templates.task(node.array_node.node.task_node.task_id)
        return [v.name for v in t.interface.outputs.variables] if t else []
    if which == "workflow_node":
        wn = node.workflow_node
        wf_id = wn.sub_workflow_id
        if wn.HasField("launch_plan_id"):
            lp = templates.launch_plan(wn.launch_plan_id)
            if lp is None:
                return []
            wf_id = lp.workflow_id
        wf = templates.workflow(wf_id)
        return [v.name for v in wf.interface.outputs.variables] if wf else []
    if which == "branch_node":
        return _output_names(node.branch_node.case.then_node, templates)
    return []


def _collect_promised(node: workflow_pb2.Node, target: str, names: set[str]) -> None:
    for b in node.inputs:
        _collect_binding(b.binding, target, names)
    which = node.WhichOneof("target")
    if which == "branch_node":
        br = node.branch_node
        for case in [br.case, *br.other]:
            _collect_promised(case.then_node, target, names)
        if br.HasField("else_node"):
            _collect_promised(br.else_node, target, names)


def _collect_binding(b: literals_pb2.BindingData, target: str, names: set[str]) -> None:
    which = b.WhichOneof("value")
    if which == "promise":
        if b.promise.node_id == target:
            names.add(b.promise.var)
    elif which == "collection":
        for item in b.collection.bindings:
            _collect_binding(item, target, names)
    elif which == "map":
        for item in b.map.bindings.values():
            _collect_binding(item, target, names)
