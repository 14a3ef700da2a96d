"""The graph walker: frames and their nodes, readiness, success and failure propagation.

It implements the `Graph` interface node handlers see, and hands each ready node to the
handler of its kind. It never does I/O: the loop feeds it and commits what it journaled.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence

from plaitidl.core.v1 import errors_pb2, execution_pb2, literals_pb2, workflow_pb2

from plait_engine import compiler
from plait_engine.executors import system_error
from plait_engine.scheduler import bindings, recovery
from plait_engine.scheduler.journal import Journal
from plait_engine.scheduler.nodes.array import ArrayHandler
from plait_engine.scheduler.nodes.base import (
    FrameHooks,
    NodeHandler,
    SchedulerConfig,
    user_error,
)
from plait_engine.scheduler.nodes.branch import BranchHandler
from plait_engine.scheduler.nodes.dynamic import DynamicHandler
from plait_engine.scheduler.nodes.task import ExecutorFor, TaskHandler
from plait_engine.scheduler.nodes.workflow import WorkflowHandler
from plait_engine.scheduler.state import Frame, NodeExec, Run, Templates
from plait_engine.templates import TemplateSource

log = logging.getLogger("plait.scheduler")
_EP = execution_pb2
_UNFINISHED = (
    _EP.NODE_PHASE_RUNNING,
    _EP.NODE_PHASE_QUEUED,
    _EP.NODE_PHASE_RETRYING,
    _EP.NODE_PHASE_DYNAMIC_RUNNING,
)
_ENDED_BADLY = (_EP.NODE_PHASE_FAILED, _EP.NODE_PHASE_SKIPPED, _EP.NODE_PHASE_ABORTED)


class Walker:
    """Walks every run's graphs; the `Graph` of the node handlers.

    Args:
        journal: Where transitions go.
        config: Scheduler knobs.
        executor_for: The executor of a task template.
        source: Registered templates, for dynamic specs that reference them.
    """

    def __init__(
        self,
        journal: Journal,
        config: SchedulerConfig,
        executor_for: ExecutorFor,
        source: TemplateSource | None,
    ) -> None:
        self.journal = journal
        self.config = config
        self.ready: deque[NodeExec] = deque()
        self.dynamic = DynamicHandler(self, source)
        self.tasks = TaskHandler(self, executor_for, self.dynamic)
        self._handlers: dict[str, NodeHandler] = {
            "task_node": self.tasks,
            "workflow_node": WorkflowHandler(self),
            "branch_node": BranchHandler(self),
            "array_node": ArrayHandler(self),
        }

    # -- frames ------------------------------------------------------------------------
    def start_root(self, adopted: recovery.Adopted) -> None:
        """Start (or resume) an execution's root graph."""
        run = adopted.run
        frame = Frame(run, None, adopted.inputs, Templates(adopted.closure), depth=0)
        run.root = frame
        frame.outputs = adopted.closure.outputs
        if run.phase == _EP.EXECUTION_PHASE_QUEUED:
            self.journal.execution(run, _EP.EXECUTION_PHASE_RUNNING)
        self._populate(frame, adopted.closure.nodes)

    def start_frame(
        self,
        owner: NodeExec,
        inputs: literals_pb2.LiteralMap,
        templates: Templates,
        depth: int,
        nodes: Sequence[workflow_pb2.Node],
        outputs: Sequence[literals_pb2.Binding],
        *,
        outer: Frame | None = None,
        tolerance: int = 0,
    ) -> Frame:
        """See `Graph.start_frame`."""
        frame = Frame(owner.frame.run, owner, inputs, templates, depth, outer)
        frame.outputs = outputs
        frame.tolerance = tolerance
        owner.child = frame
        self._populate(frame, nodes)
        return frame

    def open_frame(
        self,
        owner: NodeExec,
        inputs: literals_pb2.LiteralMap,
        hooks: FrameHooks,
        *,
        tolerance: int = 0,
    ) -> Frame:
        """See `Graph.open_frame`."""
        frame = Frame(owner.frame.run, owner, inputs, owner.frame.templates, owner.frame.depth)
        frame.tolerance = tolerance
        frame.kind_state = hooks
        owner.child = frame
        return frame

    def add_nodes(self, frame: Frame, nodes: Sequence[NodeExec]) -> None:
        """See `Graph.add_nodes`."""
        for n in nodes:
            frame.nodes[n.local_id] = n
        frame.run.counts["total"] += len(nodes)
        frame.remaining += len(nodes)
        if frame.remaining == 0:
            self.finish_frame(frame)

    def make_ready(self, n: NodeExec) -> None:
        """See `Graph.make_ready`."""
        self.ready.append(n)

    def _populate(self, frame: Frame, nodes: Sequence[workflow_pb2.Node]) -> None:
        by_id = frame.nodes
        for node in nodes:
            nid = node.id  # one string for the key and the node (a million of them, maybe)
            by_id[nid] = NodeExec(frame, nid, node)
        frame.remaining = len(by_id)
        frame.run.counts["total"] += frame.remaining
        for n in by_id.values():
            ups = [u for u in compiler.node_upstreams(n.node) if u in by_id]
            n.pending = len(ups)
            for u in ups:
                up = by_id[u]
                if isinstance(up.downstream, list):
                    up.downstream.append(n)
                else:
                    up.downstream = [n]
        if frame.remaining == 0:
            self.finish_frame(frame)
            return
        self.ready.extend(n for n in frame.nodes.values() if n.pending == 0)

    # -- progress ----------------------------------------------------------------------
    def begin(self, n: NodeExec) -> None:
        """Start a ready node: restore its record after a restart, resolve its inputs, and
        hand it to its kind's handler."""
        rec = n.frame.run.recovered.pop(n.path, None)
        if rec is not None:
            recovery.restore(n, rec)
            if rec.phase == _EP.NODE_PHASE_SUCCEEDED:
                n.child = None
                self._after_success(n)
                return
            if rec.phase in _ENDED_BADLY:
                self._propagate_failure(n, recovery.recorded_error(rec))
                return
        try:
            n.inputs = n.preset_inputs or bindings.resolve_inputs(n.frame, n.node.inputs)
        except bindings.BindingError as exc:
            self.fail(n, user_error("BindingError", f"node {n.path!r}: {exc}"))
            return
        which = n.node.WhichOneof("target")
        handler = self._handlers.get(which or "")
        if handler is None:
            self.fail(n, user_error("InvalidNode", f"node {n.path!r} has no target"))
            return
        handler.begin(n, rec)

    def succeed(self, n: NodeExec) -> None:
        """See `Graph.succeed`."""
        self.tasks.on_success(n)
        self.journal.node(n, _EP.NODE_PHASE_SUCCEEDED)
        self._after_success(n)

    def _after_success(self, n: NodeExec) -> None:
        frame = n.frame
        n.child = None
        n.compact()
        if frame.kind_state is not None:
            frame.kind_state.node_ended(frame, n)
        for d in n.downstream:
            d.pending -= 1
            if d.pending == 0:
                self.ready.append(d)
        frame.remaining -= 1
        if frame.remaining == 0:
            self.finish_frame(frame)

    def fail(self, n: NodeExec, err: errors_pb2.ExecutionError) -> None:
        """See `Graph.fail`."""
        if not err.node_id:
            err.node_id = n.path
        self.tasks.on_failure(n)
        self.journal.node(n, _EP.NODE_PHASE_FAILED, error=err)
        self._propagate_failure(n, err)

    def _propagate_failure(self, n: NodeExec, err: errors_pb2.ExecutionError) -> None:
        frame = n.frame
        if frame.done:
            return
        if frame.unsuccessful < frame.tolerance:
            self._tolerate(frame, n)
            return
        frame.done = True
        self.abort_frame(frame)
        if frame.owner is None:
            self.fail_execution(frame.run, err)
        else:
            self.fail(frame.owner, err)

    def _tolerate(self, frame: Frame, n: NodeExec) -> None:
        """A node of a frame that tolerates failures ended without success; so do the nodes
        that needed it."""
        frame.unsuccessful += 1
        frame.remaining -= 1
        if frame.kind_state is not None:
            frame.kind_state.node_ended(frame, n)
        for d in n.downstream:
            if d.phase == 0 and not frame.done:
                d.pending = -1  # never ready
                self.fail(
                    d,
                    user_error("UpstreamFailed", f"node {d.path!r} needs {n.path!r}, which failed"),
                )
        if frame.remaining == 0 and not frame.done:
            self.finish_frame(frame)

    def finish_frame(self, frame: Frame) -> None:
        """Every node of the frame ended: resolve its outputs and succeed its owner."""
        if frame.done:
            return
        frame.done = True
        run = frame.run
        try:
            if frame.kind_state is not None:
                outputs = frame.kind_state.outputs(frame)
            else:
                outputs = bindings.resolve_inputs(frame, frame.outputs)
        except bindings.BindingError as exc:
            err = user_error("BindingError", f"outputs of {frame.prefix or 'workflow'!r}: {exc}")
            if frame.owner is None:
                self.fail_execution(run, err)
            else:
                self.fail(frame.owner, err)
            return
        owner = frame.owner
        if owner is None:
            self.journal.execution(run, _EP.EXECUTION_PHASE_SUCCEEDED, outputs=outputs)
            return
        owner.outputs = outputs
        if owner.is_dynamic and owner.cache_key is not None:
            owner.cache_status = _EP.CACHE_STATUS_POPULATED
        self.succeed(owner)

    def abort_frame(self, frame: Frame) -> None:
        """Stop everything still running in a failed frame (fail fast)."""
        for m in frame.nodes.values():
            if m.phase in _UNFINISHED:
                if m.child is not None and not m.child.done:
                    m.child.done = True
                    self.abort_frame(m.child)
                self.tasks.withdraw(m)
                self.journal.node(m, _EP.NODE_PHASE_ABORTED)

    # -- executions --------------------------------------------------------------------
    def fail_execution(self, run: Run, err: errors_pb2.ExecutionError) -> None:
        """End the execution FAILED."""
        if not run.terminal:
            self.journal.execution(run, _EP.EXECUTION_PHASE_FAILED, error=err)

    def terminate(self, run: Run, reason: str) -> None:
        """Abort the execution and everything running in it."""
        if run.terminal:
            return
        if run.root is not None:
            run.root.done = True
            self.abort_frame(run.root)
        err = errors_pb2.ExecutionError(
            code="Terminated",
            message=reason or "terminated by request",
            kind=errors_pb2.ExecutionError.KIND_USER,
        )
        self.journal.execution(run, _EP.EXECUTION_PHASE_ABORTED, error=err)

    def crash(self, run: Run, exc: BaseException) -> None:
        """Handling the execution raised: fail it with the message and stop touching it; the
        other executions go on."""
        log.error("execution %s failed inside the engine", run.key, exc_info=exc)
        self.journal.discard(run)
        self.tasks.forget(run)
        if run.root is not None:
            run.root.done = True
        if not run.terminal:
            err = system_error("InternalError", f"the engine failed while running it: {exc!r}")
            err.recoverable = False
            self.journal.execution(run, _EP.EXECUTION_PHASE_FAILED, error=err)
