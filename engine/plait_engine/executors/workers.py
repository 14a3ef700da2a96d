"""Worker sessions: the executor that hands attempts to connected workers.

`WorkerSessions` is the executor for worker targets. It keeps the connected sessions, a FIFO of
pending dispatches per queue, and the leases of the assignments each session holds; it pushes
pending work into free slots and turns results, lost sessions and cancellations into the
`Result`s the scheduler expects. The gRPC adapter (`plait_engine.api.workers`) feeds each
stream into it.

Everything here runs on the engine's asyncio loop (the scheduler's loop), so no locks are
needed: `submit`, `cancel`, the servicer's reads and the reaper all interleave on one thread.

Leases are per session: a session is alive while it sends anything (heartbeats or results) at
least every `lease_duration`; when it dies, every assignment leased to it is reported to the
scheduler as a recoverable system error (``WorkerLost``), which retries it on the system
budget, possibly on another worker. A heartbeat that stops listing an assignment the engine
thinks is leased is not treated specially (the assignment stays leased until its result, its
session's end or its deadline): workers answer every assignment, and the scheduler's deadline
covers a worker that silently drops one.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
from plaitidl.core.v1 import errors_pb2, identifier_pb2
from plaitidl.service.v1 import worker_service_pb2 as ws

from plait_engine.executors import Dispatch, Outcome, Result, ResultSink, system_error

log = logging.getLogger("plait_engine.workers")

# Results of one incoming message are few; a session's one-message-per-pump rule keeps the
# assignment side cheap. This bound only protects against one huge pending FIFO being sent to a
# session with a huge slot count in a single multi-megabyte message.
MAX_ASSIGNMENTS_PER_MESSAGE = 2000


@dataclass
class Close:
    """Outbox sentinel: end the stream, with a status when `code` is set."""

    code: grpc.StatusCode | None = None
    message: str = ""


@dataclass
class _Outgoing:
    """One queued stream message and the dispatches it carries (to requeue them if unsent)."""

    message: ws.SessionResponse
    dispatches: list[Dispatch] = field(default_factory=list)


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
        templates_sent: Template keys whose full template this session already received.
        outbox: Messages waiting to be written to the stream (read by the servicer).
        last_seen: `time.monotonic()` of the last message from the worker.
        leases: Assignments leased to this session, by assignment id.
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
    templates_sent: set[str] = field(default_factory=set)
    outbox: asyncio.Queue[_Outgoing | Close] = field(default_factory=asyncio.Queue)
    last_seen: float = field(default_factory=time.monotonic)
    leases: dict[str, Dispatch] = field(default_factory=dict)
    closed: bool = False
    completed: int = 0
    last_given: int = 0  # pump sequence of the last assignment: spreads ties round robin
    projects: frozenset[str] | None = None

    def serves(self, d: Dispatch) -> bool:
        """Whether the session may receive a dispatch (beyond its queue)."""
        return self.projects is None or d.execution.partition("/")[0] in self.projects


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
        completed_by_worker: Results accepted, per worker id (summed over its sessions).
        workers: Worker ids of the connected sessions, sorted.
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


def validate_hello(hello: ws.Hello) -> str | None:
    """What is wrong with a hello, or None when it is acceptable."""
    if not hello.queues:
        return "hello.queues must name at least one queue"
    if any(not q for q in hello.queues):
        return "hello.queues must not contain an empty queue name"
    if hello.slots < 1:
        return "hello.slots must be at least 1"
    return None


def _outcome(r: ws.TaskResult) -> Outcome:
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


_Slot = tuple[int, int, int, WorkerSession]


def _pick(heap: list[_Slot], d: Dispatch) -> _Slot | None:
    """Pop the best free session that serves `d` (the others go back), or None."""
    skipped: list[_Slot] = []
    found: _Slot | None = None
    while heap:
        entry = heapq.heappop(heap)
        if entry[3].serves(d):
            found = entry
            break
        skipped.append(entry)
    for entry in skipped:
        heapq.heappush(heap, entry)
    return found


class WorkerSessions:
    """The executor that hands worker-target dispatches to connected worker sessions.

    Args:
        heartbeat_interval: How often workers are told to heartbeat (seconds).
        lease_duration: How long a session may stay silent before it is declared dead and its
            assignments are retried elsewhere (seconds).
    """

    def __init__(self, heartbeat_interval: float = 2.0, lease_duration: float = 10.0) -> None:
        if heartbeat_interval <= 0 or lease_duration <= heartbeat_interval:
            raise ValueError("need 0 < heartbeat_interval < lease_duration")
        self.heartbeat_interval = heartbeat_interval
        self.lease_duration = lease_duration
        self._sink: ResultSink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sessions: dict[str, WorkerSession] = {}
        self._by_queue: dict[str, list[WorkerSession]] = {}
        self._pending: dict[str, deque[Dispatch]] = {}
        # Lazy deletion: a queued dispatch is live only while it is the value here, so cancel
        # is O(1) and the FIFO is cleaned while it is drained.
        self._pending_live: dict[str, Dispatch] = {}
        self._holder: dict[str, WorkerSession] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._stopping = False
        self._seq = itertools.count(1)
        self.ignored_results = 0
        self.lost = 0
        self.assignment_messages = 0
        self.assignments_sent = 0
        self._completed_by_worker: dict[str, int] = {}

    # -- Executor protocol -------------------------------------------------------------------
    def start(self, sink: ResultSink, loop: asyncio.AbstractEventLoop) -> None:
        """Begin; results go to `sink` on `loop`'s thread (where everything here runs)."""
        self._sink = sink
        self._loop = loop
        self._stopping = False
        self._reaper = loop.create_task(self._reap())

    def submit(self, dispatches: Sequence[Dispatch]) -> None:
        """Queue attempts by their task's queue and push them into free slots at once."""
        for d in dispatches:
            queue = d.task.worker.queue or "default"
            self._pending.setdefault(queue, deque()).append(d)
            self._pending_live[d.assignment_id] = d
        self.pump()

    def cancel(self, assignment_ids: Sequence[str]) -> None:
        """Drop pending attempts; withdraw leased ones from their sessions (freeing the slots)."""
        by_session: dict[WorkerSession, list[str]] = {}
        for aid in assignment_ids:
            if self._pending_live.pop(aid, None) is not None:
                continue
            s = self._holder.pop(aid, None)
            if s is None:
                continue
            s.leases.pop(aid, None)
            s.free += 1
            by_session.setdefault(s, []).append(aid)
        for s, aids in by_session.items():
            s.outbox.put_nowait(
                _Outgoing(
                    ws.SessionResponse(
                        cancellations=ws.Cancellations(
                            assignment_ids=aids, reason="the engine no longer needs this attempt"
                        )
                    )
                )
            )
        if by_session:
            self.pump()

    async def stop(self) -> None:
        """End every session (workers reconnect to the next engine) and the reaper."""
        self._stopping = True
        if self._reaper is not None:
            self._reaper.cancel()
            try:
                await self._reaper
            except asyncio.CancelledError:
                pass
            self._reaper = None
        for s in list(self._sessions.values()):
            self.close_session(s, "engine is stopping", code=grpc.StatusCode.UNAVAILABLE)

    # -- sessions ------------------------------------------------------------------------
    def open_session(
        self, hello: ws.Hello, projects: frozenset[str] | None = None
    ) -> WorkerSession:
        """Register a validated hello's session; its outbox starts with the welcome.

        Args:
            hello: The worker's hello.
            projects: The projects whose assignments the session may receive (those of the
                worker's token); None for every project.

        Raises:
            RuntimeError: The executor is not started or is stopping.
        """
        if self._sink is None or self._stopping:
            raise RuntimeError("the engine is not accepting workers")
        s = WorkerSession(
            id=secrets.token_hex(8),
            worker_id=hello.worker_id or "anonymous",
            queues=tuple(dict.fromkeys(hello.queues)),
            slots=hello.slots,
            free=hello.slots,
            language=hello.language,
            version=hello.version,
            projects=projects,
        )
        welcome = ws.Welcome(session_id=s.id)
        welcome.heartbeat_interval.FromNanoseconds(int(self.heartbeat_interval * 1e9))
        welcome.lease_duration.FromNanoseconds(int(self.lease_duration * 1e9))
        s.outbox.put_nowait(_Outgoing(ws.SessionResponse(welcome=welcome)))
        self._sessions[s.id] = s
        for q in s.queues:
            self._by_queue.setdefault(q, []).append(s)
        log.info(
            "worker %s connected: session %s, queues %s, %d slots, %s %s",
            s.worker_id, s.id, ",".join(s.queues), s.slots, s.language, s.version,
        )  # fmt: skip
        self.pump()
        return s

    def handle(self, s: WorkerSession, request: ws.SessionRequest) -> None:
        """Apply one message from a session's worker.

        Raises:
            ValueError: A protocol violation (a second hello); the caller ends the session.
        """
        if s.closed:
            return
        s.last_seen = time.monotonic()
        which = request.WhichOneof("message")
        if which == "results":
            self._on_results(s, request.results.results)
        elif which == "hello":
            raise ValueError("hello may only be the first message of a session")
        # A heartbeat only proves liveness (done above): leases live as long as the session.

    def _on_results(self, s: WorkerSession, results: Sequence[ws.TaskResult]) -> None:
        accepted: list[Result] = []
        violation = ""
        for r in results:
            d = s.leases.get(r.assignment_id)
            if d is not None and d.attempt != r.attempt and self._holder.get(r.assignment_id) is s:
                # The worker holds this assignment but echoes another attempt: a worker bug.
                # Ignoring it would leave the node waiting forever, so end the session loudly
                # (its leases are retried elsewhere).
                violation = (
                    f"result for assignment {r.assignment_id} carries attempt {r.attempt}, but "
                    f"the assignment is attempt {d.attempt}: echo Assignment.attempt"
                )
                break
            if d is None or d.attempt != r.attempt or self._holder.get(r.assignment_id) is not s:
                self.ignored_results += 1
                log.info(
                    "ignored stale result for %s attempt %d from worker %s",
                    r.assignment_id, r.attempt, s.worker_id,
                )  # fmt: skip
                continue
            del s.leases[r.assignment_id]
            del self._holder[r.assignment_id]
            s.free += 1
            s.completed += 1
            started = r.started_at.ToNanoseconds() / 1e9 if r.HasField("started_at") else 0.0
            accepted.append(
                Result(r.assignment_id, r.attempt, _outcome(r), s.worker_id, started_at=started)
            )
        if accepted:
            self._completed_by_worker[s.worker_id] = self._completed_by_worker.get(
                s.worker_id, 0
            ) + len(accepted)
            self.pump()
            if self._sink is not None:
                self._sink(accepted)
        if violation:
            raise ValueError(violation)

    def close_session(
        self, s: WorkerSession, reason: str, *, code: grpc.StatusCode | None = None
    ) -> None:
        """End a session: requeue its unsent work, report its leases lost, end its stream.

        Idempotent; `code` (when set) is the status the stream ends with.
        """
        if s.closed:
            return
        s.closed = True
        self._sessions.pop(s.id, None)
        for q in s.queues:
            peers = self._by_queue.get(q)
            if peers is not None and s in peers:
                peers.remove(s)
                if not peers:
                    del self._by_queue[q]
        # Assignments still in the outbox never reached the worker: they go back to the front
        # of their FIFO without costing a system retry.
        unsent: list[Dispatch] = []
        while not s.outbox.empty():
            item = s.outbox.get_nowait()
            if isinstance(item, _Outgoing):
                unsent.extend(d for d in item.dispatches if s.leases.get(d.assignment_id) is d)
        for d in reversed(unsent):
            del s.leases[d.assignment_id]
            self._holder.pop(d.assignment_id, None)
            self._pending.setdefault(d.task.worker.queue or "default", deque()).appendleft(d)
            self._pending_live[d.assignment_id] = d
        lost: list[Result] = []
        for aid, d in s.leases.items():
            self._holder.pop(aid, None)
            lost.append(
                Result(
                    aid,
                    d.attempt,
                    system_error(
                        "WorkerLost",
                        f"worker {s.worker_id} lost while running attempt {d.attempt} of node "
                        f"{d.node_id!r} ({reason})",
                    ),
                    s.worker_id,
                )
            )
        s.leases.clear()
        s.free = 0
        s.outbox.put_nowait(Close(code, reason))
        self.lost += len(lost)
        log.info(
            "worker %s session %s ended (%s): %d assignment(s) lost, %d requeued",
            s.worker_id, s.id, reason, len(lost), len(unsent),
        )  # fmt: skip
        if not self._stopping:
            if lost and self._sink is not None:
                self._sink(lost)
            if unsent:
                self.pump()

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval / 2)
            deadline = time.monotonic() - self.lease_duration
            for s in [s for s in self._sessions.values() if s.last_seen < deadline]:
                self.close_session(
                    s,
                    f"no heartbeat for {self.lease_duration:g}s",
                    code=grpc.StatusCode.DEADLINE_EXCEEDED,
                )

    # -- assignment ----------------------------------------------------------------------
    def pump(self) -> None:
        """Move pending dispatches into free slots: one message per session per pump.

        Work of a queue goes to the session with the most free slots (ties to the one served
        least recently), so a fan-out spreads across workers and a chain alternates.
        """
        batches: dict[WorkerSession, list[Dispatch]] = {}
        for queue, fifo in self._pending.items():
            if not fifo:
                continue
            peers = self._by_queue.get(queue)
            if not peers:
                continue  # no worker serves it yet: wait for one
            heap = [(-s.free, s.last_given, i, s) for i, s in enumerate(peers) if s.free > 0]
            heapq.heapify(heap)
            waiting: list[Dispatch] = []  # no free session may take them (their project)
            while heap and fifo:
                d = fifo.popleft()
                if self._pending_live.get(d.assignment_id) is not d:
                    continue  # cancelled while queued
                picked = _pick(heap, d)
                if picked is None:
                    waiting.append(d)
                    continue
                del self._pending_live[d.assignment_id]
                neg_free, _, i, s = picked
                s.free -= 1
                s.last_given = next(self._seq)
                s.leases[d.assignment_id] = d
                self._holder[d.assignment_id] = s
                batches.setdefault(s, []).append(d)
                if s.free > 0:
                    heapq.heappush(heap, (neg_free + 1, s.last_given, i, s))
            fifo.extendleft(reversed(waiting))
        for s, ds in batches.items():
            for start in range(0, len(ds), MAX_ASSIGNMENTS_PER_MESSAGE):
                chunk = ds[start : start + MAX_ASSIGNMENTS_PER_MESSAGE]
                batch = ws.AssignmentBatch(assignments=[self._assignment(s, d) for d in chunk])
                s.outbox.put_nowait(_Outgoing(ws.SessionResponse(assignments=batch), chunk))
                self.assignment_messages += 1
                self.assignments_sent += len(chunk)
        for queue in [q for q, f in self._pending.items() if not f]:
            del self._pending[queue]

    def _assignment(self, s: WorkerSession, d: Dispatch) -> ws.Assignment:
        project, _, rest = d.execution.partition("/")
        domain, _, name = rest.partition("/")
        a = ws.Assignment(
            assignment_id=d.assignment_id,
            attempt=d.attempt,
            template_key=d.task_key,
            inputs=d.inputs,
            task_execution_id=identifier_pb2.TaskExecutionIdentifier(
                task_id=d.task.id,
                node_execution_id=identifier_pb2.NodeExecutionIdentifier(
                    node_id=d.node_id,
                    execution_id=identifier_pb2.ExecutionIdentifier(
                        project=project, domain=domain, name=name
                    ),
                ),
                attempt=d.attempt,
            ),
        )
        if d.task_key not in s.templates_sent:
            s.templates_sent.add(d.task_key)
            a.task_template.CopyFrom(d.task)
        if d.deadline is not None:
            a.deadline.FromNanoseconds(int(d.deadline * 1e9))
        return a

    # -- observation ---------------------------------------------------------------------
    def stats(self) -> WorkerStats:
        """A snapshot of sessions, slots, pending work and counters."""
        pending: dict[str, int] = {}
        for q, fifo in self._pending.items():
            n = sum(1 for d in fifo if self._pending_live.get(d.assignment_id) is d)
            if n:
                pending[q] = n
        return WorkerStats(
            sessions=len(self._sessions),
            total_slots=sum(s.slots for s in self._sessions.values()),
            free_slots=sum(s.free for s in self._sessions.values()),
            leased=len(self._holder),
            pending=pending,
            ignored_results=self.ignored_results,
            lost=self.lost,
            assignment_messages=self.assignment_messages,
            assignments_sent=self.assignments_sent,
            completed_by_worker=dict(self._completed_by_worker),
            workers=tuple(sorted(s.worker_id for s in self._sessions.values())),
        )

    def sessions(self) -> list[WorkerSession]:
        """The connected sessions."""
        return list(self._sessions.values())


__all__ = ["WorkerSession", "WorkerSessions", "WorkerStats", "validate_hello"]
