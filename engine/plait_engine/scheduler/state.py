"""The scheduler's in-memory state: runs, frames (running graphs) and nodes.

A `Run` is an execution this replica drives. Its graphs are `Frame`s: the root workflow, a
subworkflow, a dynamic sub-graph, the case a branch took, or the instances of an array node.
A `NodeExec` is one node of a frame. Kind-specific state (an array's queue of waiting
instances, say) is owned by that kind's handler and hangs off `Frame.kind_state`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol, TypeVar

from plaitidl.core.v1 import (
    dynamic_job_pb2,
    identifier_pb2,
    literals_pb2,
    tasks_pb2,
    workflow_pb2,
)

from plait_engine import ids
from plait_engine.store import DynamicSpecRecord, ExecutionRecord, NodeRecord, zero_counts

_T = TypeVar("_T")


class Templates:
    """The templates a graph may reference, by key (from a compiled closure)."""

    def __init__(self, closure: dynamic_job_pb2.DynamicJobSpec) -> None:
        self.tasks = {ids.id_key(t.id): t for t in closure.tasks}
        self.workflows = {ids.id_key(w.id): w for w in closure.subworkflows}
        self.launch_plans = {ids.id_key(lp.id): lp for lp in closure.launch_plans}

    def task(self, id: identifier_pb2.Identifier) -> tasks_pb2.TaskTemplate | None:
        """A task by identifier."""
        found = _find_entry(self.tasks, id)
        return found[1] if found is not None else None

    def task_entry(
        self, id: identifier_pb2.Identifier
    ) -> tuple[str, tasks_pb2.TaskTemplate] | None:
        """A task by identifier, with its key (one string shared by every node running it)."""
        return _find_entry(self.tasks, id)

    def workflow(self, id: identifier_pb2.Identifier) -> workflow_pb2.WorkflowTemplate | None:
        """A workflow by identifier."""
        return _find(self.workflows, id)

    def launch_plan(self, id: identifier_pb2.Identifier) -> workflow_pb2.LaunchPlan | None:
        """A launch plan by identifier."""
        return _find(self.launch_plans, id)

    def merged(self, closure: dynamic_job_pb2.DynamicJobSpec) -> Templates:
        """These templates with a spec's closure on top (a dynamic sub-graph's view)."""
        out = Templates(closure)
        for mine, theirs in (
            (self.tasks, out.tasks),
            (self.workflows, out.workflows),
            (self.launch_plans, out.launch_plans),
        ):
            for k, v in mine.items():
                theirs.setdefault(k, v)  # type: ignore[arg-type]
        return out


def _find(by_key: dict[str, _T], id: identifier_pb2.Identifier) -> _T | None:
    found = _find_entry(by_key, id)
    return found[1] if found is not None else None


def _find_entry(by_key: dict[str, _T], id: identifier_pb2.Identifier) -> tuple[str, _T] | None:
    key = ids.id_key(id)
    found = by_key.get(key)
    if found is not None:
        return key, found
    if id.version:
        return None
    # The compiler pins every reference to the version it resolved; only closures stored
    # before it did so still hold references without one (their closure has one match).
    prefix = ids.name_prefix(id)
    matches = [(k, v) for k, v in by_key.items() if k.startswith(prefix)]
    return matches[-1] if matches else None


def display_name(node: workflow_pb2.Node) -> str:
    """What users call a node: its metadata name, else the short name of what it runs."""
    if node.metadata.name:
        return node.metadata.name
    which = node.WhichOneof("target")
    ref: identifier_pb2.Identifier | None = None
    if which == "task_node":
        ref = node.task_node.task_id
    elif which == "array_node":
        return display_name(node.array_node.node)
    elif which == "workflow_node":
        wn = node.workflow_node
        ref = wn.launch_plan_id if wn.HasField("launch_plan_id") else wn.sub_workflow_id
    return ref.name.rsplit(".", 1)[-1] if ref is not None else ""


class FrameHooks(Protocol):
    """A frame whose progress its kind's handler drives (array instances)."""

    def node_ended(self, frame: Frame, n: NodeExec) -> None:
        """A node of the frame succeeded or failed within the frame's tolerance."""

    def outputs(self, frame: Frame) -> literals_pb2.LiteralMap:
        """The frame's outputs once every node ended."""


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
        "out_bytes",
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
        # Most nodes of a wide graph have none: they share the empty tuple until one comes.
        self.downstream: list[NodeExec] | tuple[()] = ()
        self.pending = 0  # upstream nodes not yet succeeded
        self.phase = 0
        self.attempt = 0
        self.user_failures = 0
        self.system_failures = 0
        self.inputs: literals_pb2.LiteralMap | None = None
        self.preset_inputs: literals_pb2.LiteralMap | None = None
        self.outputs: literals_pb2.LiteralMap | None = None
        # The outputs of a node that succeeded, serialized (see `compact`).
        self.out_bytes: bytes | None = None
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
        self.persisted = False  # whether the store has this node's record (with its inputs)
        self.started_at = 0.0  # when the last attempt started on its worker (0: unknown)

    @property
    def run(self) -> Run:
        """The run the node belongs to."""
        return self.frame.run

    def output_map(self) -> literals_pb2.LiteralMap | None:
        """The node's outputs (parsed again when `compact` kept them serialized)."""
        if self.outputs is not None:
            return self.outputs
        if self.out_bytes is not None:
            return literals_pb2.LiteralMap.FromString(self.out_bytes)
        return None

    def compact(self) -> None:
        """The node succeeded: keep its outputs serialized and let its inputs go. A message
        held in memory costs a kilobyte or more however small its value, and a spec of a
        million nodes keeps every node until its graph ends."""
        if self.outputs is not None:
            if self.out_bytes is None:
                self.out_bytes = self.outputs.SerializeToString()
            self.outputs = None
        self.inputs = None
        self.preset_inputs = None

    @property
    def live(self) -> bool:
        """Whether the node's run and frame still go on."""
        run = self.frame.run
        return not self.frame.done and not run.terminal and not run.detached


class Frame:
    """One running instance of a graph.

    Attributes:
        run: The run.
        owner: The node that started the frame (None for the root workflow).
        prefix: Path prefix of the frame's nodes ("" at the root).
        inputs: Inputs of the graph (what ``start-node`` bindings read).
        templates: The templates the graph may reference.
        depth: Dynamic nesting depth.
        outer: For a branch case, the enclosing frame (it reads unknown node ids from there).
        nodes: The frame's nodes by local id.
        outputs: The graph's output bindings.
        remaining: Nodes not yet finished.
        done: Whether the frame finished (succeeded, failed or was aborted).
        tolerance: How many nodes may end without success before the frame fails (array nodes
            with a success ratio, dynamic specs with `min_successes`).
        unsuccessful: Nodes that ended without success so far.
        kind_state: State owned by the handler of the node kind that started the frame.
    """

    __slots__ = (
        "depth",
        "done",
        "inputs",
        "kind_state",
        "nodes",
        "outer",
        "outputs",
        "owner",
        "prefix",
        "remaining",
        "run",
        "templates",
        "tolerance",
        "unsuccessful",
    )

    def __init__(
        self,
        run: Run,
        owner: NodeExec | None,
        inputs: literals_pb2.LiteralMap,
        templates: Templates,
        depth: int,
        outer: Frame | None = None,
    ) -> None:
        self.run = run
        self.owner = owner
        self.prefix = owner.path if owner is not None else ""
        self.inputs = inputs
        self.templates = templates
        self.depth = depth
        self.outer = outer
        self.nodes: dict[str, NodeExec] = {}
        self.outputs: Sequence[literals_pb2.Binding] = ()
        self.remaining = 0
        self.done = False
        self.tolerance = 0
        self.unsuccessful = 0
        self.kind_state: FrameHooks | None = None

    def path(self, local_id: str) -> str:
        """The execution-wide path of a node of this frame."""
        return f"{self.prefix}/{local_id}" if self.prefix else local_id


class Run:
    """An execution this replica drives.

    Attributes:
        record: The execution's record (phase, epoch, counts as of the last commit).
        recovered: Node records loaded at adoption, consumed as the graph is walked again.
        specs: Stored dynamic specs by node path (recovery).
        root: The root frame, once started.
        counts: Live node counts.
        finished: Set once the execution's terminal phase is committed.
        dirty: Whether the current pass changed it.
        phase: The execution's phase in this replica's view (committed or about to be).
        detached: Whether this replica stopped driving it (ownership lost).
    """

    def __init__(self, record: ExecutionRecord) -> None:
        self.record = record
        self.key = record.key
        self.recovered: dict[str, NodeRecord] = {}
        self.specs: dict[str, DynamicSpecRecord] = {}
        self.root: Frame | None = None
        self.counts = zero_counts()  # walking the graph again counts every node
        self.finished = asyncio.Event()
        self.dirty = False
        self.phase = record.phase
        self.detached = False
        self.load_failures = 0

    @property
    def blob_key(self) -> tuple[str, str, str, str]:
        """The blob key parts everything of this execution is stored under."""
        r = self.record
        return ("executions", r.project, r.domain, r.name)

    @property
    def eid(self) -> int:
        """The store's id of the execution."""
        return self.record.eid

    @property
    def terminal(self) -> bool:
        """Whether the execution reached a terminal phase in this replica's view."""
        return self.phase in ids.TERMINAL_EXECUTION_PHASES
