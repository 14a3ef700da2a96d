"""Captured output of task attempts: buffered, bounded per attempt, written to the store.

Executors hand lines to `LogWriter.write` from any thread (in-process tasks) or from the loop
(worker sessions); a flusher on the loop appends them to the store in batches, so output never
costs a store round trip per line. Each attempt keeps at most `max_bytes` of output: what comes
after is counted and summarized in one line when the attempt ends.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field

from plaitidl.service.v1 import execution_service_pb2 as es

from plait_engine.store import LogEntry, Store

log = logging.getLogger("plait.logs")
_FLUSH_EVERY = 0.1


def attempt_of(assignment_id: str) -> tuple[int, str, int] | None:
    """(eid, node_id, attempt) of an engine-built assignment id ``eid:node:attempt``."""
    eid, sep, rest = assignment_id.partition(":")
    node, sep2, attempt = rest.rpartition(":")
    if not (sep and sep2 and eid.isdigit() and attempt.isdigit() and node):
        return None
    return int(eid), node, int(attempt)


@dataclass
class _Budget:
    written: int = 0
    dropped: int = 0
    entry: LogEntry | None = field(default=None)


class LogWriter:
    """Buffers captured output and appends it to the store.

    Args:
        store: Where logs go.
        max_bytes: Most bytes of output kept per attempt.
    """

    def __init__(self, store: Store, max_bytes: int = 1 << 20) -> None:
        self._store = store
        self._max = max_bytes
        self._lock = threading.Lock()
        self._pending: list[LogEntry] = []
        self._budgets: dict[str, _Budget] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Start flushing on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = self._loop.create_task(self._flusher())

    async def stop(self) -> None:
        """Flush what is buffered and stop."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self._flush()

    def write(self, assignment_id: str, stream: int, text: str, at: float | None = None) -> None:
        """Record output of an attempt (whole lines, newline-separated); any thread."""
        ident = attempt_of(assignment_id)
        if ident is None or not text:
            return
        text = text.rstrip("\n")
        size = len(text.encode(errors="replace"))
        with self._lock:
            budget = self._budgets.setdefault(assignment_id, _Budget())
            if budget.written + size > self._max:
                budget.dropped += size
                return
            budget.written += size
            self._pending.append(LogEntry(*ident, stream, at or time.time(), text))

    def ended(self, assignment_id: str) -> None:
        """The attempt ended: note what was dropped, forget its budget."""
        with self._lock:
            budget = self._budgets.pop(assignment_id, None)
        ident = attempt_of(assignment_id)
        if budget is not None and budget.dropped and ident is not None:
            note = (
                f"... {budget.dropped} more bytes of output were not kept (the limit is "
                f"{self._max} bytes per attempt)"
            )
            with self._lock:
                self._pending.append(LogEntry(*ident, es.LOG_STREAM_ENGINE, time.time(), note))

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(_FLUSH_EVERY)
            try:
                await self._flush()
            except asyncio.CancelledError:
                raise
            except Exception:  # logs must never stop the engine; the lines are lost
                log.exception("writing task logs failed")

    async def _flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        if batch:
            await self._store.append_logs(batch)
