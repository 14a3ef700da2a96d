"""What a worker session holds: the assignments in flight, their results waiting to be sent,
and the threads that run them.

Every stream message costs both processes far more CPU (gRPC's per-message work, thread
wake-ups on both sides) than a small task's result does, so results that finish close
together leave in one `ResultBatch`:

- a result with nothing else in flight leaves at once (a chain's hop is not delayed);
- otherwise the sender waits up to a short window (`BATCH_WINDOW`) for the others, and sends
  as soon as every assignment in flight has answered;
- assignments in flight for longer than `BATCH_HORIZON` are taken for long-running tasks and
  are not waited for: their neighbours' results leave at once.

Task threads wake the sender only for the first result of a batch and when nothing is left
in flight, not once per result.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("plait.worker")

# The longest a result waits for the results of its neighbours (seconds).
BATCH_WINDOW = 0.001
# Neighbours received longer ago than this are not waited for (seconds).
BATCH_HORIZON = 0.05

_NOT_WAITING = 0
_FOR_FIRST = 1  # the sender waits for any result
_FOR_REST = 2  # the sender holds results and waits until nothing is in flight


class Inflight:
    """The assignments of one session that the worker holds, and the results to send.

    An assignment is in flight from its arrival until its task thread finishes it; its
    result then waits in the outbox until the sender takes it. Thread-safe.

    Args:
        window: See `BATCH_WINDOW`; 0 sends every result as soon as the sender sees it.
        horizon: See `BATCH_HORIZON`.
    """

    def __init__(self, window: float = BATCH_WINDOW, horizon: float = BATCH_HORIZON) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._window = window
        self._horizon = horizon
        self._running: dict[str, float] = {}  # assignment id -> when it arrived (monotonic)
        self._cancelled: set[str] = set()
        self._outbox: list[bytes] = []  # serialized `TaskResult`s
        self._sender = _NOT_WAITING
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether the session ended (results are no longer kept)."""
        return self._closed

    def received(self, assignment_ids: Iterable[str]) -> None:
        """Assignments arrived: they are in flight until finished."""
        now = time.monotonic()
        with self._lock:
            for aid in assignment_ids:
                self._running[aid] = now

    def cancel(self, assignment_ids: Iterable[str]) -> list[str]:
        """The engine withdrew assignments: those in flight finish without a result.

        Returns:
            The withdrawn assignments that are in flight.
        """
        held: list[str] = []
        with self._lock:
            for aid in assignment_ids:
                if aid in self._running:
                    self._cancelled.add(aid)
                    held.append(aid)
        return held

    def start(self, assignment_id: str, skip: bool = False) -> bool:
        """Whether a task thread should run the assignment now; when not (it was withdrawn,
        the session ended, or `skip`), it is finished here without a result."""
        with self._lock:
            if not (skip or self._closed or assignment_id in self._cancelled):
                return True
            self._cancelled.discard(assignment_id)
            self._forget(assignment_id)
        return False

    def finish(self, assignment_id: str, result: bytes) -> None:
        """A task thread's answer (a serialized `TaskResult`): queued for the sender, unless
        the assignment was withdrawn meanwhile or the session ended."""
        with self._lock:
            if assignment_id in self._cancelled:
                # Python code cannot be interrupted: it ran to the end, its result is unwanted.
                self._cancelled.discard(assignment_id)
            elif not self._closed:
                self._outbox.append(result)
            self._forget(assignment_id)

    def _forget(self, assignment_id: str) -> None:
        # Holding the lock. Wakes the sender only when it has something to do: a first result,
        # or nothing left to wait for.
        self._running.pop(assignment_id, None)
        if (self._sender == _FOR_FIRST and self._outbox) or not self._running:
            self._wake.notify()

    def take(self, timeout: float) -> list[bytes]:
        """The results to send now, coalesced (see the module); waits up to `timeout` for a
        first one and returns [] when none came."""
        with self._lock:
            if not self._outbox and not self._closed:
                self._sender = _FOR_FIRST
                self._wake.wait(timeout)
                self._sender = _NOT_WAITING
            if self._outbox and self._worth_waiting():
                deadline = time.monotonic() + self._window
                self._sender = _FOR_REST
                while self._running and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._wake.wait(left)
                self._sender = _NOT_WAITING
            out, self._outbox = self._outbox, []
            return out

    def _worth_waiting(self) -> bool:
        if self._window <= 0 or not self._running:
            return False
        young = time.monotonic() - self._horizon
        return any(at > young for at in self._running.values())

    def take_for_heartbeat(self) -> tuple[list[bytes], list[str]]:
        """The results not yet sent and the assignments still in flight, at one instant: sent
        in this order, an assignment is either answered or listed as running."""
        with self._lock:
            out, self._outbox = self._outbox, []
            return out, list(self._running)

    def idle(self) -> bool:
        """Whether nothing is in flight and no result waits to be sent."""
        with self._lock:
            return not self._running and not self._outbox

    def close(self) -> None:
        """The session ended: results still to come or waiting are dropped (the engine retries
        what this session held)."""
        with self._lock:
            self._closed = True
            self._outbox = []
            self._wake.notify_all()


class Slots:
    """Threads that run submitted calls, at most `n` at once, in submission order.

    Leaner per call than an executor (no future, one queue operation). Threads start as work
    needs them and are not daemons: on exit, Python waits for the tasks still running, as it
    does for an executor's threads.

    Args:
        n: The most calls run at once.
    """

    def __init__(self, n: int) -> None:
        self._n = n
        self._queue: queue.SimpleQueue[tuple[Callable[[Any], None], Any] | None] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closed = False

    def submit(self, fn: Callable[[Any], None], arg: Any) -> None:
        """Run ``fn(arg)`` on a free thread (once one is free)."""
        self._queue.put((fn, arg))
        with self._lock:
            if self._closed or len(self._threads) >= self._n:
                return
            if self._queue.qsize() > self._idle:
                t = threading.Thread(target=self._serve, name=f"plait-task_{len(self._threads)}")
                self._threads.append(t)
                t.start()

    def close(self) -> None:
        """Let every thread end once the calls queued so far are done."""
        with self._lock:
            self._closed = True
            for _ in self._threads:
                self._queue.put(None)

    def _serve(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            item = self._queue.get()
            with self._lock:
                self._idle -= 1
            if item is None:
                return
            fn, arg = item
            try:
                fn(arg)
            except BaseException:  # a bug in the runner itself: keep the thread serving
                log.exception("a task thread failed")


__all__ = ["BATCH_HORIZON", "BATCH_WINDOW", "Inflight", "Slots"]
