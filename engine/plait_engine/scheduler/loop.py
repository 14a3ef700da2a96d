"""The scheduler's loop: passes, commits, ownership, watchers.

Each pass drains what arrived (adopted executions, results, terminations, deadlines), lets the
walker advance the graphs within a budget, commits every transition and its events in one
transaction, and only then acts on it (dispatches attempts, wakes watchers). A pass that has
more work than its budget commits what it did and continues in the next pass, so a finished
task's result is committed within a bounded time however much work is queued.

An exception while handling one execution fails that execution and never stops the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from google.protobuf.message import DecodeError
from plaitidl.core.v1 import execution_pb2, literals_pb2

from plait_engine.blob import BadKey, ChecksumMismatch, ObjectNotFound, Payloads
from plait_engine.executors import Executor, Result
from plait_engine.scheduler import ownership, recovery
from plait_engine.scheduler.commits import Committer
from plait_engine.scheduler.graph import Walker
from plait_engine.scheduler.journal import Journal
from plait_engine.scheduler.nodes.base import SchedulerConfig
from plait_engine.scheduler.nodes.task import ExecutorFor
from plait_engine.scheduler.state import NodeExec, Run
from plait_engine.store import (
    ApplyResult,
    ExecutionRecord,
    Store,
)
from plait_engine.templates import TemplateSource

log = logging.getLogger("plait.scheduler")
_T = TypeVar("_T")
# Attempts to load an adopted execution before it is failed.
_LOAD_ATTEMPTS = 3
# How long work waits after a store read failed before it is tried again (seconds).
_READ_RETRY = 0.2


class Scheduler:
    """Drives the executions this replica owns.

    Args:
        store: The store.
        executor_for: The executor of a task template.
        config: Knobs.
        source: Registered templates (for dynamic specs referencing them).
        payloads: Large payloads.
        owner: This replica's id (a new one by default).
    """

    def __init__(
        self,
        store: Store,
        executor_for: ExecutorFor,
        config: SchedulerConfig,
        source: TemplateSource | None,
        payloads: Payloads,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.payloads = payloads
        self.owner = owner or ownership.new_owner_id()
        self.journal = Journal(payloads, self.owner)
        self.walker = Walker(self.journal, config, executor_for, source)
        self._committer = Committer(self)
        self.runs: dict[int, Run] = {}
        self._adopting: list[Run] = []
        self._results: list[Result] = []
        self._waiting: dict[str, str] = {}
        self._terminations: list[tuple[int, str]] = []
        self._lost: set[int] = set()
        self._terminating: set[int] = set()
        self._watchers: dict[int, list[asyncio.Event]] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._next_poll = 0.0

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Start the loop and the lease keeper (which adopts executions when `adopt`)."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._loop()), loop.create_task(self._keep_leases())]
        self._wake.set()

    async def stop(self) -> None:
        """Stop; give up the leases so that another replica may adopt at once."""
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
        self._tasks = []
        live = {eid: r.record.epoch for eid, r in self.runs.items() if not r.terminal}
        try:
            await self.store.release(self.owner, live)
        except Exception:  # the leases expire anyway
            log.warning("could not release leases on stop", exc_info=True)

    # -- inputs (loop thread) ------------------------------------------------------------
    def adopt(self, record: ExecutionRecord) -> Run:
        """Drive an execution this replica owns (created or claimed with our epoch)."""
        run = self.runs.get(record.eid)
        if run is None:
            run = Run(record)
            self.runs[record.eid] = run
            self._adopting.append(run)
            self._wake.set()
        return run

    async def claim(self, record: ExecutionRecord, *, force: bool = False) -> Run | None:
        """Claim an execution and drive it; `force` takes it over from a dead owner.

        Returns None when another live replica holds it.
        """
        now = time.time()
        expected = record.epoch if force or ownership.owner_is_dead(record.owner) else None
        claimed = await self.store.claim(
            record.eid, self.owner, now, now + self.config.lease, expected_epoch=expected
        )
        return None if claimed is None else self.adopt(claimed)

    def post_results(self, results: Sequence[Result]) -> None:
        """Results from executors; applied on the next pass."""
        self._results.extend(results)
        self._wake.set()

    def on_waiting(self, assignment_id: str, reason: str) -> None:
        """An executor says why an attempt waits for a worker ("" once it no longer waits):
        the node is journaled QUEUED with the reason, then RUNNING again."""
        self._waiting[assignment_id] = reason
        self._wake.set()

    def terminate(self, eid: int, reason: str) -> None:
        """Abort an execution this replica drives, on the next pass."""
        self._terminations.append((eid, reason))
        self._wake.set()

    def watch(self, eid: int) -> asyncio.Event:
        """An event set after each commit that touched the execution."""
        ev = asyncio.Event()
        self._watchers.setdefault(eid, []).append(ev)
        return ev

    def unwatch(self, eid: int, ev: asyncio.Event) -> None:
        """Forget a watcher."""
        lst = self._watchers.get(eid)
        if lst and ev in lst:
            lst.remove(ev)
            if not lst:
                del self._watchers[eid]

    def run_of(self, eid: int) -> Run | None:
        """The live run of an execution, if this replica drives it."""
        return self.runs.get(eid)

    @property
    def ignored_results(self) -> int:
        """Results that matched no attempt in flight."""
        return self.walker.tasks.ignored_results

    # -- the loop ----------------------------------------------------------------------
    async def _loop(self) -> None:
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), self._next_wakeup())
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self._pass()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug outside any one execution's handling: keep serving
                log.exception("scheduler pass failed")
                await asyncio.sleep(0.1)

    def _next_wakeup(self) -> float | None:
        waits: list[float] = []
        deadline = self.walker.tasks.next_deadline()
        if deadline is not None:
            waits.append(max(0.0, deadline - time.time()))
        if self.walker.tasks.waiters:
            waits.append(self.config.cache_wait_poll)
        return min(waits) if waits else None

    async def _pass(self) -> None:
        w = self.walker
        self.journal.begin()
        for eid in self._lost:
            self.drop(eid, "its ownership was lost")
        self._lost.clear()
        await self._start_adopted()
        budget = self.config.pass_budget
        for n in self._take(w.tasks.granted):
            self._guard(n.frame.run, w.tasks.dispatch, n)
        budget -= self._apply_results(budget)
        self._apply_waiting()
        for eid, reason in self._take(self._terminations):
            run = self.runs.get(eid)
            if run is not None:
                self._guard(run, w.terminate, run, reason)
        self._check_deadlines()
        if w.tasks.waiters and time.monotonic() >= self._next_poll:
            self._next_poll = time.monotonic() + self.config.cache_wait_poll
            w.tasks.lookups.extend(w.tasks.waiters.take_all())
        await self._advance(budget)
        batch, blobs = self.journal.take(list(self.runs.values()))
        result = await self._committer.commit(batch, blobs)
        self._after_commit(result)
        if w.ready or self._results or w.tasks.granted or w.tasks.lookups or w.dynamic.pending:
            self._wake.set()

    @staticmethod
    def _take(items: list[_T]) -> list[_T]:
        out = list(items)
        items.clear()
        return out

    def _guard(self, run: Run, fn: Callable[..., object], *args: object) -> None:
        """Run one step of one execution's handling; an exception fails only that one."""
        try:
            fn(*args)
        except Exception as exc:
            self.walker.crash(run, exc)

    async def _start_adopted(self) -> None:
        for run in self._take(self._adopting):
            try:
                adopted = await recovery.load(self.store, self.payloads, run)
            except Exception as exc:
                run.load_failures += 1
                if run.load_failures < _LOAD_ATTEMPTS:  # perhaps the store hiccupped
                    log.warning("loading %s failed; trying again", run.key, exc_info=True)
                    self._adopting.append(run)
                    self._retry_soon()
                else:  # unreadable state: fail it, keep the others going
                    self.walker.crash(run, exc)
                continue
            if adopted is None:
                self.runs.pop(run.eid, None)
                continue
            if run.record.terminate_reason:
                self._terminations.append((run.eid, run.record.terminate_reason))
            self._guard(run, self.walker.start_root, adopted)

    def _apply_results(self, budget: int) -> int:
        results = self._results[:budget]
        del self._results[: len(results)]
        tasks = self.walker.tasks
        for r in results:
            n = tasks.attempt_of(r)
            if n is not None:
                self._guard(n.frame.run, tasks.on_result, n, r)
        return len(results)

    def _apply_waiting(self) -> None:
        if not self._waiting:
            return
        waiting, self._waiting = self._waiting, {}
        tasks = self.walker.tasks
        for aid, reason in waiting.items():
            n = tasks.assignments.get(aid)
            if n is not None:
                self._guard(n.frame.run, tasks.on_waiting, n, reason)

    def _check_deadlines(self) -> None:
        tasks = self.walker.tasks
        now = time.time()
        tasks.record_overdue(now)
        try:
            tasks.check_deadlines(now)
        except Exception:  # a deadline's node is unknown here; nothing to isolate
            log.exception("checking deadlines failed")
        for n in tasks.due_retries(now):
            self._guard(n.frame.run, tasks.dispatch, n)

    async def _advance(self, budget: int) -> None:
        """Start ready nodes, look the cache up and compile yielded specs, until nothing more
        can happen now or the budget is spent."""
        w = self.walker
        while budget > 0:
            progressed = False
            while w.ready and budget > 0:
                n = w.ready.popleft()
                budget -= 1
                progressed = True
                if n.live:
                    self._guard(n.frame.run, w.begin, n)
            if w.tasks.lookups:
                progressed = await self._lookups()
            if w.dynamic.pending:
                try:
                    verdicts = await w.dynamic.compile_pending()
                except Exception:  # a store read failed: the specs wait for the next pass
                    log.warning("reading templates for dynamic specs failed", exc_info=True)
                    self._retry_soon()
                    return
                progressed = True
                for n, verdict in verdicts:
                    if n.live:
                        self._guard(n.frame.run, w.dynamic.start, n, verdict)
            if not progressed:
                return

    def _retry_soon(self) -> None:
        asyncio.get_running_loop().call_later(_READ_RETRY, self._wake.set)

    async def _lookups(self) -> bool:
        """Look the cache up for the waiting nodes; False when the store failed (they wait)."""
        tasks = self.walker.tasks
        nodes = self._take(tasks.lookups)
        keys = sorted({n.cache_key for n in nodes if n.cache_key})
        try:
            found = await self.store.cache_get_many(keys)
            outputs = {}
            for k, e in list(found.items()):
                got = await self._cached_outputs(k, e.outputs)
                if got is None:
                    del found[k]
                else:
                    outputs[k] = got
        except Exception:
            log.warning("cache lookup failed; trying again", exc_info=True)
            tasks.lookups.extend(nodes)
            self._retry_soon()
            return False
        by_run: dict[int, list[NodeExec]] = {}
        for n in nodes:
            by_run.setdefault(n.frame.run.eid, []).append(n)
        for group in by_run.values():
            self._guard(group[0].frame.run, tasks.on_lookups, group, found, outputs)
        return True

    async def _cached_outputs(self, key: str, stored: bytes) -> literals_pb2.LiteralMap | None:
        """The outputs of a cache entry; None when they are lost or corrupt (a miss: the task
        runs again and its result replaces the entry). A store that fails otherwise raises."""
        try:
            return literals_pb2.LiteralMap.FromString(await self.payloads.load(stored))
        except (ObjectNotFound, ChecksumMismatch, BadKey, DecodeError) as exc:
            log.warning("cache entry %s is unreadable (%s); treated as a miss", key, exc)
            return None

    def _after_commit(self, result: ApplyResult) -> None:
        tasks = self.walker.tasks
        if tasks.reserving:
            tasks.on_holders(result.holders)
        _hand_over(self._take(tasks.to_dispatch), lambda ex, ds: ex.submit(ds))
        _hand_over(self._take(tasks.to_cancel), lambda ex, ids: ex.cancel(ids))
        for eid, run in list(self.runs.items()):
            if eid in result.last_seq:
                run.record.last_seq = result.last_seq[eid]
            if run.dirty:
                run.dirty = False
                run.record.phase = run.phase
                run.record.counts = dict(run.counts)
                for ev in self._watchers.get(eid, ()):
                    ev.set()
            if run.terminal:
                self._forget(run)

    def _forget(self, run: Run) -> None:
        phase = execution_pb2.ExecutionPhase.Name(run.phase)  # type: ignore[arg-type]
        log.info("execution %s ended: %s", run.key, phase.removeprefix("EXECUTION_PHASE_"))
        self.runs.pop(run.eid, None)
        self._terminating.discard(run.eid)
        self.walker.tasks.forget(run)
        _hand_over(self._take(self.walker.tasks.to_cancel), lambda ex, ids: ex.cancel(ids))
        run.finished.set()

    def drop(self, eid: int, why: str) -> None:
        """Stop driving an execution without writing anything more of it."""
        run = self.runs.pop(eid, None)
        if run is None:
            return
        log.warning("stopped driving execution %s: %s", run.key, why)
        self.journal.discard(run)
        if run.root is not None:
            run.root.done = True
        run.detached = True
        self.walker.tasks.forget(run)
        for ev in self._watchers.get(eid, ()):
            ev.set()

    # -- leases ------------------------------------------------------------------------
    async def _keep_leases(self) -> None:
        """Renew the leases of driven executions; adopt claimable ones (when `adopt`)."""
        period = self.config.lease / 3
        while not self._stopping:
            try:
                await self._renew()
                if self.config.adopt:
                    await self._adopt_claimable()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("lease keeping failed; retrying")
            await asyncio.sleep(period)

    async def _renew(self) -> None:
        epochs = {eid: r.record.epoch for eid, r in self.runs.items() if not r.terminal}
        if not epochs:
            return
        lost = await self.store.renew(self.owner, epochs, time.time() + self.config.lease)
        if lost:
            self._lost.update(lost)
            self._wake.set()
        # Terminations asked for on another replica (this one applies them as the owner).
        for eid, reason in (await self.store.termination_requests(epochs)).items():
            if eid not in lost and eid not in self._terminating:
                self._terminating.add(eid)
                self.terminate(eid, reason)

    async def _adopt_claimable(self) -> None:
        now = time.time()
        candidates = await self.store.claimable(now, 100)
        for rec in await self.store.unfinished(1000):
            if rec.owner and rec.owner != self.owner and ownership.owner_is_dead(rec.owner):
                candidates.append(rec)
        for rec in candidates:
            if rec.eid not in self.runs:
                run = await self.claim(rec)
                if run is not None and rec.owner:
                    log.info("adopted execution %s from replica %s", run.key, rec.owner)


def _hand_over(items: list[tuple[Executor, _T]], act: Callable[[Executor, list[_T]], None]) -> None:
    """Group items by executor and hand each group over in one call."""
    groups: dict[int, tuple[Executor, list[_T]]] = {}
    for ex, item in items:
        groups.setdefault(id(ex), (ex, []))[1].append(item)
    for ex, group in groups.values():
        try:
            act(ex, group)
        except Exception:
            log.exception("an executor refused a hand-over")
