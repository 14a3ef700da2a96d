"""Work waiting for a worker: lanes per (queue, task version, task type), and why they wait.

Who may run an attempt depends on its queue, its task version and its task type (sessions may
declare the versions and types they serve), so pending dispatches wait in one FIFO lane per
such triple. A lane that no connected session serves waits with a reason and never holds up
the lanes behind it; lanes are served oldest head first.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from plaitidl.core.v1 import tasks_pb2

from plait_engine import ids
from plait_engine.executors import Dispatch, WaitingFn
from plait_engine.executors.sessions import WorkerSession

log = logging.getLogger("plait_engine.workers")


@dataclass(eq=False)
class Lane:
    """Pending dispatches of one (queue, task version, task type, project), oldest first.

    Attributes:
        queue: The queue.
        task: A template of the lane (its id and type decide who serves it).
        project: The executions' project (a session scoped to projects serves only its own).
        fifo: ``(sequence, dispatch)``; a dispatch is live while `PendingWork` lists it.
        reason: Why the lane waits for a worker ("" when some connected session serves it).
    """

    queue: str
    task: tasks_pb2.TaskTemplate
    project: str = ""
    fifo: deque[tuple[int, Dispatch]] = field(default_factory=deque)
    reason: str = ""


def why_waiting(lane: Lane, peers: Sequence[WorkerSession]) -> str:
    """Why no connected session can take the lane's work (`peers`: those on its queue)."""
    tid = lane.task.id
    what = f"task {tid.name} version {tid.version}"
    if not peers:
        return f"no connected worker serves queue {lane.queue!r} (needed by {what})"
    if not any(p.serves_project(lane.project) for p in peers):
        return (
            f"no connected worker on queue {lane.queue!r} may run tasks of project "
            f"{lane.project!r} (needed by {what})"
        )
    task_type = lane.task.type
    if not any(not p.selector.types or task_type in p.selector.types for p in peers):
        return (
            f"no connected worker on queue {lane.queue!r} runs tasks of type "
            f"{task_type!r} (needed by {what})"
        )
    versions = sorted({v for p in peers for v in p.selector.versions_of(tid.name)})
    other = f"; they serve version(s) {', '.join(versions)}" if versions else ""
    return f"no connected worker on queue {lane.queue!r} serves {what}{other}"


class PendingWork:
    """The lanes of dispatches waiting for a free slot of a session that serves them."""

    def __init__(self) -> None:
        self._lanes: dict[tuple[str, str, str, str], Lane] = {}
        # Lazy deletion: a queued dispatch is live only while it is the value here, so
        # discarding is O(1) and the lanes are cleaned while they are drained.
        self._live: dict[str, Dispatch] = {}
        self._waiting: set[str] = set()
        self._seq = itertools.count(1)
        self._front = itertools.count(1)
        self.waiting_fn: WaitingFn | None = None

    def add(self, d: Dispatch, *, front: bool = False) -> None:
        """Queue a dispatch at the back of its lane (`front`: before everything queued)."""
        project = d.execution.partition("/")[0]
        key = (d.task.worker.queue or "default", ids.id_key(d.task.id), d.task.type, project)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = Lane(key[0], d.task, project)
        if front:
            lane.fifo.appendleft((-next(self._front), d))
        else:
            lane.fifo.append((next(self._seq), d))
        self._live[d.assignment_id] = d
        if lane.reason and self.waiting_fn is not None:
            self._waiting.add(d.assignment_id)
            self.waiting_fn(d.assignment_id, lane.reason)

    def discard(self, assignment_id: str) -> bool:
        """Drop a queued dispatch; whether it was queued."""
        self._waiting.discard(assignment_id)
        return self._live.pop(assignment_id, None) is not None

    def live_lanes(self) -> list[Lane]:
        """Lanes with live work, the one with the oldest head first (empty lanes dropped)."""
        live: list[Lane] = []
        for key, lane in list(self._lanes.items()):
            fifo = lane.fifo
            while fifo and self._live.get(fifo[0][1].assignment_id) is not fifo[0][1]:
                fifo.popleft()
            if fifo:
                live.append(lane)
            else:
                del self._lanes[key]
        live.sort(key=lambda lane: lane.fifo[0][0])
        return live

    def pop(self, lane: Lane) -> Dispatch | None:
        """The oldest live dispatch of a lane, taken out of it; None when there is none."""
        fifo = lane.fifo
        while fifo:
            _, d = fifo.popleft()
            if self._live.get(d.assignment_id) is d:
                del self._live[d.assignment_id]
                return d
        return None

    def spread(
        self, lane: Lane, peers: Sequence[WorkerSession], seq: Iterator[int]
    ) -> list[tuple[WorkerSession, Dispatch]]:
        """Lease the lane's oldest dispatches to free slots of `peers` (which serve it).

        Each goes to the session with the most free slots, ties to the one served least
        recently (`seq` numbers the gifts), so a fan-out spreads across workers and a chain
        alternates.
        """
        given: list[tuple[WorkerSession, Dispatch]] = []
        heap = [(-s.free, s.last_given, i, s) for i, s in enumerate(peers) if s.free > 0]
        heapq.heapify(heap)
        while heap:
            d = self.pop(lane)
            if d is None:
                break
            neg_free, _, i, s = heapq.heappop(heap)
            s.free -= 1
            s.last_given = next(seq)
            s.leases[d.assignment_id] = d
            given.append((s, d))
            if s.free > 0:
                heapq.heappush(heap, (neg_free + 1, s.last_given, i, s))
        return given

    def set_reason(self, lane: Lane, reason: str) -> None:
        """Record why a lane waits ("" when it no longer waits), telling the callback about
        each dispatch whose state changed."""
        if reason == lane.reason:
            return
        lane.reason = reason
        fn = self.waiting_fn
        for _, d in lane.fifo:
            aid = d.assignment_id
            if self._live.get(aid) is not d:
                continue
            if reason:
                self._waiting.add(aid)
                if fn is not None:
                    fn(aid, reason)
            elif aid in self._waiting:
                self._waiting.discard(aid)
                if fn is not None:
                    fn(aid, "")
        if reason:
            log.warning("%d attempt(s) wait: %s", len(lane.fifo), reason)

    def counts(self) -> dict[str, int]:
        """Live dispatches per queue."""
        out: dict[str, int] = {}
        for lane in self._lanes.values():
            n = sum(1 for _, d in lane.fifo if self._live.get(d.assignment_id) is d)
            if n:
                out[lane.queue] = out.get(lane.queue, 0) + n
        return out

    def waiting(self) -> int:
        """Live dispatches that no connected session serves."""
        return sum(1 for aid in self._waiting if aid in self._live)


__all__ = ["Lane", "PendingWork", "why_waiting"]
