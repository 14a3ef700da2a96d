"""Runs Python SDK tasks in threads of the engine's own process (the embedded engine)."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import threading
import time
from collections.abc import Sequence

from plait_engine.executors import (
    AttemptContext,
    Dispatch,
    Result,
    ResultSink,
    TaskRunner,
    system_error,
)
from plait_engine.executors.logs import LogWriter

# Most attempts a thread takes from the queue at once.
_TAKE = 64
# Results of a share are handed over at least this often (seconds), so a finished task is
# committed soon even when its share holds slow neighbours.
_FLUSH_EVERY = 0.02


class InProcessExecutor:
    """Runs tasks on a few threads that take attempts from one queue; results go back to the
    loop in batches, with at most one hand-over waiting at a time.

    A fan-out of thousands of tiny tasks costs one wake-up of the loop per batch of results
    rather than one per task (each is a write to the loop's self-pipe), and an idle thread
    picks a new attempt up at once, so a chain of tasks waits for no batch to fill.

    Args:
        runner: Runs one task on its inputs.
        threads: Tasks that run at once.
        chunk: Unused; kept for callers that pass it.
        trusted: Whether `runner` already checks outputs against the task's interface.
        logs: Where captured output goes.
    """

    # Its attempts die with the engine: the scheduler need not record a node before it ends.
    in_engine_process = True

    def __init__(
        self,
        runner: TaskRunner,
        threads: int = 8,
        chunk: int = 64,
        *,
        trusted: bool = False,
        logs: LogWriter | None = None,
    ) -> None:
        del chunk
        self._runner = runner
        self._logs = logs
        self._trusted = trusted
        self._threads = max(1, threads)
        self._workers: list[threading.Thread] = []
        self._queue: collections.deque[Dispatch] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        # Retries run on threads of their own: they never wait behind the whole queue.
        self._retry_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, threads // 4), thread_name_prefix="plait-retry"
        )
        self._sink: ResultSink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cancelled: set[str] = set()
        self._done: list[Result] = []
        self._handing_over = False
        self._lock = threading.Lock()

    def start(self, sink: ResultSink, loop: asyncio.AbstractEventLoop) -> None:
        """Begin; results go to `sink` on `loop`."""
        self._sink = sink
        self._loop = loop

    def submit(self, dispatches: Sequence[Dispatch]) -> None:
        """Queue the attempts (retries on their own threads)."""
        first = []
        for d in dispatches:
            if d.attempt > 1:
                self._retry_pool.submit(self._run_one, d)
            else:
                first.append(d)
        if not first:
            return
        with self._cond:
            self._queue.extend(first)
            missing = min(self._threads - len(self._workers), len(self._queue))
            for _ in range(missing):
                t = threading.Thread(
                    target=self._work, name=f"plait-task_{len(self._workers)}", daemon=False
                )
                self._workers.append(t)
                t.start()
            self._cond.notify(len(first))

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                # A share of the queue at a time: fewer trips through the lock for tiny
                # tasks, while every thread still gets work.
                take = max(1, min(_TAKE, len(self._queue) // (2 * self._threads)))
                chunk = [self._queue.popleft() for _ in range(take)]
                if self._cancelled:
                    chunk = [d for d in chunk if not self._skip(d)]
            results: list[Result] = []
            flushed = time.monotonic()
            for d in chunk:
                results.append(self._attempt(d))
                if time.monotonic() - flushed >= _FLUSH_EVERY:
                    self._deliver(results)
                    results = []
                    flushed = time.monotonic()
            self._deliver(results)

    def _skip(self, d: Dispatch) -> bool:
        if d.assignment_id in self._cancelled:
            self._cancelled.discard(d.assignment_id)
            return True
        return False

    def _run_one(self, d: Dispatch) -> None:
        self._deliver([self._attempt(d)])

    def _attempt(self, d: Dispatch) -> Result:
        started = time.time()
        try:
            outcome = self._runner(d.task, d.inputs, self._context(d))
        except BaseException as exc:  # the runner itself broke: a platform failure
            outcome = system_error("RunnerError", f"{type(exc).__name__}: {exc}")
        if self._logs is not None:
            self._logs.ended(d.assignment_id)
        return Result(d.assignment_id, d.attempt, outcome, "in-process", self._trusted, started)

    def _deliver(self, results: list[Result]) -> None:
        if not results:
            return
        with self._lock:
            self._done.extend(results)
            if self._handing_over:  # the hand-over already asked for takes these too
                return
            self._handing_over = True
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._hand_over)
            except RuntimeError:  # the loop closed during shutdown
                pass

    def _hand_over(self) -> None:
        with self._lock:
            results, self._done = self._done, []
            self._handing_over = False
        if results and self._sink is not None:
            self._sink(results)

    def _context(self, d: Dispatch) -> AttemptContext:
        logs, aid = self._logs, d.assignment_id

        def write(stream: int, text: str) -> None:
            if logs is not None:
                logs.write(aid, stream, text)

        return AttemptContext(d.execution, d.node_id, d.attempt, d.task.id, write)

    def cancel(self, assignment_ids: Sequence[str]) -> None:
        """Skip attempts that have not started."""
        with self._cond:
            queued = {d.assignment_id for d in self._queue}
            self._cancelled.update(a for a in assignment_ids if a in queued)

    async def stop(self) -> None:
        """Drop queued attempts; running ones finish in their threads."""
        with self._cond:
            self._stopping = True
            self._queue.clear()
            self._cond.notify_all()
        self._retry_pool.shutdown(wait=False, cancel_futures=True)
