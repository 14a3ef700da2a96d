"""The records of the store contract, independent of any backend's columns.

A scheduler pass produces one `WriteBatch`: per execution an `ExecutionWrites` (its new node
rows, node transitions, events, compiled specs and execution-level changes, fenced by the
writer's ownership epoch) plus engine-wide writes (cache entries and reservations).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from plaitidl.core.v1 import events_pb2

from plait_engine import ids


class TemplateKind(enum.IntEnum):
    """Kinds of registered templates; values equal `ResourceType`."""

    TASK = 1
    WORKFLOW = 2
    LAUNCH_PLAN = 3


def zero_counts() -> dict[str, int]:
    """Node counts of an execution with no nodes yet."""
    return dict.fromkeys(ids.COUNT_NAMES, 0)


@dataclass(slots=True)
class ExecutionRecord:
    """One execution as stored, without its (possibly large) payloads.

    Attributes:
        eid: The store's id of the execution (assigned on creation).
        project: Project of the execution id.
        domain: Domain of the execution id.
        name: Name of the execution id, unique in project and domain.
        workflow_key: ``project/domain/name/version`` of the workflow it runs.
        launch_plan_key: The launch plan's key when started from one, else "".
        phase: An `ExecutionPhase` value.
        error: A serialized `ExecutionError`, empty unless FAILED or ABORTED.
        created_at: Unix time of creation.
        updated_at: Unix time of the last change.
        request_id: The creator's idempotency key ("" when none).
        labels: Labels given at creation.
        last_seq: Sequence number of the last event.
        counts: Node counts by `ids.COUNT_NAMES`, as of the last commit.
        owner: The replica that drives it ("" when none).
        epoch: Fencing epoch: incremented by every claim; writes carry the epoch they own.
        lease_expires_at: Unix time after which another replica may adopt it.
        terminate_reason: A termination asked for but not yet applied ("" when none).
    """

    eid: int
    project: str
    domain: str
    name: str
    workflow_key: str
    launch_plan_key: str = ""
    phase: int = 0
    error: bytes = b""
    created_at: float = 0.0
    updated_at: float = 0.0
    request_id: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    last_seq: int = 0
    counts: dict[str, int] = field(default_factory=zero_counts)
    owner: str = ""
    epoch: int = 0
    lease_expires_at: float = 0.0
    terminate_reason: str = ""

    @property
    def key(self) -> str:
        """``project/domain/name``."""
        return f"{self.project}/{self.domain}/{self.name}"

    @property
    def terminal(self) -> bool:
        """Whether the execution has ended."""
        return self.phase in ids.TERMINAL_EXECUTION_PHASES


@dataclass(slots=True)
class ExecutionPayload:
    """The large parts of an execution, read only when needed.

    Each is a serialized proto or a payload pointer (see `plait_engine.blob.Payloads`).

    Attributes:
        closure: A compiled `DynamicJobSpec`: the root graph and every template it reaches.
        workflow: The root `WorkflowTemplate`.
        inputs: The resolved input `LiteralMap`.
        outputs: The output `LiteralMap`, empty until SUCCEEDED.
    """

    closure: bytes
    workflow: bytes
    inputs: bytes
    outputs: bytes = b""


@dataclass(slots=True)
class NodeRecord:
    """The latest state of one node of one execution.

    Attributes:
        eid: The execution.
        node_id: The node's path (``n1/n0-dn3``), unique in the execution.
        phase: A `NodePhase` value.
        attempt: Attempts dispatched so far.
        user_failures: Attempts failed by the task's code.
        system_failures: Attempts failed by the platform.
        inputs: Serialized input `LiteralMap` (or a payload pointer).
        outputs: Serialized output `LiteralMap` (or a payload pointer).
        error: Serialized `ExecutionError` of the last failure.
        cache_status: A `CacheStatus` value.
        parent_id: The path of the node containing it ("" at the top level).
        task_key: The key of the task it runs ("" for other nodes).
        is_dynamic: Whether it yielded a dynamic spec.
        detail: Kind-specific state, e.g. the branch case taken.
        created_at: Unix time it was first recorded.
        updated_at: Unix time of its last transition.
        name: Display name (the task's or workflow's short name, or the conditional's).
    """

    eid: int
    node_id: str
    phase: int
    attempt: int = 0
    user_failures: int = 0
    system_failures: int = 0
    inputs: bytes = b""
    outputs: bytes = b""
    error: bytes = b""
    cache_status: int = 0
    parent_id: str = ""
    task_key: str = ""
    is_dynamic: bool = False
    detail: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    name: str = ""


@dataclass(slots=True)
class NodeUpdate:
    """A transition of a node whose record exists: everything but inputs and identity."""

    node_id: str
    phase: int
    attempt: int
    user_failures: int
    system_failures: int
    outputs: bytes
    error: bytes
    cache_status: int
    is_dynamic: bool
    detail: str
    updated_at: float


@dataclass(slots=True)
class DynamicSpecRecord:
    """The compiled spec a generator node yielded (serialized closure or a pointer)."""

    node_id: str
    closure: bytes
    depth: int


@dataclass(slots=True)
class CacheEntry:
    """Outputs stored under a cache key."""

    key: str
    outputs: bytes
    eid: int
    node_id: str
    created_at: float


@dataclass(slots=True)
class LogEntry:
    """Captured output of one attempt (one or more whole lines).

    Attributes:
        eid: The execution.
        node_id: The node.
        attempt: The attempt, 1-based.
        stream: A `LogStream` value (stdout, stderr, logger, engine).
        time: Unix time it was written.
        text: The lines, newline-separated, without a trailing newline.
    """

    eid: int
    node_id: str
    attempt: int
    stream: int
    time: float
    text: str


@dataclass(slots=True)
class QueuedDispatch:
    """An attempt waiting in the shared dispatch queue for a replica with a free worker slot.

    Attributes:
        assignment_id: The attempt's assignment id (``eid:node:attempt``).
        eid: The execution.
        queue: The task's worker queue.
        assignment: A serialized `Assignment` (template included) for the worker.
        created_at: Unix time it was queued.
    """

    assignment_id: str
    eid: int
    queue: str
    assignment: bytes
    created_at: float


@dataclass(slots=True)
class QueuedResult:
    """A worker's answer on its way from the replica it reached to the execution's owner.

    Attributes:
        assignment_id: The attempt answered.
        eid: The execution.
        result: A serialized `TaskResult`.
        worker_id: The worker that answered.
        created_at: Unix time it was posted.
    """

    assignment_id: str
    eid: int
    result: bytes
    worker_id: str
    created_at: float


@dataclass(slots=True)
class ScheduleStateRecord:
    """Where a launch plan's schedule stands.

    Attributes:
        key: ``project/domain/name/`` of the launch plan (every version).
        paused: Whether ticks are skipped.
        last_tick: Unix time of the last tick handled (run or skipped).
        last_execution: ``project/domain/name`` of the execution of the last tick run.
    """

    key: str
    paused: bool = False
    last_tick: float = 0.0
    last_execution: str = ""


@dataclass(slots=True)
class Reservation:
    """A request to hold the serialization reservation of a cache key for `holder`."""

    key: str
    holder: str
    expires_at: float


@dataclass(slots=True)
class ExecutionWrites:
    """Everything one pass changes of one execution, fenced by `epoch`.

    Attributes:
        eid: The execution.
        epoch: The writer's ownership epoch; the store refuses the writes when it is stale.
        phase: The new phase, or None when unchanged.
        outputs: The outputs (serialized or a pointer), or None when unchanged.
        error: The error (serialized), or None when unchanged.
        counts: Node counts after the pass, or None when unchanged.
        updated_at: Unix time of the pass.
        nodes: New node records.
        node_updates: Transitions of existing records (applied after `nodes`).
        events: The pass's events, in order, each a serialized `ExecutionEvent` without the
            fields in `event_shared` and without a sequence: the store numbers them (and may
            store them together, see `plait_engine.store.event_rows`).
        event_shared: The fields every event of `events` carries (its `execution_id` and
            `occurred_at`), serialized; empty when each event is whole.
        dynamic_specs: Specs yielded in the pass.
        token: Identifies the pass: writes whose token the execution already carries were
            applied before (a commit that succeeded but whose caller saw an error), so applying
            the same batch again changes nothing.
    """

    eid: int
    epoch: int
    token: str = ""
    phase: int | None = None
    outputs: bytes | None = None
    error: bytes | None = None
    counts: dict[str, int] | None = None
    updated_at: float = 0.0
    nodes: list[NodeRecord] = field(default_factory=list)
    node_updates: list[NodeUpdate] = field(default_factory=list)
    events: list[bytes] = field(default_factory=list)
    event_shared: bytes = b""
    dynamic_specs: list[DynamicSpecRecord] = field(default_factory=list)

    def size(self) -> int:
        """Rows these writes touch (a measure of their commit time)."""
        return (
            1
            + len(self.nodes)
            + len(self.node_updates)
            + len(self.events)
            + len(self.dynamic_specs)
        )


@dataclass
class WriteBatch:
    """Everything one scheduler pass changes; `Store.apply` commits it atomically.

    Attributes:
        executions: Per-execution writes, by eid.
        cache_entries: New cache entries (an existing key keeps its first entry).
        reservations: Cache serialization reservations to take (see `ApplyResult`).
        released: Cache keys whose reservation is released.
    """

    executions: dict[int, ExecutionWrites] = field(default_factory=dict)
    cache_entries: list[CacheEntry] = field(default_factory=list)
    reservations: list[Reservation] = field(default_factory=list)
    released: list[str] = field(default_factory=list)

    def of(self, eid: int, epoch: int, token: str = "") -> ExecutionWrites:
        """The writes of one execution, created on first use."""
        w = self.executions.get(eid)
        if w is None:
            w = self.executions[eid] = ExecutionWrites(eid, epoch, token)
        return w

    def size(self) -> int:
        """Rows the batch writes (a measure of its commit time)."""
        return (
            sum(w.size() for w in self.executions.values())
            + len(self.cache_entries)
            + len(self.reservations)
            + len(self.released)
        )

    def __bool__(self) -> bool:
        return bool(self.executions or self.cache_entries or self.reservations or self.released)


@dataclass
class ApplyResult:
    """What a commit decided.

    Attributes:
        holders: For each requested reservation, the holder after the commit (the requester
            when it was granted).
        last_seq: The last event sequence of each execution written.
    """

    holders: dict[str, str] = field(default_factory=dict)
    last_seq: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ExecutionFilter:
    """Which executions a listing returns.

    Attributes:
        project: Only this project.
        domain: Only this domain.
        phases: Only these phases (all when empty).
        workflow: Only executions of workflows whose key starts with this
            (``project/domain/name/`` for every version).
        labels: Only executions carrying all these labels.
        finished_before: Only finished executions last updated before this Unix time (0: any).
        request_id: Only the execution created with this request id.
    """

    project: str = ""
    domain: str = ""
    phases: tuple[int, ...] = ()
    workflow: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    finished_before: float = 0.0
    request_id: str = ""


def event_node(event: bytes) -> str | None:
    """The node a serialized `ExecutionEvent` is about, or None for an execution's own."""
    parsed = events_pb2.ExecutionEvent.FromString(event)
    return parsed.node.node_id if parsed.HasField("node") else None
