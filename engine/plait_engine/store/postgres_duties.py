"""The PostgreSQL store's background duties: named leases, the shared dispatch and results
queues (replicas take attempts with ``FOR UPDATE SKIP LOCKED``: never one attempt twice, never
waiting on each other), schedule states, cache and space housekeeping. A mixin of
`PostgresStore`, kept apart for size."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from psycopg import AsyncConnection

from plait_engine.store.postgres_schema import unnest
from plait_engine.store.records import QueuedDispatch, QueuedResult, ScheduleStateRecord

_TAKE = (
    "WITH ready AS (SELECT assignment_id FROM dispatch_queue "
    "WHERE queue = %s AND NOT cancelled AND (taken_by = '' OR taken_until < %s) "
    "ORDER BY created_at LIMIT %s FOR UPDATE SKIP LOCKED) "
    "UPDATE dispatch_queue AS q SET taken_by = %s, taken_until = %s FROM ready "
    "WHERE q.assignment_id = ready.assignment_id "
    "RETURNING q.assignment_id, q.eid, q.queue, q.assignment, q.created_at"
)
_TAKE_RESULTS = (
    "WITH mine AS (SELECT pos FROM results_queue WHERE eid = ANY(%b::bigint[]) "
    "ORDER BY pos LIMIT %s FOR UPDATE SKIP LOCKED) "
    "DELETE FROM results_queue AS r USING mine WHERE r.pos = mine.pos "
    "RETURNING r.pos, r.assignment_id, r.eid, r.result, r.worker_id, r.created_at"
)


class PostgresDuties:
    """Named leases, the queues, schedule states (see `Store`); needs `_tx` and `_rows`."""

    def _tx(self, *, pipeline: bool = False) -> AbstractAsyncContextManager[AsyncConnection[Any]]:
        raise NotImplementedError  # provided by PostgresStore

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError  # provided by PostgresStore

    # -- named leases ------------------------------------------------------------------
    async def acquire_lease(self, name: str, owner: str, now: float, until: float) -> bool:
        rows = await self._rows(
            "INSERT INTO leases (name, owner, expires_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, "
            "expires_at = EXCLUDED.expires_at "
            "WHERE leases.owner = EXCLUDED.owner OR leases.expires_at < %s RETURNING name",
            (name, owner, until, now),
        )
        return bool(rows)

    async def compact(self) -> None:
        """Nothing to do: autovacuum gives deleted rows' space back."""

    async def delete_cache_before(self, before: float, limit: int) -> list[str]:
        rows = await self._rows(
            "DELETE FROM cache WHERE key IN (SELECT key FROM cache WHERE created_at < %s "
            "ORDER BY created_at LIMIT %s) RETURNING key",
            (before, limit),
        )
        return sorted(str(r[0]) for r in rows)

    # -- the shared dispatch queue -----------------------------------------------------
    async def enqueue_dispatches(self, items: Sequence[QueuedDispatch]) -> None:
        if not items:
            return
        types = ("text[]", "bigint[]", "text[]", "bytea[]", "double precision[]")
        cols = [
            [d.assignment_id for d in items],
            [d.eid for d in items],
            [d.queue for d in items],
            [d.assignment for d in items],
            [d.created_at for d in items],
        ]
        await self._rows(
            "INSERT INTO dispatch_queue (assignment_id, eid, queue, assignment, created_at) "
            f"SELECT * FROM {unnest(types)} ON CONFLICT (assignment_id) DO UPDATE SET "
            "assignment = EXCLUDED.assignment, created_at = EXCLUDED.created_at, taken_by = '', "
            "taken_until = 0, cancelled = false RETURNING assignment_id",
            cols,
        )

    async def take_dispatches(
        self, replica: str, wanted: Mapping[str, int], now: float, until: float
    ) -> list[QueuedDispatch]:
        out: list[QueuedDispatch] = []
        async with self._tx() as conn:
            for queue, n in wanted.items():
                if n <= 0:
                    continue
                cur = await conn.execute(_TAKE, (queue, now, n, replica, until))
                rows = await cur.fetchall()
                out += [
                    QueuedDispatch(str(r[0]), int(r[1]), str(r[2]), bytes(r[3]), float(r[4]))
                    for r in sorted(rows, key=lambda r: float(r[4]))
                ]
        return out

    async def renew_dispatches(
        self, replica: str, assignment_ids: Sequence[str], until: float
    ) -> None:
        if assignment_ids:
            await self._rows(
                "UPDATE dispatch_queue SET taken_until = %s WHERE assignment_id = ANY(%s) "
                "AND taken_by = %s RETURNING assignment_id",
                (until, list(assignment_ids), replica),
            )

    async def finish_dispatches(self, assignment_ids: Sequence[str]) -> None:
        if assignment_ids:
            await self._rows(
                "DELETE FROM dispatch_queue WHERE assignment_id = ANY(%s) RETURNING assignment_id",
                (list(assignment_ids),),
            )

    async def cancel_dispatches(self, assignment_ids: Sequence[str]) -> None:
        if not assignment_ids:
            return
        async with self._tx() as conn:
            ids = list(assignment_ids)
            await conn.execute(
                "DELETE FROM dispatch_queue WHERE assignment_id = ANY(%s) AND taken_by = ''",
                (ids,),
            )
            await conn.execute(
                "UPDATE dispatch_queue SET cancelled = true WHERE assignment_id = ANY(%s)", (ids,)
            )

    async def cancelled_dispatches(self, replica: str) -> list[str]:
        rows = await self._rows(
            "SELECT assignment_id FROM dispatch_queue WHERE taken_by = %s AND cancelled",
            (replica,),
        )
        return sorted(str(r[0]) for r in rows)

    async def post_results(self, items: Sequence[QueuedResult]) -> None:
        if not items:
            return
        types = ("text[]", "bigint[]", "bytea[]", "text[]", "double precision[]")
        cols = [
            [r.assignment_id for r in items],
            [r.eid for r in items],
            [r.result for r in items],
            [r.worker_id for r in items],
            [r.created_at for r in items],
        ]
        await self._rows(
            "INSERT INTO results_queue (assignment_id, eid, result, worker_id, created_at) "
            f"SELECT * FROM {unnest(types)} RETURNING pos",
            cols,
        )

    async def take_results(self, eids: Collection[int], limit: int) -> list[QueuedResult]:
        if not eids:
            return []
        rows = await self._rows(_TAKE_RESULTS, (list(eids), limit))
        return [
            QueuedResult(str(r[1]), int(r[2]), bytes(r[3]), str(r[4]), float(r[5]))
            for r in sorted(rows, key=lambda r: int(r[0]))
        ]

    # -- schedules ---------------------------------------------------------------------
    async def schedule_states(self) -> dict[str, ScheduleStateRecord]:
        rows = await self._rows("SELECT key, paused, last_tick, last_execution FROM schedules")
        return {
            str(r[0]): ScheduleStateRecord(str(r[0]), bool(r[1]), float(r[2]), str(r[3]))
            for r in rows
        }

    async def put_schedule_state(self, state: ScheduleStateRecord) -> None:
        await self._rows(
            "INSERT INTO schedules (key, paused, last_tick, last_execution) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (key) DO UPDATE SET paused = EXCLUDED.paused, "
            "last_tick = EXCLUDED.last_tick, last_execution = EXCLUDED.last_execution "
            "RETURNING key",
            (state.key, state.paused, state.last_tick, state.last_execution),
        )

    async def termination_requests(self, eids: Collection[int]) -> dict[int, str]:
        if not eids:
            return {}
        rows = await self._rows(
            "SELECT eid, terminate_reason FROM executions WHERE eid = ANY(%b::bigint[]) "
            "AND terminate_reason <> ''",
            (list(eids),),
        )
        return {int(r[0]): str(r[1]) for r in rows}
