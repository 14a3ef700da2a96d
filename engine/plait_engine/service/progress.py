"""Following an execution's progress (`WatchExecutionRequest.counts_only`): coalesced counts,
the execution's phase, and what runs or waits, without reading a single event."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from plaitidl.core.v1 import execution_pb2

from plait_engine.scheduler import Scheduler
from plait_engine.scheduler.state import Frame, Run, display_name
from plait_engine.store import ExecutionRecord, Store

_EP = execution_pb2
# The phases a progress display calls running (`NodeCounts.running` also counts waiting nodes).
_RUNNING = frozenset({_EP.NODE_PHASE_RUNNING, _EP.NODE_PHASE_DYNAMIC_RUNNING})
_SHOWN = (*_RUNNING, _EP.NODE_PHASE_QUEUED)
# The names of at most this many display names are sent.
_NAMES = 10
# What runs is worked out again when the counts moved, or after this many seconds; and at most
# 1/_COST_SHARE of the time: a walk of a million-node graph takes a while, and a watcher must
# not cost the engine more than about 1% of its time.
_SUMMARY_EVERY = 0.5
_COST_SHARE = 100
# A walk of the live graph gives the event loop back after this many nodes.
_WALK_CHUNK = 20_000
# Rows per store read when another replica drives the execution.
_PAGE = 1000
# How often the watcher looks at the store without a local signal (another replica commits).
_POLL = 1.0


@dataclass(frozen=True)
class Progress:
    """One coalesced view of an execution.

    Attributes:
        record: The execution as stored (phase, error, last sequence).
        counts: Node counts (live when this replica drives it).
        running: (display name, how many) of the nodes running now, most first.
        waiting: Why nodes wait, when some do.
        phase_changed: Whether the phase differs from the previous view's (always true for
            the first).
    """

    record: ExecutionRecord
    counts: dict[str, int]
    running: tuple[tuple[str, int], ...]
    waiting: str
    phase_changed: bool

    def key(self) -> tuple[object, ...]:
        """What a display shows: a view with the same key as the previous one is not sent."""
        return (self.record.phase, sorted(self.counts.items()), self.running, self.waiting)


@dataclass(frozen=True)
class _Summary:
    running: tuple[tuple[str, int], ...] = ()
    waiting: str = ""


class ProgressWatch:
    """Coalesced progress of one execution, for one watcher.

    Args:
        store: The store.
        scheduler: This replica's scheduler (live counts and graph, commit signals).
        counts: Node counts of a record (live when this replica drives it).
        interval: Seconds between two views at least.
    """

    def __init__(
        self,
        store: Store,
        scheduler: Scheduler,
        counts: Callable[[ExecutionRecord], dict[str, int]],
        interval: float = 0.1,
    ) -> None:
        self._store = store
        self._scheduler = scheduler
        self._counts = counts
        self._interval = interval
        self._summary = _Summary()
        self._summary_at = -_SUMMARY_EVERY
        self._summary_gap = 0.0
        self._summary_of = (0, 0)

    async def follow(self, rec: ExecutionRecord, after_seq: int) -> AsyncIterator[Progress]:
        """Yield a view when what it shows changed, at most one per interval, starting once
        the execution committed past `after_seq`; the last one shows the terminal phase."""
        ev = self._scheduler.watch(rec.eid)
        shown: tuple[object, ...] | None = None
        phase = -1
        due = 0.0
        try:
            while True:
                ev.clear()
                current = await self._store.get_execution_by_eid(rec.eid)
                if current is None:  # deleted while followed
                    return
                if current.terminal or current.last_seq > after_seq:
                    view = await self._view(current, current.phase != phase)
                    if view.key() != shown:
                        shown, phase = view.key(), current.phase
                        due = time.monotonic() + self._interval
                        yield view
                if current.terminal:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ev.wait(), _POLL)
                # Commits in the meantime are seen together: one view per interval at most.
                await asyncio.sleep(max(due - time.monotonic(), 0.0))
        finally:
            self._scheduler.unwatch(rec.eid, ev)

    async def _view(self, current: ExecutionRecord, phase_changed: bool) -> Progress:
        counts = self._counts(current)
        queued = counts.get("queued", 0)
        running = counts.get("running", 0) - queued
        if current.terminal or (running <= 0 and queued <= 0):
            self._summary = _Summary()
        elif self._summary_due((running, queued)):
            started = time.monotonic()
            self._summary = await self._summarize(current)
            self._summary_at = time.monotonic()
            self._summary_gap = max(self._interval, _COST_SHARE * (self._summary_at - started))
            self._summary_of = (running, queued)
        s = self._summary
        # What the counts already tell is never shown stale.
        return Progress(
            current,
            counts,
            s.running if running > 0 else (),
            s.waiting if queued > 0 else "",
            phase_changed,
        )

    def _summary_due(self, active: tuple[int, int]) -> bool:
        """Whether to work out what runs again: when the counts moved (or a while passed), and
        not more often than its cost allows."""
        since = time.monotonic() - self._summary_at
        if since < self._summary_gap:
            return False
        return active != self._summary_of or since >= _SUMMARY_EVERY

    async def _summarize(self, current: ExecutionRecord) -> _Summary:
        run = self._scheduler.run_of(current.eid)
        if run is not None:
            names, waiting = await _walk(run)
        else:
            names, waiting = await self._from_store(current.eid)
        return _Summary(tuple(names.most_common(_NAMES)), waiting)

    async def _from_store(self, eid: int) -> tuple[Counter[str], str]:
        """What runs and waits as stored (another replica drives the execution)."""
        names: Counter[str] = Counter()
        waiting = ""
        after = ""
        while True:
            rows = await self._store.list_nodes(eid, None, _PAGE, after, phases=_SHOWN)
            for r in rows:
                if r.phase in _RUNNING:
                    names[r.name] += 1
                elif r.detail and not waiting:
                    waiting = r.detail
            if len(rows) < _PAGE:
                return names, waiting
            after = rows[-1].node_id


async def _walk(run: Run) -> tuple[Counter[str], str]:
    """What runs and waits in the live graph of a run this replica drives."""
    names: Counter[str] = Counter()
    waiting = ""
    frames: list[Frame] = [run.root] if run.root is not None else []
    seen = 0
    while frames:
        frame = frames.pop()
        if frame.done:
            continue
        # A copy: the scheduler may add nodes while the walk gives the loop back.
        for n in list(frame.nodes.values()):
            if n.phase in _RUNNING:
                names[display_name(n.node)] += 1
            elif n.phase == _EP.NODE_PHASE_QUEUED and n.detail and not waiting:
                waiting = n.detail
            if n.child is not None:
                frames.append(n.child)
            seen += 1
            if seen % _WALK_CHUNK == 0:
                await asyncio.sleep(0)
    return names, waiting
