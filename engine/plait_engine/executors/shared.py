"""Worker targets when several engine replicas share one store.

Workers connect to any replica; an execution is driven by the replica that owns it. So the
owner does not hand attempts to its own worker sessions: it queues them in the store, and every
replica takes, from that queue, as many attempts as its connected workers have free slots for
(never one attempt twice), runs them on its `WorkerSessions`, and holds them while they run.
An answer reaches the owner directly when the replica that got it owns the execution, and
through the store's results queue otherwise. A replica that dies stops holding its attempts:
once the hold expires another replica takes them again (delivery is at least once; the owner
keeps the first answer of an attempt). An attempt none of a replica's workers serves (another
task version or type, another project) is put back at once and left to the other replicas for
a while, so a rolling upgrade of workers never strands work on the wrong replica.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from plaitidl.core.v1 import dynamic_job_pb2, errors_pb2, identifier_pb2
from plaitidl.service.v1 import worker_service_pb2 as ws

from plait_engine import ids
from plait_engine.executors import Dispatch, Result, ResultSink
from plait_engine.executors.logs import attempt_of
from plait_engine.executors.workers import WorkerSessions
from plait_engine.store import QueuedDispatch, QueuedResult, Store

log = logging.getLogger("plait.shared")
_POLL = 0.02  # seconds between looks at the queues when nothing woke us
_HOLD = 15.0  # seconds an attempt is held without renewal
_DECLINE = 5.0  # seconds a replica leaves an attempt it cannot serve to the others


def to_assignment(d: Dispatch) -> ws.Assignment:
    """A dispatch as the `Assignment` the queue carries (template included)."""
    project, domain, name = d.execution.split("/", 2)
    a = ws.Assignment(
        assignment_id=d.assignment_id,
        attempt=d.attempt,
        template_key=d.task_key,
        task_template=d.task,
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
    if d.deadline is not None:
        a.deadline.FromNanoseconds(int(d.deadline * 1e9))
    return a


def from_assignment(a: ws.Assignment) -> Dispatch:
    """The dispatch an `Assignment` of the queue stands for."""
    ex = a.task_execution_id.node_execution_id.execution_id
    return Dispatch(
        assignment_id=a.assignment_id,
        attempt=a.attempt,
        task=a.task_template,
        task_key=ids.id_key(a.task_template.id),
        inputs=a.inputs,
        deadline=a.deadline.ToNanoseconds() / 1e9 if a.HasField("deadline") else None,
        execution=f"{ex.project}/{ex.domain}/{ex.name}",
        node_id=a.task_execution_id.node_execution_id.node_id,
    )


def to_task_result(r: Result) -> ws.TaskResult:
    """A result as the `TaskResult` the results queue carries."""
    out = ws.TaskResult(assignment_id=r.assignment_id, attempt=r.attempt)
    if isinstance(r.outcome, errors_pb2.ExecutionError):
        out.error.CopyFrom(r.outcome)
    elif isinstance(r.outcome, dynamic_job_pb2.DynamicJobSpec):
        out.dynamic_job_spec.CopyFrom(r.outcome)
    else:
        out.outputs.CopyFrom(r.outcome)
    if r.started_at:
        out.started_at.FromNanoseconds(int(r.started_at * 1e9))
    return out


def from_task_result(q: QueuedResult) -> Result:
    """The result a queued `TaskResult` stands for."""
    t = ws.TaskResult.FromString(q.result)
    which = t.WhichOneof("result")
    outcome = (
        t.error
        if which == "error"
        else (t.dynamic_job_spec if which == "dynamic_job_spec" else t.outputs)
    )
    started = t.started_at.ToNanoseconds() / 1e9 if t.HasField("started_at") else 0.0
    return Result(t.assignment_id, t.attempt, outcome, q.worker_id, started_at=started)


class SharedDispatcher:
    """The executor of worker targets for one replica among several.

    Args:
        store: The shared store (its dispatch and results queues).
        sessions: This replica's worker sessions.
        replica: This replica's id.
        owned: The executions this replica drives (their answers go straight to its
            scheduler; the others' through the store).
    """

    def __init__(
        self,
        store: Store,
        sessions: WorkerSessions,
        replica: str,
        owned: Callable[[], set[int]],
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._replica = replica
        self._owned = owned
        self._sink: ResultSink | None = None
        self._held: set[str] = set()
        # Attempts put back because no local worker serves them: queue and when to look again.
        self._declined: dict[str, tuple[str, float]] = {}
        self._outgoing: list[QueuedDispatch] = []
        self._cancels: list[str] = []
        self._answers: list[Result] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.taken = 0
        self.forwarded = 0

    # -- Executor protocol -------------------------------------------------------------
    def start(self, sink: ResultSink, loop: asyncio.AbstractEventLoop) -> None:
        """Begin: the sessions' answers come here; the queues are served in the background."""
        self._sink = sink
        self._sessions.start(self._on_answers, loop)
        self._tasks = [loop.create_task(self._serve())]

    def submit(self, dispatches: Sequence[Dispatch]) -> None:
        """Queue committed attempts in the store (written on the next round)."""
        now = time.time()
        for d in dispatches:
            queue = d.task.worker.queue or "default"
            eid = int(d.assignment_id.split(":", 1)[0])
            item = QueuedDispatch(
                d.assignment_id, eid, queue, to_assignment(d).SerializeToString(), now
            )
            self._outgoing.append(item)
        self._wake.set()

    def cancel(self, assignment_ids: Sequence[str]) -> None:
        """Withdraw attempts, wherever they run."""
        self._cancels.extend(assignment_ids)
        self._sessions.cancel([a for a in assignment_ids if a in self._held])
        self._wake.set()

    async def stop(self) -> None:
        """Stop serving; attempts still held go back to the queue when their hold expires."""
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
        self._tasks = []
        await self._sessions.stop()

    # -- answers -----------------------------------------------------------------------
    def _on_answers(self, results: Sequence[Result]) -> None:
        self._answers.extend(results)
        self._wake.set()

    async def _route_answers(self) -> None:
        answers, self._answers = self._answers, []
        if not answers:
            return
        owned = self._owned()
        mine: list[Result] = []
        others: list[Result] = []
        for r in answers:
            ident = attempt_of(r.assignment_id)
            (mine if ident is not None and ident[0] in owned else others).append(r)
        if others:
            await self._store.post_results(
                [
                    QueuedResult(
                        r.assignment_id,
                        int(r.assignment_id.split(":", 1)[0]),
                        to_task_result(r).SerializeToString(),
                        r.worker_id,
                        time.time(),
                    )
                    for r in others
                ]
            )
            self.forwarded += len(others)
        done = [r.assignment_id for r in answers]
        await self._store.finish_dispatches(done)
        self._held.difference_update(done)
        if mine and self._sink is not None:
            self._sink(mine)

    # -- the loop ----------------------------------------------------------------------
    async def _serve(self) -> None:
        renewed = time.monotonic()
        while True:
            try:
                await self._round()
                if time.monotonic() - renewed > _HOLD / 3:
                    renewed = time.monotonic()
                    await self._renew()
            except asyncio.CancelledError:
                raise
            except Exception:  # the store hiccupped: the next round tries again
                log.exception("serving the shared queues failed")
                await asyncio.sleep(0.5)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), _POLL)
            except TimeoutError:
                pass

    async def _round(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        if outgoing:
            await self._store.enqueue_dispatches(outgoing)
        cancels, self._cancels = self._cancels, []
        if cancels:
            await self._store.cancel_dispatches(cancels)
        await self._route_answers()
        await self._take()
        owned = self._owned()
        if owned and self._sink is not None:
            results = await self._store.take_results(owned, 1000)
            if results:
                self._sink([from_task_result(q) for q in results])

    async def _take(self) -> None:
        # Attempts for the free slots, and as many again waiting here (never more than the
        # slots): a slot that frees while the next round trips through the store is filled at
        # once. A replica that dies with some waiting loses only their hold time.
        room: dict[str, int] = {}
        for s in self._sessions.sessions():
            for q in s.queues:
                room[q] = room.get(q, 0) + s.free + s.slots
        pending = self._sessions.stats().pending
        wanted = {q: n - k for q, n in room.items() if (k := pending.get(q, 0)) < n}
        if not wanted:
            return
        skipped = self._skipped()
        for q in wanted:  # declined attempts come first in the queue: look past them
            wanted[q] += skipped.get(q, 0)
        now = time.time()
        taken = await self._store.take_dispatches(self._replica, wanted, now, now + _HOLD)
        if not taken:
            return
        served: list[Dispatch] = []
        declined: list[str] = []
        for t in taken:
            d = from_assignment(ws.Assignment.FromString(t.assignment))
            if t.assignment_id in self._declined or not self._sessions.serves(d):
                declined.append(t.assignment_id)
                self._declined.setdefault(t.assignment_id, (t.queue, time.monotonic() + _DECLINE))
            else:
                served.append(d)
        if declined:  # back in the queue at once, for a replica whose workers serve them
            await self._store.renew_dispatches(self._replica, declined, 0.0)
        if served:
            self.taken += len(served)
            self._held.update(d.assignment_id for d in served)
            self._sessions.submit(served)

    def _skipped(self) -> dict[str, int]:
        """Declined attempts still left to the others, per queue (expired ones forgotten)."""
        now = time.monotonic()
        out: dict[str, int] = {}
        for aid, (queue, until) in list(self._declined.items()):
            if until <= now:
                del self._declined[aid]
            else:
                out[queue] = out.get(queue, 0) + 1
        return out

    async def _renew(self) -> None:
        held = sorted(self._held)
        if held:
            await self._store.renew_dispatches(self._replica, held, time.time() + _HOLD)
        cancelled = await self._store.cancelled_dispatches(self._replica)
        if cancelled:
            self._sessions.cancel(cancelled)
            self._held.difference_update(cancelled)
            await self._store.finish_dispatches(cancelled)
