"""The SQLite store's background duties: named leases, the shared dispatch queue (many
replicas on one file) and schedule states. A mixin of `SqliteStore`, kept apart for size."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from typing import Any, TypeVar

from plait_engine.store.records import QueuedDispatch, QueuedResult, ScheduleStateRecord
from plait_engine.store.sqlite_base import SqliteBase

_T = TypeVar("_T")


class SqliteDuties(SqliteBase):
    """Named leases, the dispatch and results queues, schedule states (see `Store`)."""

    # -- named leases ------------------------------------------------------------------
    async def acquire_lease(self, name: str, owner: str, now: float, until: float) -> bool:
        def take(c: sqlite3.Connection) -> bool:
            row = c.execute("SELECT owner, expires_at FROM leases WHERE name = ?", (name,))
            held = row.fetchone()
            if held is not None and held[0] != owner and float(held[1]) >= now:
                return False
            c.execute(
                "INSERT OR REPLACE INTO leases (name, owner, expires_at) VALUES (?, ?, ?)",
                (name, owner, until),
            )
            return True

        return await self._w(take)

    async def compact(self) -> None:
        def checkpoint() -> None:
            # Deleted pages are reused by later writes; the WAL is folded into the database
            # and truncated, so the files stay bounded.
            self._db.conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")

        await asyncio.get_running_loop().run_in_executor(self._writer, checkpoint)

    async def delete_cache_before(self, before: float, limit: int) -> list[str]:
        def delete(c: sqlite3.Connection) -> list[str]:
            keys = [
                str(r[0])
                for r in c.execute(
                    "SELECT key FROM cache WHERE created_at < ? ORDER BY created_at LIMIT ?",
                    (before, limit),
                ).fetchall()
            ]
            c.executemany("DELETE FROM cache WHERE key = ?", [(k,) for k in keys])
            return keys

        return await self._w(delete)

    # -- the shared dispatch queue -----------------------------------------------------
    async def enqueue_dispatches(self, items: Sequence[QueuedDispatch]) -> None:
        rows = [(d.assignment_id, d.eid, d.queue, d.assignment, d.created_at) for d in items]

        def enqueue(c: sqlite3.Connection) -> None:
            c.executemany(
                "INSERT OR REPLACE INTO dispatch_queue (assignment_id, eid, queue, assignment, "
                "created_at) VALUES (?, ?, ?, ?, ?)",
                rows,
            )

        if rows:
            await self._w(enqueue)

    async def take_dispatches(
        self, replica: str, wanted: Mapping[str, int], now: float, until: float
    ) -> list[QueuedDispatch]:
        def take(c: sqlite3.Connection) -> list[QueuedDispatch]:
            out: list[QueuedDispatch] = []
            for queue, n in wanted.items():
                if n <= 0:
                    continue
                rows = c.execute(
                    "SELECT assignment_id, eid, queue, assignment, created_at FROM dispatch_queue "
                    "WHERE queue = ? AND cancelled = 0 AND (taken_by = '' OR taken_until < ?) "
                    "ORDER BY created_at LIMIT ?",
                    (queue, now, n),
                ).fetchall()
                c.executemany(
                    "UPDATE dispatch_queue SET taken_by = ?, taken_until = ? "
                    "WHERE assignment_id = ?",
                    [(replica, until, r[0]) for r in rows],
                )
                out += [
                    QueuedDispatch(str(r[0]), int(r[1]), str(r[2]), bytes(r[3]), float(r[4]))
                    for r in rows
                ]
            return out

        return await self._w(take)

    async def renew_dispatches(
        self, replica: str, assignment_ids: Sequence[str], until: float
    ) -> None:
        rows = [(until, a, replica) for a in assignment_ids]

        def renew(c: sqlite3.Connection) -> None:
            c.executemany(
                "UPDATE dispatch_queue SET taken_until = ? "
                "WHERE assignment_id = ? AND taken_by = ?",
                rows,
            )

        if rows:
            await self._w(renew)

    async def finish_dispatches(self, assignment_ids: Sequence[str]) -> None:
        rows = [(a,) for a in assignment_ids]

        def finish(c: sqlite3.Connection) -> None:
            c.executemany("DELETE FROM dispatch_queue WHERE assignment_id = ?", rows)

        if rows:
            await self._w(finish)

    async def cancel_dispatches(self, assignment_ids: Sequence[str]) -> None:
        rows = [(a,) for a in assignment_ids]

        def cancel(c: sqlite3.Connection) -> None:
            c.executemany(
                "DELETE FROM dispatch_queue WHERE assignment_id = ? AND taken_by = ''", rows
            )
            c.executemany("UPDATE dispatch_queue SET cancelled = 1 WHERE assignment_id = ?", rows)

        if rows:
            await self._w(cancel)

    async def cancelled_dispatches(self, replica: str) -> list[str]:
        rows = await self._r(
            "SELECT assignment_id FROM dispatch_queue WHERE taken_by = ? AND cancelled = 1",
            (replica,),
        )
        return [str(r[0]) for r in rows]

    async def post_results(self, items: Sequence[QueuedResult]) -> None:
        rows = [(r.assignment_id, r.eid, r.result, r.worker_id, r.created_at) for r in items]

        def post(c: sqlite3.Connection) -> None:
            c.executemany(
                "INSERT INTO results_queue (assignment_id, eid, result, worker_id, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )

        if rows:
            await self._w(post)

    async def take_results(self, eids: Collection[int], limit: int) -> list[QueuedResult]:
        wanted = list(eids)

        def take(c: sqlite3.Connection) -> list[QueuedResult]:
            out: list[tuple[Any, ...]] = []
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                out += c.execute(
                    "SELECT pos, assignment_id, eid, result, worker_id, created_at "
                    f"FROM results_queue WHERE eid IN ({','.join('?' * len(chunk))}) "
                    "ORDER BY pos LIMIT ?",
                    [*chunk, limit - len(out)],
                ).fetchall()
                if len(out) >= limit:
                    break
            c.executemany("DELETE FROM results_queue WHERE pos = ?", [(r[0],) for r in out])
            return [
                QueuedResult(str(r[1]), int(r[2]), bytes(r[3]), str(r[4]), float(r[5]))
                for r in sorted(out)
            ]

        if not wanted:
            return []
        return await self._w(take)

    # -- schedules ---------------------------------------------------------------------
    async def schedule_states(self) -> dict[str, ScheduleStateRecord]:
        rows = await self._r("SELECT key, paused, last_tick, last_execution FROM schedules")
        return {
            str(r[0]): ScheduleStateRecord(str(r[0]), bool(r[1]), float(r[2]), str(r[3]))
            for r in rows
        }

    async def put_schedule_state(self, state: ScheduleStateRecord) -> None:
        row = (state.key, state.paused, state.last_tick, state.last_execution)

        def put(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT OR REPLACE INTO schedules (key, paused, last_tick, last_execution) "
                "VALUES (?, ?, ?, ?)",
                row,
            )

        await self._w(put)
