"""Task nodes: cache lookups, attempts dispatched to executors, results, retries and
deadlines. The attempts in flight are this handler's state."""

from __future__ import annotations

import collections
import heapq
import logging
from collections.abc import Callable

from plaitidl.core.v1 import (
    dynamic_job_pb2,
    errors_pb2,
    execution_pb2,
    literals_pb2,
    tasks_pb2,
)

from plait_engine import compiler, ids, type_check
from plait_engine.executors import Dispatch, Executor, Result, system_error
from plait_engine.scheduler import cache, retries
from plait_engine.scheduler.journal import safe_parts
from plait_engine.scheduler.nodes.base import Graph, SchedulerConfig, user_error
from plait_engine.scheduler.nodes.dynamic import DynamicHandler
from plait_engine.scheduler.state import NodeExec, Run
from plait_engine.store import CacheEntry, NodeRecord

log = logging.getLogger("plait.scheduler")
_EP = execution_pb2
# Phases of a node whose attempt is with its executor (QUEUED: waiting for a worker).
_IN_FLIGHT = (_EP.NODE_PHASE_RUNNING, _EP.NODE_PHASE_QUEUED)
ExecutorFor = Callable[[tasks_pb2.TaskTemplate], Executor | None]
# Seconds an attempt in the engine's own process runs before its node's record is written.
RECORD_AFTER = 1.0


class TaskHandler:
    """Runs task nodes.

    Attributes:
        assignments: Attempts in flight by assignment id.
        to_dispatch: Attempts to hand to executors once the pass committed.
        to_cancel: Attempts to withdraw once the pass committed.
        lookups: Nodes waiting for a cache lookup (done by the loop, between steps).
        reserving: Nodes that asked for a cache reservation in this pass.
        granted: Nodes whose reservation was granted, to dispatch on the next pass.
        waiters: Nodes waiting for another node's serialized computation.
        ignored_results: Results that no longer matched an attempt in flight.
    """

    def __init__(self, graph: Graph, executor_for: ExecutorFor, dynamic: DynamicHandler) -> None:
        self._g = graph
        self._executor_for = executor_for
        self._dynamic = dynamic
        self.assignments: dict[str, NodeExec] = {}
        self._deadlines: list[tuple[float, str, int]] = []
        self.to_dispatch: list[tuple[Executor, Dispatch]] = []
        self.to_cancel: list[tuple[Executor, str]] = []
        self.lookups: list[NodeExec] = []
        self.reserving: list[NodeExec] = []
        self.granted: list[NodeExec] = []
        self.waiters = cache.Waiters()
        self.ignored_results = 0
        # Retries waiting for their backoff: (due, tiebreak, node, attempt that failed).
        self._retries: list[tuple[float, int, NodeExec, int]] = []
        self._retry_seq = 0
        # Attempts running without their node's record yet: (when to write it, node, attempt).
        self.unrecorded: collections.deque[tuple[float, NodeExec, int]] = collections.deque()

    # -- starting ----------------------------------------------------------------------
    def begin(self, n: NodeExec, recovered: NodeRecord | None) -> None:
        """Find the task; resume a stored spec, look the cache up, or dispatch."""
        entry = n.frame.templates.task_entry(n.node.task_node.task_id)
        if entry is None:
            key = ids.id_key(n.node.task_node.task_id)
            self._g.fail(n, user_error("TaskNotFound", f"node {n.path!r}: task {key} not found"))
            return
        n.task_key, task = entry
        n.task = task
        if recovered is not None and recovered.phase == _EP.NODE_PHASE_DYNAMIC_RUNNING:
            spec = n.frame.run.specs.get(n.path)
            if spec is not None:
                # The generator already yielded; run its stored sub-graph, don't ask again.
                self._dynamic.resume(n, spec)
                return
        if cache.cacheable(n):
            n.cache_key = cache.key(task, n.inputs or literals_pb2.LiteralMap(), n.node)
            self.lookups.append(n)
            return
        self.dispatch(n)

    def on_lookups(self, nodes: list[NodeExec], found: dict[str, CacheEntry], outputs: dict[
            str, literals_pb2.LiteralMap]) -> None:  # fmt: skip
        """Cache lookups came back: serve hits, reserve serialized misses, run the rest."""
        for n in nodes:
            if not n.live:
                continue
            assert n.cache_key is not None
            if n.cache_key in found:
                n.cache_status = _EP.CACHE_STATUS_HIT
                n.outputs = outputs[n.cache_key]
                self._g.succeed(n)
            elif cache.serialized(n):
                self._g.journal.reserve(
                    n.cache_key, cache.holder(n), self._g.config.reservation_ttl
                )
                self.reserving.append(n)
            else:
                n.cache_status = _EP.CACHE_STATUS_MISS
                self.dispatch(n)

    def on_holders(self, holders: dict[str, str]) -> None:
        """The commit decided reservations: holders compute, the others wait."""
        nodes, self.reserving = self.reserving, []
        for n in nodes:
            if not n.live or n.cache_key is None:
                continue
            if holders.get(n.cache_key) == cache.holder(n):
                n.cache_status = _EP.CACHE_STATUS_MISS
                self.granted.append(n)
            else:
                n.cache_status = _EP.CACHE_STATUS_WAITING
                if n.phase != _EP.NODE_PHASE_QUEUED:
                    self._g.journal.node(n, _EP.NODE_PHASE_QUEUED)
                self.waiters.add(n)

    def dispatch_granted(self) -> None:
        """Dispatch the nodes whose reservation the last commit granted."""
        nodes, self.granted = self.granted, []
        for n in nodes:
            if n.live:
                self.dispatch(n)

    def dispatch(self, n: NodeExec) -> None:
        """Start an attempt: record RUNNING now, hand it to its executor after the commit."""
        assert n.task is not None and n.inputs is not None
        executor = self._executor_for(n.task)
        if executor is None:
            self._g.fail(n, system_error("NoExecutor", f"no executor can run task {n.task_key}"))
            return
        n.attempt += 1
        run = n.frame.run
        n.assignment_id = f"{run.eid}:{n.path}:{n.attempt}"
        limit = retries.timeout(n, self._g.config.default_timeout)
        n.deadline = self._g.journal.now + limit if limit else None
        self.assignments[n.assignment_id] = n
        if n.deadline is not None:
            heapq.heappush(self._deadlines, (n.deadline, n.assignment_id, n.attempt))
        n.started_at = 0.0
        n.worker = ""
        # An attempt in the engine's own process dies with it: its node's record can wait for
        # its end (one row instead of two), or for `record_overdue` if it runs long.
        later = not n.persisted and getattr(executor, "in_engine_process", False)
        self._g.journal.node(n, _EP.NODE_PHASE_RUNNING, record=not later)
        if later:
            self.unrecorded.append((self._g.journal.now + RECORD_AFTER, n, n.attempt))
        parts = (*run.blob_key, *safe_parts(n.path), f"attempt-{n.attempt}")
        self.to_dispatch.append(
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
                    blob_parts=parts if n.task.HasField("process") else (),
                ),
            )
        )

    # -- results -----------------------------------------------------------------------
    def attempt_of(self, r: Result) -> NodeExec | None:
        """The node a result answers, or None when it is stale (counted and logged)."""
        n = self.assignments.get(r.assignment_id)
        if n is None or n.attempt != r.attempt or n.phase not in _IN_FLIGHT:
            self.ignored_results += 1
            log.info("ignored stale result for %s attempt %d", r.assignment_id, r.attempt)
            return None
        return n

    def on_waiting(self, n: NodeExec, reason: str) -> None:
        """Its executor holds the attempt back (no connected worker serves it): QUEUED with
        the reason; RUNNING again once it is handed to a worker."""
        if not n.live:
            return
        if reason and n.phase == _EP.NODE_PHASE_RUNNING:
            n.detail = reason
            self._g.journal.node(n, _EP.NODE_PHASE_QUEUED, reason=reason)
        elif not reason and n.phase == _EP.NODE_PHASE_QUEUED:
            n.detail = ""
            self._g.journal.node(n, _EP.NODE_PHASE_RUNNING)

    def on_result(self, n: NodeExec, r: Result) -> None:
        """Apply a result of the node's attempt in flight."""
        del self.assignments[r.assignment_id]
        if n.phase == _EP.NODE_PHASE_QUEUED:
            n.detail = ""
        n.assignment_id = None
        n.worker = r.worker_id
        n.started_at = r.started_at
        n.deadline = None
        outcome = r.outcome
        if isinstance(outcome, errors_pb2.ExecutionError):
            self.attempt_failed(n, bounded(outcome))
        elif isinstance(outcome, dynamic_job_pb2.DynamicJobSpec):
            self._dynamic.on_spec(n, outcome)
        else:
            problem = None if r.checked else _check_outputs(n.task, outcome, self._g.config)
            if problem:
                self._g.fail(n, user_error("BadOutputs", f"node {n.path!r}: {problem}"))
                return
            n.outputs = outcome
            if n.cache_key is not None:
                n.cache_status = _EP.CACHE_STATUS_POPULATED
            self._g.succeed(n)

    def attempt_failed(self, n: NodeExec, err: errors_pb2.ExecutionError) -> None:
        """Retry within the budget, else fail the node."""
        if not err.node_id:
            err.node_id = n.path
        if not retries.should_retry(n, err, self._g.config.system_retries):
            self._g.fail(n, err)
            return
        delay = retries.backoff(n, err)
        if delay <= 0:
            self._g.journal.node(n, _EP.NODE_PHASE_RETRYING, error=err)
            self.dispatch(n)
            return
        due = self._g.journal.now + delay
        self._g.journal.node(n, _EP.NODE_PHASE_RETRYING, error=err, retry_at=due)
        self._retry_seq += 1
        heapq.heappush(self._retries, (due, self._retry_seq, n, n.attempt))

    def due_retries(self, now: float) -> list[NodeExec]:
        """The retrying nodes whose backoff is over (the loop dispatches them)."""
        due: list[NodeExec] = []
        while self._retries and self._retries[0][0] <= now:
            _, _, n, attempt = heapq.heappop(self._retries)
            if n.live and n.attempt == attempt and n.phase == _EP.NODE_PHASE_RETRYING:
                due.append(n)
        return due

    def check_deadlines(self, now: float) -> None:
        """Time out attempts past their deadline (a recoverable error)."""
        while self._deadlines and self._deadlines[0][0] <= now:
            _, aid, attempt = heapq.heappop(self._deadlines)
            n = self.assignments.get(aid)
            if n is None or n.attempt != attempt or n.phase not in _IN_FLIGHT:
                continue
            self.withdraw(n)
            limit = retries.timeout(n, self._g.config.default_timeout)
            self.attempt_failed(
                n,
                user_error(
                    "Timeout",
                    f"attempt {attempt} of node {n.path!r} exceeded its timeout of {limit:g}s",
                    recoverable=True,
                ),
            )

    def next_deadline(self) -> float | None:
        """When the earliest attempt in flight times out, a retry is due or a record is."""
        times = [h[0][0] for h in (self._deadlines, self._retries, self.unrecorded) if h]
        return min(times) if times else None

    def record_overdue(self, now: float) -> None:
        """Write the records of attempts that have run `RECORD_AFTER` seconds without one, so
        that listings show them while they run."""
        while self.unrecorded and self.unrecorded[0][0] <= now:
            _, n, attempt = self.unrecorded.popleft()
            if n.live and not n.persisted and n.attempt == attempt and n.phase in _IN_FLIGHT:
                self._g.journal.record(n)

    # -- completion --------------------------------------------------------------------
    def on_success(self, n: NodeExec) -> None:
        """Store a computed cache entry; serve the nodes waiting for it."""
        if n.cache_key is None or n.cache_status != _EP.CACHE_STATUS_POPULATED:
            return
        assert n.outputs is not None
        self._g.journal.cache_entry(n, n.cache_key, n.outputs)
        if cache.serialized(n):
            self._g.journal.release(n.cache_key)
            for w in self.waiters.pop(n.cache_key):
                if w.live:
                    w.cache_status = _EP.CACHE_STATUS_HIT
                    w.outputs = n.outputs
                    self._g.succeed(w)

    def on_failure(self, n: NodeExec) -> None:
        """Release a reservation the node held: a waiter takes it over on its next look."""
        if n.cache_key is not None and cache.serialized(n):
            self._g.journal.release(n.cache_key)

    def withdraw(self, n: NodeExec) -> None:
        """Forget the node's attempt in flight and ask its executor to stop it."""
        aid = n.assignment_id
        if aid is None:
            return
        self.assignments.pop(aid, None)
        n.assignment_id = None
        if n.task is not None:
            ex = self._executor_for(n.task)
            if ex is not None:
                self.to_cancel.append((ex, aid))

    def forget(self, run: Run) -> None:
        """Drop every trace of a run (it finished, failed internally or was lost)."""
        for n in list(self.assignments.values()):
            if n.frame.run is run:
                self.withdraw(n)
        self.to_dispatch = [(ex, d) for ex, d in self.to_dispatch if _eid(d) != run.eid]
        self.lookups = [n for n in self.lookups if n.frame.run is not run]
        self.reserving = [n for n in self.reserving if n.frame.run is not run]
        self.granted = [n for n in self.granted if n.frame.run is not run]


_MAX_CODE = 256
_MAX_MESSAGE = 16 * 1024
_MAX_DETAILS = 1 << 20


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def bounded(err: errors_pb2.ExecutionError) -> errors_pb2.ExecutionError:
    """An error from an executor, cut to sizes every reader can take (code 256 characters,
    message 16 Ki, details 1 Mi): it is stored, listed and streamed to clients."""
    if len(err.code) > _MAX_CODE or len(err.message) > _MAX_MESSAGE:
        err.code = _cut(err.code, _MAX_CODE)
        err.message = _cut(err.message, _MAX_MESSAGE)
    if len(err.details) > _MAX_DETAILS:
        err.details = _cut(err.details, _MAX_DETAILS)
    return err


def _eid(d: Dispatch) -> int:
    return int(d.assignment_id.split(":", 1)[0])


def _check_outputs(
    task: tasks_pb2.TaskTemplate | None, outputs: literals_pb2.LiteralMap, config: SchedulerConfig
) -> str | None:
    if task is None:
        return None
    deep = compiler.literal_depth_problems(outputs, "outputs", config.limits.max_literal_depth)
    if deep:
        return f"{deep[0].field}: {deep[0].description}"
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
