"""Retention: finished executions older than the retention period are deleted, with their
nodes, events, logs and blobs; cache entries older than it too. One replica does it at a time
(it holds the store's ``retention`` lease); the data dir stays bounded under a steady load."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time

from plait_engine.blob import ObjectStore, join_key
from plait_engine.errors import NotFound
from plait_engine.service.executions import ExecutionsService
from plait_engine.store import ExecutionFilter, Store

log = logging.getLogger("plait.retention")
_BATCH = 200


def cache_blob_key(key: str) -> tuple[str, str]:
    """Blob key parts of a cache entry's outputs, under ``payloads/`` (deleted with the
    entry)."""
    return ("cache", hashlib.sha256(key.encode()).hexdigest()[:32])


class RetentionSweeper:
    """Deletes what is older than the retention period, periodically.

    Args:
        store: The store.
        executions: The execution use cases (deletion of an execution and its blobs).
        blobs: The object store (cache entries' outputs).
        retention: Seconds a finished execution (or a cache entry) is kept.
        owner: This replica's id (for the lease).
    """

    def __init__(
        self,
        store: Store,
        executions: ExecutionsService,
        blobs: ObjectStore,
        retention: float,
        owner: str,
    ) -> None:
        self._store = store
        self._executions = executions
        self._blobs = blobs
        self._retention = retention
        self._owner = owner
        self._period = min(max(retention / 10, 1.0), 300.0)
        self._task: asyncio.Task[None] | None = None
        self.deleted = 0

    def start(self) -> None:
        """Sweep in the background (nothing when retention is off)."""
        if self._retention > 0:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop sweeping."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
            # Hand the duty over at once: another replica (or our successor) need not wait
            # for the lease to expire.
            try:
                await self._store.acquire_lease("retention", self._owner, time.time(), 0.0)
            except Exception:
                log.warning("could not release the retention lease", exc_info=True)

    async def _loop(self) -> None:
        while True:
            try:
                now = time.time()
                if await self._store.acquire_lease(
                    "retention", self._owner, now, now + 3 * self._period
                ):
                    await self.sweep(now)
            except asyncio.CancelledError:
                raise
            except Exception:  # try again next period
                log.exception("retention sweep failed")
            await asyncio.sleep(self._period)

    async def sweep(self, now: float) -> int:
        """Delete what expired before `now - retention`; returns how many executions."""
        before = now - self._retention
        deleted = 0
        while True:
            due = await self._store.list_executions(ExecutionFilter(finished_before=before), _BATCH)
            for rec in due:
                try:
                    await self._executions.delete(rec)
                except NotFound:  # deleted meanwhile (by a user, or another sweep)
                    continue
                deleted += 1
            if len(due) < _BATCH:
                break
        while keys := await self._store.delete_cache_before(before, _BATCH):
            for key in keys:
                prefix = join_key("payloads", *cache_blob_key(key))
                await asyncio.to_thread(self._blobs.delete_prefix, prefix)
            if len(keys) < _BATCH:
                break
        if deleted:
            log.info("retention deleted %d finished executions", deleted)
            await self._store.compact()
        self.deleted += deleted
        return deleted
