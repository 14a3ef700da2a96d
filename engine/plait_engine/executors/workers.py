"""Worker sessions: the executor that hands attempts to connected workers.

`WorkerSessions` is the executor for worker targets. It keeps the connected sessions, lanes of
pending dispatches (per queue, task version and type) and the leases of the assignments each
session holds; it pushes pending work into free slots of sessions that serve it, and turns
results, lost sessions, unacknowledged assignments and cancellations into the `Result`s the
scheduler expects. The gRPC adapter (`plait_engine.api.workers`) feeds each stream into it.

Everything here runs on the engine's asyncio loop (the scheduler's loop), so no locks are
needed: `submit`, `cancel`, the servicer's reads and the reaper all interleave on one thread.
Only offloading large inputs (serializing, hashing and writing them) runs on threads.

- **Leases** are per session: a session is alive while it sends anything at least every
  `lease_duration`; when it dies, every assignment leased to it is reported as a recoverable
  system error (``WorkerLost``), retried on the system budget, possibly on another worker.
- **Reconcile**: each heartbeat lists the assignments the worker runs. One sent more than two
  heartbeat intervals before and missing from a heartbeat (the second received since it was
  sent, or a later one) is taken back (a recoverable system error, ``NotAcknowledged``) and
  withdrawn from the worker, so a worker that lost or never
  understood an assignment cannot leave its node RUNNING.
- **Messages** stay below `max_message_bytes`: assignments are batched by count and bytes;
  inputs above `inline_limit` are stored once per execution and sent as `OffloadedLiteral`s;
  one assignment too large even alone fails its node (non-retryable) instead of the session.
- **Routing**: a session that declares task versions or types gets only those; work nobody
  connected serves waits, and the waiting callback says why.
- **Logs** from workers go to the `LogWriter`, keyed by assignment.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import fields

import grpc
from plaitidl.service.v1 import worker_service_pb2 as ws

from plait_engine.blob.data import DataStore
from plait_engine.executors import Dispatch, Result, ResultSink, WaitingFn, system_error
from plait_engine.executors.logs import LogWriter
from plait_engine.executors.offload import InputOffloader
from plait_engine.executors.pending import PendingWork, why_waiting
from plait_engine.executors.sessions import (
    AssignmentEncoder,
    Close,
    Counters,
    Outgoing,
    TaskSelector,
    WorkerSession,
    WorkerStats,
    checked_outcome,
    lost_error,
    outcome_of,
    pack,
    too_large_error,
    unacknowledged_error,
    unsent,
    validate_hello,
)

log = logging.getLogger("plait_engine.workers")

# A bound on assignments per message besides bytes: keeps one pump's message cheap to build.
MAX_ASSIGNMENTS_PER_MESSAGE = 2000
# Bytes a message needs beyond its assignments (field tags and lengths), kept free.
_MESSAGE_OVERHEAD = 1024
_LOG_STREAMS = frozenset({1, 2, 3})  # LogChunk.Stream: stdout, stderr, logger


class WorkerSessions:
    """The executor that hands worker-target dispatches to connected worker sessions.

    Args:
        heartbeat_interval: How often workers are told to heartbeat (seconds).
        lease_duration: How long a session may stay silent before it is declared dead and its
            assignments are retried elsewhere (seconds).
        max_message_bytes: The largest message sent to a worker.
        inline_limit: Inputs above this many serialized bytes are offloaded (with `data`).
        data: Where offloaded inputs are stored; None sends every input inline.
        logs: Where workers' captured output goes; None drops it.
    """

    def __init__(
        self,
        heartbeat_interval: float = 2.0,
        lease_duration: float = 10.0,
        *,
        max_message_bytes: int = 64 << 20,
        inline_limit: int = 1 << 20,
        data: DataStore | None = None,
        logs: LogWriter | None = None,
    ) -> None:
        if heartbeat_interval <= 0 or lease_duration <= heartbeat_interval:
            raise ValueError("need 0 < heartbeat_interval < lease_duration")
        self.heartbeat_interval = heartbeat_interval
        self.lease_duration = lease_duration
        self.max_message_bytes = max_message_bytes
        self.inline_limit = inline_limit
        self._logs = logs
        self._offloader = (
            None
            if data is None
            else InputOffloader(data, inline_limit, self._offloaded, self._offload_failed)
        )
        self._sink: ResultSink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sessions: dict[str, WorkerSession] = {}
        self._by_queue: dict[str, list[WorkerSession]] = {}
        self._pending = PendingWork()
        self._holder: dict[str, WorkerSession] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._stopping = False
        self._seq = itertools.count(1)
        self._encoder = AssignmentEncoder()
        self.counters = Counters()

    # -- Executor protocol -------------------------------------------------------------------
    def start(self, sink: ResultSink, loop: asyncio.AbstractEventLoop) -> None:
        """Begin; results go to `sink` on `loop`'s thread (where everything here runs)."""
        self._sink = sink
        self._loop = loop
        self._stopping = False
        self._reaper = loop.create_task(self._reap())

    def set_waiting_callback(self, fn: WaitingFn) -> None:
        """Report why dispatches wait (see `plait_engine.executors.ReportsWaiting`)."""
        self._pending.waiting_fn = fn

    def submit(self, dispatches: Sequence[Dispatch]) -> None:
        """Queue attempts in their lanes and push them into free slots at once; attempts with
        inputs above the inline limit are queued once those are stored (on a thread)."""
        for d in dispatches:
            if self._offloader is not None and self._offloader.needs(d):
                assert self._loop is not None
                self._offloader.start(d, self._loop)
            else:
                # A retry does not wait behind the queue: it was due when it was submitted.
                self._pending.add(d, front=d.attempt > 1)
        self.pump()

    def cancel(self, assignment_ids: Sequence[str]) -> None:
        """Drop pending attempts; withdraw leased ones from their sessions (freeing the slots)."""
        by_session: dict[WorkerSession, list[str]] = {}
        for aid in assignment_ids:
            if self._offloader is not None:
                self._offloader.cancel(aid)
            if self._pending.discard(aid):
                continue
            s = self._holder.get(aid)
            if s is not None and self._release(s, aid, withdrawn=True) is not None:
                by_session.setdefault(s, []).append(aid)
        for s, aids in by_session.items():
            self._withdraw(s, aids, "the engine no longer needs this attempt")
        if by_session:
            self.pump()

    async def stop(self) -> None:
        """End every session (workers reconnect to the next engine) and the reaper."""
        self._stopping = True
        if self._offloader is not None:
            self._offloader.stop()
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

        `projects` limits the session to assignments of those projects' executions (the
        worker's token scope); None allows every project.

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
            selector=TaskSelector.from_hello(hello),
            projects=projects,
        )
        welcome = ws.Welcome(session_id=s.id)
        welcome.heartbeat_interval.FromNanoseconds(int(self.heartbeat_interval * 1e9))
        welcome.lease_duration.FromNanoseconds(int(self.lease_duration * 1e9))
        s.outbox.put_nowait(Outgoing(ws.SessionResponse(welcome=welcome)))
        self._sessions[s.id] = s
        for q in s.queues:
            self._by_queue.setdefault(q, []).append(s)
        log.info(
            "worker %s connected: session %s, queues %s, %d slots, %s %s, %s",
            s.worker_id, s.id, ",".join(s.queues), s.slots, s.language, s.version,
            f"{len(hello.tasks)} task version(s)" if hello.tasks else "any task version",
        )  # fmt: skip
        self.pump()
        return s

    def handle(self, s: WorkerSession, request: ws.SessionRequest) -> None:
        """Apply one message from a session's worker.

        Raises:
            ValueError: A protocol violation (a second hello, a result echoing another
                attempt); the caller ends the session.
        """
        if s.closed:
            return
        s.last_seen = time.monotonic()
        which = request.WhichOneof("message")
        if which == "results":
            results = request.results.results
            self.counters.result_messages += 1
            self.counters.results_received += len(results)
            self._on_results(s, results)
        elif which == "heartbeat":
            self._reconcile(s, request.heartbeat.running_assignment_ids)
        elif which == "logs":
            self._on_logs(s, request.logs.chunks)
        elif which == "hello":
            raise ValueError("hello may only be the first message of a session")

    def sent(self, s: WorkerSession, item: Outgoing) -> None:
        """The servicer wrote `item` to the stream: its assignments' acknowledgement clock
        starts now."""
        now = time.monotonic()
        for d in item.dispatches:
            if s.leases.get(d.assignment_id) is d:
                s.sent_at[d.assignment_id] = (now, s.heartbeats)

    def _on_results(self, s: WorkerSession, results: Sequence[ws.TaskResult]) -> None:
        accepted: list[Result] = []
        violation = ""
        for r in results:
            d = s.leases.get(r.assignment_id)
            if d is None or self._holder.get(r.assignment_id) is not s:
                self._ignore(s, r)
                continue
            if d.attempt != r.attempt:
                # The worker holds this assignment but echoes another attempt: a worker bug.
                # Ignoring it would leave the node waiting forever, so end the session loudly
                # (its leases are retried elsewhere).
                violation = (
                    f"result for assignment {r.assignment_id} carries attempt {r.attempt}, but "
                    f"the assignment is attempt {d.attempt}: echo Assignment.attempt"
                )
                break
            self._release(s, r.assignment_id)
            s.completed += 1
            started = r.started_at.ToNanoseconds() / 1e9 if r.HasField("started_at") else 0.0
            outcome = checked_outcome(d, outcome_of(r))
            accepted.append(
                Result(r.assignment_id, r.attempt, outcome, s.worker_id, started_at=started)
            )
        if accepted:
            done = self.counters.completed_by_worker
            done[s.worker_id] = done.get(s.worker_id, 0) + len(accepted)
            self.pump()
            if self._sink is not None:
                self._sink(accepted)
        if violation:
            raise ValueError(violation)

    def _ignore(self, s: WorkerSession, r: ws.TaskResult) -> None:
        self.counters.ignored_results += 1
        if r.assignment_id in s.withdrawn:
            log.info(
                "ignored late result for withdrawn %s attempt %d from worker %s",
                r.assignment_id, r.attempt, s.worker_id,
            )  # fmt: skip
            return
        self.counters.unknown_results += 1
        log.warning(
            "worker %s (session %s) sent a result for assignment %r attempt %d, which it does "
            "not hold: ignored (%d such result(s) so far)",
            s.worker_id, s.id, r.assignment_id[:200], r.attempt, self.counters.unknown_results,
        )  # fmt: skip

    def _reconcile(self, s: WorkerSession, running: Sequence[str]) -> None:
        """Take back what was sent two heartbeat intervals ago and is not listed as running.

        The worker must also have sent two heartbeats since: the first may have been written
        before the assignment reached it (and waited in a busy loop's buffer).
        """
        s.heartbeats += 1
        cutoff = time.monotonic() - 2 * self.heartbeat_interval
        listed = set(running)
        missing = [
            aid
            for aid, (at, beats) in s.sent_at.items()
            if at <= cutoff and s.heartbeats - beats >= 2 and aid not in listed
        ]
        if not missing:
            return
        window = 2 * self.heartbeat_interval
        taken = [
            Result(aid, d.attempt, unacknowledged_error(s, d, window), s.worker_id)
            for aid in missing
            if (d := self._release(s, aid, withdrawn=True)) is not None
        ]
        self._withdraw(s, missing, "taken back: not listed in the worker's heartbeats")
        self.counters.taken_back += len(taken)
        log.warning(
            "worker %s (session %s) did not acknowledge %d assignment(s): taken back",
            s.worker_id, s.id, len(taken),
        )  # fmt: skip
        self.pump()
        if taken and self._sink is not None:
            self._sink(taken)

    def _on_logs(self, s: WorkerSession, chunks: Sequence[ws.LogChunk]) -> None:
        for c in chunks:
            d = s.leases.get(c.assignment_id)
            if d is None or d.attempt != c.attempt:
                self.counters.ignored_logs += 1
                continue
            if self._logs is not None:
                at = c.time.ToNanoseconds() / 1e9 if c.HasField("time") else None
                stream = c.stream if c.stream in _LOG_STREAMS else ws.LogChunk.STREAM_STDOUT
                self._logs.write(c.assignment_id, stream, c.text, at)

    def _release(self, s: WorkerSession, aid: str, *, withdrawn: bool = False) -> Dispatch | None:
        """End a lease of `s` (its slot is free again, its logs end); its dispatch."""
        d = s.release(aid, withdrawn=withdrawn)
        if d is not None:
            self._holder.pop(aid, None)
            if self._logs is not None:
                self._logs.ended(aid)
        return d

    def _withdraw(self, s: WorkerSession, aids: list[str], reason: str) -> None:
        cancellations = ws.Cancellations(assignment_ids=aids, reason=reason)
        s.outbox.put_nowait(Outgoing(ws.SessionResponse(cancellations=cancellations)))

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
        # of their lane without costing a system retry.
        requeued = unsent(s)
        for d in reversed(requeued):
            del s.leases[d.assignment_id]
            self._holder.pop(d.assignment_id, None)
            self._pending.add(d, front=True)
        lost = [
            Result(aid, d.attempt, lost_error(s, d, reason), s.worker_id)
            for aid, d in list(s.leases.items())
            if self._release(s, aid) is not None
        ]
        s.free = 0
        s.outbox.put_nowait(Close(code, reason))
        self.counters.lost += len(lost)
        log.info(
            "worker %s session %s ended (%s): %d assignment(s) lost, %d requeued",
            s.worker_id, s.id, reason, len(lost), len(requeued),
        )  # fmt: skip
        if not self._stopping:
            if lost and self._sink is not None:
                self._sink(lost)
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

    def _offloaded(self, d: Dispatch) -> None:
        if not self._stopping:
            self._pending.add(d, front=d.attempt > 1)
            self.pump()

    def _offload_failed(self, d: Dispatch, exc: Exception) -> None:
        if self._sink is not None:
            message = f"could not store the large inputs of node {d.node_id!r}: {exc}"
            self._sink([Result(d.assignment_id, d.attempt, system_error("OffloadFailed", message))])

    # -- assignment ----------------------------------------------------------------------
    def pump(self) -> None:
        """Move pending dispatches into free slots of sessions serving them, oldest lane
        first: one message per session per pump unless bytes or count say more.

        Work of a lane goes to the session with the most free slots (ties to the one served
        least recently), so a fan-out spreads across workers and a chain alternates.
        """
        while True:
            batches: dict[WorkerSession, list[Dispatch]] = {}
            for lane in self._pending.live_lanes():
                on_queue = self._by_queue.get(lane.queue, [])
                peers = [
                    s
                    for s in on_queue
                    if s.selector.serves(lane.task) and s.serves_project(lane.project)
                ]
                self._pending.set_reason(lane, "" if peers else why_waiting(lane, on_queue))
                for s, d in self._pending.spread(lane, peers, self._seq):
                    self._holder[d.assignment_id] = s
                    batches.setdefault(s, []).append(d)
            refused: list[Result] = []
            for s, ds in batches.items():
                refused += self._send(s, ds)
            if not refused:
                return
            self.counters.too_large += len(refused)
            if self._sink is not None:
                self._sink(refused)

    def _send(self, s: WorkerSession, ds: list[Dispatch]) -> list[Result]:
        """Queue `ds` for `s` in messages bounded by count and bytes; returns the results of
        assignments that cannot fit in a message even alone (their slots are freed)."""
        budget = self.max_message_bytes - _MESSAGE_OVERHEAD
        messages, too_large = pack(s, ds, budget, MAX_ASSIGNMENTS_PER_MESSAGE, self._encoder)
        for item in messages:
            s.outbox.put_nowait(item)
            self.counters.assignment_messages += 1
            self.counters.assignments_sent += len(item.dispatches)
        refused: list[Result] = []
        for d, size in too_large:
            self._release(s, d.assignment_id)
            error = too_large_error(d, size, budget, self.inline_limit)
            log.warning("refused an assignment: %s", error.message)
            refused.append(Result(d.assignment_id, d.attempt, error))
        return refused

    def serves(self, d: Dispatch) -> bool:
        """Whether some connected session could run `d` (its queue, task and project)."""
        project = d.execution.partition("/")[0]
        return any(
            s.selector.serves(d.task) and s.serves_project(project)
            for s in self._by_queue.get(d.task.worker.queue or "default", [])
        )

    # -- observation ---------------------------------------------------------------------
    def stats(self) -> WorkerStats:
        """A snapshot of sessions, slots, pending work and counters."""
        totals = {f.name: copy.copy(getattr(self.counters, f.name)) for f in fields(Counters)}
        return WorkerStats(
            sessions=len(self._sessions),
            total_slots=sum(s.slots for s in self._sessions.values()),
            free_slots=sum(s.free for s in self._sessions.values()),
            leased=len(self._holder),
            pending=self._pending.counts(),
            workers=tuple(sorted(s.worker_id for s in self._sessions.values())),
            offloaded=self._offloader.offloaded if self._offloader is not None else 0,
            waiting=self._pending.waiting(),
            **totals,
        )

    def sessions(self) -> list[WorkerSession]:
        """The connected sessions."""
        return list(self._sessions.values())


__all__ = [
    "Close",
    "Outgoing",
    "WorkerSession",
    "WorkerSessions",
    "WorkerStats",
    "validate_hello",
]
