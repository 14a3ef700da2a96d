"""Runs Python SDK tasks in threads of the engine's own process (the embedded engine)."""

from __future__ import annotations

import asyncio
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

# Results of a chunk are handed over at least this often (seconds), so a finished task is
# committed soon even when its chunk holds slow neighbours.
_FLUSH_EVERY = 0.02


class InProcessExecutor:
    """Runs tasks in a thread pool; dispatches go in chunks, results come back in batches.

    A fan-out of thousands of tiny tasks costs one thread hand-off per chunk rather than per
    task, while a finished task's result is handed over within `_FLUSH_EVERY` seconds.

    Args:
        runner: Runs one task on its inputs.
        threads: Tasks that run at once.
        chunk: Most dispatches one thread hand-off carries.
        trusted: Whether `runner` already checks outputs against the task's interface.
    """

    def __init__(
        self,
        runner: TaskRunner,
        threads: int = 8,
        chunk: int = 64,
        *,
        trusted: bool = False,
        logs: LogWriter | None = None,
    ) -> None:
        self._runner = runner
        self._logs = logs
        self._trusted = trusted
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="plait-task"
        )
        # Retries run on threads of their own: they never wait behind the whole queue.
        self._retry_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, threads // 4), thread_name_prefix="plait-retry"
        )
        self._chunk = chunk
        self._threads = threads
        self._sink: ResultSink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()

    def start(self, sink: ResultSink, loop: asyncio.AbstractEventLoop) -> None:
        """Begin; results go to `sink` on `loop`."""
        self._sink = sink
        self._loop = loop

    def submit(self, dispatches: Sequence[Dispatch]) -> None:
        """Queue the attempts on the pool (retries on their own threads)."""
        items = [d for d in dispatches if d.attempt == 1]
        for d in dispatches:
            if d.attempt > 1:
                self._retry_pool.submit(self._run_chunk, [d])
        # Every thread gets a share, so that slow tasks still run side by side.
        size = max(1, min(self._chunk, len(items) // (self._threads * 4)))
        for start in range(0, len(items), size):
            self._pool.submit(self._run_chunk, items[start : start + size])

    def _run_chunk(self, chunk: list[Dispatch]) -> None:
        results: list[Result] = []
        flushed = time.monotonic()
        for d in chunk:
            with self._lock:
                if d.assignment_id in self._cancelled:
                    self._cancelled.discard(d.assignment_id)
                    continue
            started = time.time()
            try:
                outcome = self._runner(d.task, d.inputs, self._context(d))
            except BaseException as exc:  # the runner itself broke: a platform failure
                outcome = system_error("RunnerError", f"{type(exc).__name__}: {exc}")
            if self._logs is not None:
                self._logs.ended(d.assignment_id)
            results.append(
                Result(d.assignment_id, d.attempt, outcome, "in-process", self._trusted, started)
            )
            if time.monotonic() - flushed >= _FLUSH_EVERY:
                self._hand_over(results)
                results = []
                flushed = time.monotonic()
        self._hand_over(results)

    def _context(self, d: Dispatch) -> AttemptContext:
        logs, aid = self._logs, d.assignment_id

        def write(stream: int, text: str) -> None:
            if logs is not None:
                logs.write(aid, stream, text)

        return AttemptContext(d.execution, d.node_id, d.attempt, d.task.id, write)

    def _hand_over(self, results: list[Result]) -> None:
        if results and self._loop is not None and self._sink is not None:
            try:
                self._loop.call_soon_threadsafe(self._sink, results)
            except RuntimeError:  # the loop closed during shutdown
                pass

    def cancel(self, assignment_ids: Sequence[str]) -> None:
        """Skip attempts that have not started."""
        with self._lock:
            self._cancelled.update(assignment_ids)

    async def stop(self) -> None:
        """Drop queued attempts; running ones finish in their threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._retry_pool.shutdown(wait=False, cancel_futures=True)
