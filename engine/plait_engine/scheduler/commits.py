"""Commits of scheduler passes: blobs first, then the batch, retried until the store takes it.

The same batch applied twice changes nothing (its token), so a commit that failed after the
store wrote it is simply retried. Executions whose ownership was lost are dropped; one whose
writes the store keeps refusing is found by committing execution by execution and failed
alone, so the others go on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from plait_engine.blob import PendingBlob
from plait_engine.scheduler.state import Run
from plait_engine.store import ApplyResult, OwnershipLost, WriteBatch

if TYPE_CHECKING:
    from plait_engine.scheduler.loop import Scheduler

log = logging.getLogger("plait.scheduler")
# Waits between attempts of a failing commit; after the last, executions are committed one by
# one to find one whose writes the store refuses for good.
_COMMIT_BACKOFF = (0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 1.0, 2.0)
# Attempts of one execution's own commit before it is failed alone.
_ALONE_ATTEMPTS = 3


class Committer:
    """Commits for one scheduler (whose store, journal, runs and walker it uses)."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._s = scheduler

    async def commit(self, batch: WriteBatch, blobs: list[PendingBlob]) -> ApplyResult:
        """Commit the pass: blobs first, then the batch, retried until the store takes it
        (the same batch twice changes nothing). Executions whose ownership was lost are
        dropped; one whose writes keep failing is failed alone."""
        if not batch and not blobs:
            return ApplyResult()
        failures = 0
        while blobs:  # rows may point at them: nothing commits before they are written
            try:
                await asyncio.to_thread(self._s.payloads.write, blobs)
                blobs = []
            except Exception:
                failures += 1
                log.exception("writing blobs failed (attempt %d)", failures)
                await asyncio.sleep(_COMMIT_BACKOFF[min(failures, len(_COMMIT_BACKOFF)) - 1])
        failures = 0
        while True:
            try:
                return await self._s.store.apply(batch, time.time())
            except OwnershipLost as lost:
                for eid in lost.eids:
                    batch.executions.pop(eid, None)
                    self._s.drop(eid, "another replica owns it now")
            except Exception:
                failures += 1
                log.exception("commit failed (attempt %d)", failures)
                if failures >= len(_COMMIT_BACKOFF):
                    return await self._commit_each(batch)
                await asyncio.sleep(_COMMIT_BACKOFF[min(failures, len(_COMMIT_BACKOFF)) - 1])

    async def _commit_each(self, batch: WriteBatch) -> ApplyResult:
        """Commit execution by execution, to find the one whose writes the store refuses."""
        result = ApplyResult()
        shared = WriteBatch(
            cache_entries=batch.cache_entries,
            reservations=batch.reservations,
            released=batch.released,
        )
        for eid, writes in batch.executions.items():
            for attempt in range(_ALONE_ATTEMPTS):
                try:
                    part = await self._s.store.apply(
                        WriteBatch(executions={eid: writes}), time.time()
                    )
                    result.last_seq.update(part.last_seq)
                    break
                except OwnershipLost:
                    self._s.drop(eid, "another replica owns it now")
                    break
                except Exception as exc:
                    run = self._s.runs.get(eid)
                    if attempt + 1 == _ALONE_ATTEMPTS and run is not None:
                        await self._fail_alone(run, exc)
        if shared:
            try:
                part = await self._s.store.apply(shared, time.time())
                result.holders.update(part.holders)
            except Exception:
                log.exception("commit of cache writes failed; they are retried by their nodes")
        return result

    async def _fail_alone(self, run: Run, exc: BaseException) -> None:
        """Fail an execution whose writes the store refuses, in a commit of its own."""
        self._s.walker.crash(run, exc)
        batch, _ = self._s.journal.take([run])
        try:
            await self._s.store.apply(batch, time.time())
        except Exception:
            log.exception("could not record the failure of %s; it will be adopted again", run.key)
            self._s.drop(run.eid, "its state cannot be written")
