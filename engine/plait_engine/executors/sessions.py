"""The state behind `WorkerSessions`: connected sessions, what they serve, their messages.

A session is one connected worker stream; it serves queues and, when its hello says so, only
some task versions and task types (`TaskSelector`).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from dataclasses import field as dataclass_field

import grpc
from plaitidl.core.v1 import errors_pb2, literals_pb2, tasks_pb2
from plaitidl.service.v1 import worker_service_pb2 as ws

from plait_engine import ids
from plait_engine.blob.data import offloaded_problem
from plait_engine.executors import Dispatch, Outcome, system_error
from plait_engine.wire import field, timestamp_ns, uint_field

# Bytes an assignment costs in a message beyond its own (field tag and length).
_ITEM_OVERHEAD = 16
# Ids of assignments recently withdrawn from a session (cancelled, taken back), so that their
# late results are told apart from results for assignments the session never held.
_WITHDRAWN_KEPT = 4096
# Task versions and executions whose serialized parts `AssignmentEncoder` keeps.
_PARTS_KEPT = 4096


@dataclass
class Close:
    """Outbox sentinel: end the stream, with a status when `code` is set."""

    code: grpc.StatusCode | None = None
    message: str = ""


@dataclass
class Outgoing:
    """One queued stream message and the dispatches it carries (to requeue them if unsent).

    Attributes:
        payload: The `SessionResponse`, or its bytes (assignments are queued encoded).
        dispatches: The dispatches it carries.
    """

    payload: ws.SessionResponse | bytes
    dispatches: list[Dispatch] = dataclass_field(default_factory=list)

    @property
    def message(self) -> ws.SessionResponse:
        """The message (parsed from the payload when that is bytes)."""
        p = self.payload
        return p if isinstance(p, ws.SessionResponse) else ws.SessionResponse.FromString(p)


@dataclass(frozen=True)
class TaskSelector:
    """Which tasks a session runs, from its hello (empty sets: no restriction).

    Attributes:
        keys: ``name@version`` (any project) or ``project/domain/name/version`` served.
        names: Task names served in any version (identifiers without a version).
        types: Task types served.
    """

    keys: frozenset[str] = frozenset()
    names: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()

    @classmethod
    def from_hello(cls, hello: ws.Hello) -> TaskSelector:
        """What a hello declares."""
        keys: set[str] = set()
        names: set[str] = set()
        for t in hello.tasks:
            if not t.version:
                names.add(t.name)
            elif t.project or t.domain:
                keys.add(ids.id_key(t))
            else:
                keys.add(f"{t.name}@{t.version}")
        return cls(frozenset(keys), frozenset(names), frozenset(hello.task_types))

    @property
    def versions_declared(self) -> bool:
        """Whether the session runs only some task versions."""
        return bool(self.keys or self.names)

    def serves(self, task: tasks_pb2.TaskTemplate) -> bool:
        """Whether the session runs `task` (its version and its type)."""
        if self.types and task.type not in self.types:
            return False
        if not self.versions_declared:
            return True
        tid = task.id
        return (
            tid.name in self.names
            or f"{tid.name}@{tid.version}" in self.keys
            or ids.id_key(tid) in self.keys
        )

    def versions_of(self, name: str) -> list[str]:
        """The versions of task `name` the session declares (names hold no ``@`` or ``/``)."""
        out = ["any"] if name in self.names else []
        for key in self.keys:
            if "/" in key:
                _, _, key_name, version = key.split("/", 3)
            else:
                key_name, _, version = key.rpartition("@")
            if key_name == name:
                out.append(version)
        return out


@dataclass(eq=False)
class WorkerSession:
    """One connected worker stream.

    Attributes:
        id: Session id chosen by the engine.
        worker_id: The worker's own id from its hello.
        queues: Queues it serves.
        slots: Assignments it runs at once.
        free: Slots without an assignment.
        language: The worker's language.
        version: The worker's SDK or program version.
        selector: The task versions and types it runs.
        templates_sent: Template keys whose full template this session already received.
        outbox: Messages waiting to be written to the stream (read by the servicer).
        last_seen: `time.monotonic()` of the last message from the worker.
        leases: Assignments leased to this session, by assignment id.
        sent_at: When the message carrying a leased assignment was written: `time.monotonic()`
            and the number of heartbeats received by then.
        heartbeats: Heartbeats received.
        withdrawn: Assignments recently cancelled or taken back (their late results are normal).
        closed: Whether the session has ended.
        completed: Results accepted from this session.
        projects: The projects whose assignments it may receive (its token's); None for all.
    """

    id: str
    worker_id: str
    queues: tuple[str, ...]
    slots: int
    free: int
    language: str
    version: str
    selector: TaskSelector = dataclass_field(default_factory=TaskSelector)
    templates_sent: set[str] = dataclass_field(default_factory=set)
    outbox: asyncio.Queue[Outgoing | Close] = dataclass_field(default_factory=asyncio.Queue)
    last_seen: float = dataclass_field(default_factory=time.monotonic)
    leases: dict[str, Dispatch] = dataclass_field(default_factory=dict)
    sent_at: dict[str, tuple[float, int]] = dataclass_field(default_factory=dict)
    heartbeats: int = 0
    withdrawn: OrderedDict[str, None] = dataclass_field(default_factory=OrderedDict)
    closed: bool = False
    completed: int = 0
    last_given: int = 0  # pump sequence of the last assignment: spreads ties round robin
    projects: frozenset[str] | None = None

    def serves_project(self, project: str) -> bool:
        """Whether the session may receive assignments of `project`'s executions."""
        return self.projects is None or project in self.projects

    def release(self, assignment_id: str, *, withdrawn: bool = False) -> Dispatch | None:
        """Forget a lease and free its slot; returns its dispatch (None when not leased)."""
        d = self.leases.pop(assignment_id, None)
        if d is None:
            return None
        self.sent_at.pop(assignment_id, None)
        self.free += 1
        if withdrawn:
            self.withdrawn[assignment_id] = None
            if len(self.withdrawn) > _WITHDRAWN_KEPT:
                self.withdrawn.popitem(last=False)
        return d


@dataclass
class Counters:
    """Running totals of `WorkerSessions` (each explained in `WorkerStats`)."""

    ignored_results: int = 0
    unknown_results: int = 0
    ignored_logs: int = 0
    lost: int = 0
    taken_back: int = 0
    too_large: int = 0
    assignment_messages: int = 0
    assignments_sent: int = 0
    result_messages: int = 0
    results_received: int = 0
    completed_by_worker: dict[str, int] = dataclass_field(default_factory=dict)


@dataclass(frozen=True)
class WorkerStats:
    """A snapshot of the sessions, for tests, logs and benchmarks.

    Attributes:
        sessions: Connected sessions.
        total_slots: Slots of all sessions.
        free_slots: Free slots of all sessions.
        leased: Assignments currently leased.
        pending: Dispatches waiting for a slot, per queue.
        ignored_results: Results dropped because their assignment was not leased to the sender.
        lost: Assignments taken back from ended sessions.
        assignment_messages: `AssignmentBatch` stream messages sent so far.
        assignments_sent: Assignments sent so far.
        result_messages: `ResultBatch` stream messages received so far.
        results_received: Results those messages carried.
        completed_by_worker: Results accepted, per worker id (summed over its sessions).
        workers: Worker ids of the connected sessions, sorted.
        unknown_results: Of `ignored_results`, those for assignments the sending session was
            never given (or not recently): a worker bug, logged as a warning.
        taken_back: Assignments taken back because heartbeats did not list them.
        too_large: Assignments refused because they exceed the message limit alone.
        offloaded: Dispatches whose large inputs were stored and sent as references.
        waiting: Pending dispatches that no connected session serves.
        ignored_logs: Log chunks dropped because their assignment was not leased to the sender.
    """

    sessions: int
    total_slots: int
    free_slots: int
    leased: int
    pending: dict[str, int]
    ignored_results: int
    lost: int
    assignment_messages: int
    assignments_sent: int
    completed_by_worker: dict[str, int]
    workers: tuple[str, ...] = ()
    unknown_results: int = 0
    taken_back: int = 0
    too_large: int = 0
    offloaded: int = 0
    waiting: int = 0
    ignored_logs: int = 0
    result_messages: int = 0
    results_received: int = 0


def validate_hello(hello: ws.Hello) -> str | None:
    """What is wrong with a hello, or None when it is acceptable."""
    if not hello.queues:
        return "hello.queues must name at least one queue"
    if any(not q for q in hello.queues):
        return "hello.queues must not contain an empty queue name"
    if hello.slots < 1:
        return "hello.slots must be at least 1"
    for i, t in enumerate(hello.tasks):
        if not t.name:
            return f"hello.tasks[{i}].name must be set"
    if any(not t for t in hello.task_types):
        return "hello.task_types must not contain an empty type"
    return None


def outcome_of(r: ws.TaskResult) -> Outcome:
    """The outcome a worker's result carries (a system error when it carries none)."""
    which = r.WhichOneof("result")
    if which == "outputs":
        return r.outputs
    if which == "dynamic_job_spec":
        return r.dynamic_job_spec
    if which == "error":
        err = r.error
        if not err.kind:
            err.kind = errors_pb2.ExecutionError.KIND_USER
        return err
    # A worker bug, not the task's: retry on the system budget.
    return system_error("EmptyResult", f"worker sent a result without outputs, spec or error for "
                        f"assignment {r.assignment_id}")  # fmt: skip


def offloaded_uris(lm: literals_pb2.LiteralMap) -> frozenset[str]:
    """The URIs of the offloaded literals of a map (what an attempt may hand back as is)."""
    return frozenset(lit.offloaded.uri for lit in lm.literals.values() if lit.HasField("offloaded"))


def execution_parts(d: Dispatch) -> tuple[str, str, str]:
    """``(project, domain, name)`` of a dispatch's execution."""
    return execution_parts_of(d.execution)


def execution_parts_of(execution: str) -> tuple[str, str, str]:
    """``(project, domain, name)`` of an execution's ``project/domain/name``."""
    project, _, rest = execution.partition("/")
    domain, _, name = rest.partition("/")
    return project, domain, name


class AssignmentEncoder:
    """Assignments in wire form: spliced from bytes, with what repeats serialized once (a
    task version's identifier, an execution's identifier).

    Building an `Assignment` through the protobuf API, copying it into a batch and measuring
    it cost more than the rest of handing it out; the bytes parse to the message the API would
    build (tests/unit/test_worker_assignments.py compares them).
    """

    def __init__(self) -> None:
        # Kept while the engine runs (a few per task version and execution), dropped wholesale
        # when they pile up.
        self._task_ids: dict[str, bytes] = {}
        self._executions: dict[str, bytes] = {}

    def encode(self, s: WorkerSession, d: Dispatch) -> bytes:
        """The `Assignment` of `d` for session `s`: the template in full the first time `s`
        sees its key (noted in ``s.templates_sent``), afterwards by key only."""
        parts = [
            _text(b"\x0a", d.assignment_id),
            uint_field(b"\x10", d.attempt),
            _text(b"\x1a", d.task_key),
        ]
        if d.task_key not in s.templates_sent:
            s.templates_sent.add(d.task_key)
            parts.append(field(b"\x22", d.task.SerializeToString()))
        parts.append(field(b"\x2a", d.inputs.SerializeToString()))
        if d.deadline is not None:
            parts.append(field(b"\x32", timestamp_ns(int(d.deadline * 1e9))))
        # TaskExecutionIdentifier: task_id (1), node_execution_id (2), attempt (3).
        node = _text(b"\x0a", d.node_id) + self._execution(d.execution)
        ident = self._task_id(d) + field(b"\x12", node) + uint_field(b"\x18", d.attempt)
        parts.append(field(b"\x3a", ident))
        return b"".join(parts)

    def _task_id(self, d: Dispatch) -> bytes:
        """`TaskExecutionIdentifier.task_id` (field 1) of the dispatch's task."""
        hit = self._task_ids.get(d.task_key)
        if hit is None:
            if len(self._task_ids) > _PARTS_KEPT:
                self._task_ids.clear()
            hit = self._task_ids[d.task_key] = field(b"\x0a", d.task.id.SerializeToString())
        return hit

    def _execution(self, execution: str) -> bytes:
        """`NodeExecutionIdentifier.execution_id` (field 2) of ``project/domain/name``."""
        hit = self._executions.get(execution)
        if hit is None:
            if len(self._executions) > _PARTS_KEPT:
                self._executions.clear()
            project, domain, name = execution_parts_of(execution)
            ident = _text(b"\x0a", project) + _text(b"\x12", domain) + _text(b"\x1a", name)
            hit = self._executions[execution] = field(b"\x12", ident)
        return hit


def _text(key: bytes, value: str) -> bytes:
    """A string field, omitted when empty (as proto3 writes it)."""
    return field(key, value.encode()) if value else b""


def checked_outcome(d: Dispatch, outcome: Outcome) -> Outcome:
    """The outcome, or an error when it references data the attempt may not hand back: only
    this execution's payloads and the attempt's own offloaded inputs."""
    if not isinstance(outcome, literals_pb2.LiteralMap):
        return outcome
    allowed: frozenset[str] | None = None  # found once an output needs them (rarely)
    for name, lit in outcome.literals.items():
        if not lit.HasField("offloaded"):
            continue
        if allowed is None:
            allowed = offloaded_uris(d.inputs)
        problem = offloaded_problem(lit.offloaded, execution_parts(d), allowed)
        if problem:
            return errors_pb2.ExecutionError(
                code="BadOffloadedOutput",
                message=f"node {d.node_id!r}: output {name!r} is an offloaded value the "
                f"engine did not issue for this execution: {problem}",
                kind=errors_pb2.ExecutionError.KIND_USER,
                recoverable=False,
            )
    return outcome


def pack(
    s: WorkerSession, ds: list[Dispatch], budget: int, max_count: int, encoder: AssignmentEncoder
) -> tuple[list[Outgoing], list[tuple[Dispatch, int]]]:
    """The messages carrying `ds` to `s`, each at most `budget` bytes and `max_count`
    assignments, and the dispatches that cannot fit even alone (with their size)."""
    messages: list[Outgoing] = []
    refused: list[tuple[Dispatch, int]] = []
    chunk: list[bytes] = []
    carried: list[Dispatch] = []
    used = 0

    def flush() -> None:
        # SessionResponse.assignments (2) holding AssignmentBatch.assignments (1) each.
        messages.append(Outgoing(field(b"\x12", b"".join(chunk)), carried))

    for d in ds:
        had_template = d.task_key in s.templates_sent
        a = encoder.encode(s, d)
        size = len(a) + _ITEM_OVERHEAD
        if size > budget:
            if not had_template:
                s.templates_sent.discard(d.task_key)  # the next one carries it
            refused.append((d, size))
            continue
        if chunk and (used + size > budget or len(chunk) >= max_count):
            flush()
            chunk, carried, used = [], [], 0
        chunk.append(field(b"\x0a", a))
        carried.append(d)
        used += size
    if chunk:
        flush()
    return messages, refused


def unsent(s: WorkerSession) -> list[Dispatch]:
    """Empty the outbox of an ended session: the leased dispatches that never left it."""
    out: list[Dispatch] = []
    while not s.outbox.empty():
        item = s.outbox.get_nowait()
        if isinstance(item, Outgoing):
            out.extend(d for d in item.dispatches if s.leases.get(d.assignment_id) is d)
    return out


def lost_error(s: WorkerSession, d: Dispatch, reason: str) -> errors_pb2.ExecutionError:
    """The error of an attempt whose session ended."""
    message = (
        f"worker {s.worker_id} lost while running attempt {d.attempt} of node {d.node_id!r} "
        f"({reason})"
    )
    return system_error("WorkerLost", message)


def unacknowledged_error(s: WorkerSession, d: Dispatch, window: float) -> errors_pb2.ExecutionError:
    """The error of an attempt the worker's heartbeats did not list in time."""
    message = (
        f"the worker did not acknowledge the assignment: worker {s.worker_id} did not list "
        f"attempt {d.attempt} of node {d.node_id!r} as running within {window:g}s after it "
        "was sent"
    )
    return system_error("NotAcknowledged", message)


def too_large_error(
    d: Dispatch, size: int, budget: int, inline_limit: int
) -> errors_pb2.ExecutionError:
    """The error of an assignment that cannot fit in a message even alone."""
    sizes = sorted(
        ((lit.ByteSize(), name) for name, lit in d.inputs.literals.items()), reverse=True
    )
    biggest = ", ".join(f"{name} ({n} bytes)" for n, name in sizes[:3]) or "none"
    return errors_pb2.ExecutionError(
        code="AssignmentTooLarge",
        message=(
            f"the assignment of node {d.node_id!r} is {size} bytes, more than the {budget} bytes a "
            f"message may carry (the engine's max_message_bytes), so no worker can receive it; "
            f"largest inputs: {biggest}. Inputs above max_literal_bytes ({inline_limit}) travel "
            "as offloaded references: lower it, or raise max_message_bytes"
        ),
        kind=errors_pb2.ExecutionError.KIND_USER,
        recoverable=False,
        node_id=d.node_id,
    )


__all__ = [
    "Close",
    "Counters",
    "Outgoing",
    "TaskSelector",
    "WorkerSession",
    "WorkerStats",
    "AssignmentEncoder",
    "checked_outcome",
    "execution_parts",
    "execution_parts_of",
    "lost_error",
    "offloaded_uris",
    "outcome_of",
    "pack",
    "too_large_error",
    "unacknowledged_error",
    "unsent",
    "validate_hello",
]
