"""Offloading the large inputs of dispatches before they are sent to a worker.

An input above the inline limit is written to the blob store under its execution (content-
addressed: a fan-out sharing one large input writes it once) and replaced by an
`OffloadedLiteral` the worker reads through `DataService`. Serializing, hashing and writing run
on a thread, never on the engine's loop; the dispatch is queued once its inputs are stored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable

from plait_engine.blob.data import DataStore
from plait_engine.executors import Dispatch
from plait_engine.executors.sessions import execution_parts

log = logging.getLogger("plait_engine.workers")


class InputOffloader:
    """Stores large inputs of dispatches on threads, then hands the dispatches on.

    Args:
        data: Where payloads are stored.
        inline_limit: Inputs above this many serialized bytes are offloaded.
        ready: Receives each dispatch with its inputs offloaded (on the loop).
        failed: Receives a dispatch whose inputs could not be stored, and the exception.
    """

    def __init__(
        self,
        data: DataStore,
        inline_limit: int,
        ready: Callable[[Dispatch], None],
        failed: Callable[[Dispatch, Exception], None],
    ) -> None:
        self._data = data
        self.inline_limit = inline_limit
        self._ready = ready
        self._failed = failed
        self._preparing: dict[str, Dispatch] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.offloaded = 0

    def needs(self, d: Dispatch) -> bool:
        """Whether some input of `d` may be over the limit (then `start` it)."""
        return d.inputs.ByteSize() > self.inline_limit

    def start(self, d: Dispatch, loop: asyncio.AbstractEventLoop) -> None:
        """Store `d`'s large inputs in the background."""
        self._preparing[d.assignment_id] = d
        task = loop.create_task(self._offload(d))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel(self, assignment_id: str) -> None:
        """Forget a dispatch being prepared: it is never handed on."""
        self._preparing.pop(assignment_id, None)

    def stop(self) -> None:
        """Abandon everything in progress."""
        self._preparing.clear()
        for task in list(self._tasks):
            task.cancel()

    async def _offload(self, d: Dispatch) -> None:
        types = {v.name: v.type for v in d.task.interface.inputs.variables}
        try:
            inputs = await asyncio.to_thread(
                self._data.offload_map, execution_parts(d), d.inputs, self.inline_limit, types
            )
        except Exception as exc:
            if self._preparing.pop(d.assignment_id, None) is d:
                log.exception("storing the large inputs of %s failed", d.assignment_id)
                self._failed(d, exc)
            return
        if self._preparing.pop(d.assignment_id, None) is not d:
            return  # cancelled meanwhile
        self.offloaded += 1
        self._ready(dataclasses.replace(d, inputs=inputs))


__all__ = ["InputOffloader"]
