"""The PostgreSQL backend of the store contract: psycopg 3, async, over a connection pool.

Several engine processes may share one database: ownership (claims, leases, fencing epochs) is
decided by the database, a claim is one conditional ``UPDATE ... RETURNING`` and a commit locks
the executions it writes (see `plait_engine.store.postgres_apply`). The schema is migrated on
`open` (also on first use), once however many processes start at once.

Needs the ``postgres`` extra: ``pip install 'plait[postgres]'``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import AsyncConnection, errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from plait_engine import ids
from plait_engine.store.contract import Store, TemplateItem
from plait_engine.store.errors import Conflict, StoreError
from plait_engine.store.event_rows import MANY, SCAN_ROWS, node_page, page, sequenced
from plait_engine.store.postgres_apply import apply_batch
from plait_engine.store.postgres_duties import PostgresDuties
from plait_engine.store.postgres_schema import (
    EXEC_COLUMNS,
    NODE_COLUMNS,
    TERMINAL,
    UNFINISHED,
    columns,
    exec_from_row,
    migrate,
    node_from_row,
    unnest,
)
from plait_engine.store.records import (
    ApplyResult,
    CacheEntry,
    DynamicSpecRecord,
    ExecutionFilter,
    ExecutionPayload,
    ExecutionRecord,
    LogEntry,
    NodeRecord,
    TemplateKind,
    WriteBatch,
)

_SELECT_EXEC = f"SELECT {EXEC_COLUMNS} FROM executions"
_CREATE = (
    "WITH e AS ("
    "INSERT INTO executions (project, domain, name, workflow_key, launch_plan_key, phase, "
    "error, created_at, updated_at, request_id, labels, last_seq, counts, owner, epoch, "
    "lease_expires_at, terminate_reason, last_batch) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, 1, %s::jsonb, %s, %s, %s, %s, '') "
    f"ON CONFLICT DO NOTHING RETURNING {EXEC_COLUMNS}), "
    "p AS (INSERT INTO execution_payloads (eid, closure, workflow, inputs, outputs) "
    "SELECT eid, %s, %s, %s, %s FROM e), "
    "ev AS (INSERT INTO events (eid, seq, body) SELECT eid, 1, %s FROM e) "
    "SELECT * FROM e"
)
_CLAIM = (
    "UPDATE executions SET owner = %s, epoch = epoch + 1, lease_expires_at = %s "
    f"WHERE eid = %s AND phase IN ({UNFINISHED}) "
    "AND (owner = '' OR lease_expires_at < %s OR owner = %s OR epoch = %s) "
    f"RETURNING {EXEC_COLUMNS}"
)
# Leases of many executions in one statement; the rows are locked in eid order first, as a
# commit locks them, so that the two never deadlock.
_LEASES = (
    "WITH held AS (SELECT eid FROM executions WHERE eid = ANY(%b::bigint[]) "
    "ORDER BY eid FOR UPDATE) "
    "UPDATE executions AS e SET lease_expires_at = %s "
    f"FROM held, {unnest(('bigint[]', 'bigint[]'))} AS r(eid, epoch) "
    "WHERE e.eid = held.eid AND e.eid = r.eid AND e.owner = %s AND e.epoch = r.epoch {extra}"
    "RETURNING e.eid"
)
_RENEW = _LEASES.format(extra=f"AND e.phase IN ({UNFINISHED}) ")
_RELEASE = _LEASES.format(extra="")
# The request is recorded on an unfinished execution without one; any other is returned as it
# is, without writing its row.
_TERMINATE = (
    "WITH asked AS (UPDATE executions SET terminate_reason = %s WHERE eid = %s "
    f"AND phase IN ({UNFINISHED}) AND terminate_reason = '' RETURNING {EXEC_COLUMNS}) "
    f"SELECT * FROM asked UNION ALL SELECT {EXEC_COLUMNS} FROM executions "
    "WHERE eid = %s AND NOT EXISTS (SELECT 1 FROM asked)"
)
_INSERT_TEMPLATES = (
    "INSERT INTO templates (kind, key, digest, body) "
    "SELECT kind, key, digest, body FROM unnest(%b::integer[], %b::text[], %b::text[], "
    "%b::bytea[]) WITH ORDINALITY AS t(kind, key, digest, body, n) ORDER BY n "
    "ON CONFLICT DO NOTHING RETURNING kind, key"
)
_INSERT_LOGS = (
    "INSERT INTO logs (eid, node_id, attempt, stream, time, text) SELECT * FROM "
    + unnest(("bigint[]", "text[]", "integer[]", "integer[]", "double precision[]", "text[]"))
)


def describe(url: str) -> str:
    """Where a URL points, without its password: ``user@host:port/dbname``."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "an unreadable URL"
    host = info.get("host") or "localhost"
    return f"{info.get('user') or ''}@{host}:{info.get('port') or 5432}/{info.get('dbname') or ''}"


class PostgresStore(PostgresDuties, Store):
    """The store in a PostgreSQL database (version 13 or newer).

    Args:
        url: A libpq URL or connection string, e.g. ``postgresql://plait@db:5432/plait``.
        min_connections: Connections the pool keeps open.
        max_connections: Connections the pool opens at most (the scheduler's commits use one
            at a time; API reads use the rest).
        connect_timeout: Seconds to wait for the database when opening.
    """

    def __init__(
        self,
        url: str,
        *,
        min_connections: int = 2,
        max_connections: int = 10,
        connect_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self._min = min_connections
        self._max = max_connections
        self._timeout = connect_timeout
        self._pool: AsyncConnectionPool[AsyncConnection[Any]] | None = None
        self._opening = asyncio.Lock()
        self._version = 0

    # -- connections -------------------------------------------------------------------
    async def open(self) -> None:
        """Connect, and migrate the schema to this engine's version.

        Raises:
            StoreError: The database cannot be reached, or its schema is newer than this
                engine's.
        """
        await self._ready()

    async def _ready(self) -> AsyncConnectionPool[AsyncConnection[Any]]:
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._pool is None:
                try:
                    conn = await AsyncConnection.connect(
                        self.url, autocommit=True, connect_timeout=max(1, int(self._timeout))
                    )
                except psycopg.Error as exc:
                    text = str(exc).strip()
                    msg = text.splitlines()[0] if text else type(exc).__name__
                    raise StoreError(
                        f"cannot connect to PostgreSQL at {describe(self.url)}: {msg}"
                    ) from exc
                async with conn:
                    self._version = await migrate(conn)
                pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
                    self.url,
                    min_size=self._min,
                    max_size=self._max,
                    kwargs={"autocommit": True},
                    open=False,
                    name="plait-store",
                )
                await pool.open(wait=True, timeout=self._timeout)
                self._pool = pool
        return self._pool

    @asynccontextmanager
    async def _tx(self, *, pipeline: bool = False) -> AsyncIterator[AsyncConnection[Any]]:
        """A connection in a transaction (in pipeline mode when asked); unique violations
        become `Conflict`."""
        pool = await self._ready()
        async with pool.connection() as conn:
            try:
                if pipeline:
                    async with conn.pipeline(), conn.transaction():
                        yield conn
                else:
                    async with conn.transaction():
                        yield conn
            except errors.UniqueViolation as exc:
                raise Conflict(str(exc.diag.message_primary or exc)) from exc

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        pool = await self._ready()
        async with pool.connection() as conn:
            cur = await conn.execute(sql, params, binary=True)
            return await cur.fetchall()

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        rows = await self._rows(sql, params)
        return rows[0] if rows else None

    async def schema_version(self) -> int:
        """The schema version of the database."""
        row = await self._one("SELECT max(version) FROM schema_version")
        return int(row[0] or 0) if row else 0

    # -- templates ---------------------------------------------------------------------
    async def put_templates(self, items: Sequence[TemplateItem]) -> list[bool]:
        if not items:
            return []
        params = columns([(int(k), key, digest, body) for k, key, digest, body in items], 4)
        async with self._tx() as conn:
            cur = await conn.execute(_INSERT_TEMPLATES, params)
            inserted = {(int(k), str(key)) for k, key in await cur.fetchall()}
            cur = await conn.execute(
                "SELECT kind, key, digest FROM templates t "
                "JOIN unnest(%b::integer[], %b::text[]) AS q(kind, key) USING (kind, key)",
                params[:2],
            )
            held = {(int(k), str(key)): str(d) for k, key, d in await cur.fetchall()}
            created: list[bool] = []
            for kind, key, digest, _ in items:
                k = (int(kind), key)
                if held.get(k) != digest:
                    raise Conflict(f"{kind.name.lower()} {key!r} holds different content")
                created.append(k in inserted)
                inserted.discard(k)  # a key given twice is created once
            return created

    async def get_template(self, kind: TemplateKind, key: str) -> bytes | None:
        row = await self._one(
            "SELECT body FROM templates WHERE kind = %s AND key = %s", (int(kind), key)
        )
        return None if row is None else bytes(row[0])

    async def latest_template_key(self, kind: TemplateKind, prefix: str) -> str | None:
        row = await self._one(
            "SELECT key FROM templates WHERE kind = %s AND starts_with(key, %s) "
            "ORDER BY created_seq DESC LIMIT 1",
            (int(kind), prefix),
        )
        return None if row is None else str(row[0])

    async def list_templates(
        self, kind: TemplateKind, prefix: str, limit: int, offset: int
    ) -> list[bytes]:
        rows = await self._rows(
            "SELECT body FROM templates WHERE kind = %s AND starts_with(key, %s) "
            "ORDER BY created_seq DESC LIMIT %s OFFSET %s",
            (int(kind), prefix, limit, offset),
        )
        return [bytes(r[0]) for r in rows]

    # -- executions --------------------------------------------------------------------
    async def create_execution(
        self, record: ExecutionRecord, payload: ExecutionPayload, first_event: bytes
    ) -> tuple[ExecutionRecord, bool]:
        r = record
        params = (
            r.project, r.domain, r.name, r.workflow_key, r.launch_plan_key, r.phase, r.error,
            r.created_at, r.updated_at, r.request_id or None, json.dumps(r.labels, sort_keys=True),
            json.dumps(r.counts, sort_keys=True), r.owner, r.epoch, r.lease_expires_at,
            r.terminate_reason, payload.closure, payload.workflow, payload.inputs,
            payload.outputs, sequenced(first_event, 1),
        )  # fmt: skip
        async with self._tx() as conn:
            cur = await conn.execute(_CREATE, params)
            row = await cur.fetchone()
            if row is not None:
                return exec_from_row(row), True
            # A unique key is taken: the request id (the same call again) or the name.
            if r.request_id:
                cur = await conn.execute(f"{_SELECT_EXEC} WHERE request_id = %s", (r.request_id,))
                earlier = await cur.fetchone()
                if earlier is not None:
                    return exec_from_row(earlier), False
            raise Conflict(f"execution {r.key} already exists")

    async def get_execution(self, project: str, domain: str, name: str) -> ExecutionRecord | None:
        row = await self._one(
            f"{_SELECT_EXEC} WHERE project = %s AND domain = %s AND name = %s",
            (project, domain, name),
        )
        return None if row is None else exec_from_row(row)

    async def get_execution_by_eid(self, eid: int) -> ExecutionRecord | None:
        row = await self._one(f"{_SELECT_EXEC} WHERE eid = %s", (eid,))
        return None if row is None else exec_from_row(row)

    async def get_payload(self, eid: int) -> ExecutionPayload | None:
        row = await self._one(
            "SELECT closure, workflow, inputs, outputs FROM execution_payloads WHERE eid = %s",
            (eid,),
        )
        if row is None:
            return None
        return ExecutionPayload(bytes(row[0]), bytes(row[1]), bytes(row[2]), bytes(row[3]))

    async def list_executions(
        self, where: ExecutionFilter, limit: int, before_eid: int = 0
    ) -> list[ExecutionRecord]:
        sql = [f"{_SELECT_EXEC} WHERE true"]
        params: list[object] = []
        for column, value in (("project", where.project), ("domain", where.domain)):
            if value:
                sql.append(f"AND {column} = %s")
                params.append(value)
        if where.phases:
            sql.append("AND phase = ANY(%s::integer[])")
            params.append(list(where.phases))
        if where.workflow:
            sql.append("AND starts_with(workflow_key, %s)")
            params.append(where.workflow)
        for k, v in where.labels:
            sql.append("AND labels @> %s::jsonb")
            params.append(json.dumps({k: v}))
        if where.request_id:
            sql.append("AND request_id = %s")
            params.append(where.request_id)
        if where.finished_before:
            sql.append(f"AND phase IN ({TERMINAL}) AND updated_at < %s")
            params.append(where.finished_before)
        if before_eid:
            sql.append("AND eid < %s")
            params.append(before_eid)
        sql.append("ORDER BY eid DESC LIMIT %s")
        params.append(limit)
        return [exec_from_row(r) for r in await self._rows(" ".join(sql), params)]

    async def claimable(self, now: float, limit: int) -> list[ExecutionRecord]:
        rows = await self._rows(
            f"{_SELECT_EXEC} WHERE phase IN ({UNFINISHED}) "
            "AND (owner = '' OR lease_expires_at < %s) ORDER BY eid LIMIT %s",
            (now, limit),
        )
        return [exec_from_row(r) for r in rows]

    async def unfinished(self, limit: int, after_eid: int = 0) -> list[ExecutionRecord]:
        rows = await self._rows(
            f"{_SELECT_EXEC} WHERE phase IN ({UNFINISHED}) AND eid > %s ORDER BY eid LIMIT %s",
            (after_eid, limit),
        )
        return [exec_from_row(r) for r in rows]

    async def claim(
        self, eid: int, owner: str, now: float, until: float, *, expected_epoch: int | None = None
    ) -> ExecutionRecord | None:
        # One conditional update: of replicas racing for it, the first to lock the row wins;
        # the others re-check the condition against the winner's row and match nothing.
        epoch = -1 if expected_epoch is None else expected_epoch
        row = await self._one(_CLAIM, (owner, until, eid, now, owner, epoch))
        return None if row is None else exec_from_row(row)

    async def renew(self, owner: str, epochs: Mapping[int, int], until: float) -> set[int]:
        if not epochs:
            return set()
        eids, values = list(epochs), list(epochs.values())
        rows = await self._rows(_RENEW, (eids, until, eids, values, owner))
        return set(epochs) - {int(r[0]) for r in rows}

    async def release(self, owner: str, epochs: Mapping[int, int]) -> None:
        if epochs:
            eids, values = list(epochs), list(epochs.values())
            await self._rows(_RELEASE, (eids, 0.0, eids, values, owner))

    async def request_termination(self, eid: int, reason: str) -> ExecutionRecord | None:
        row = await self._one(_TERMINATE, (reason or "terminated by request", eid, eid))
        return None if row is None else exec_from_row(row)

    async def delete_execution(self, eid: int) -> bool:
        async with self._tx() as conn:
            cur = await conn.execute(
                "SELECT phase FROM executions WHERE eid = %s FOR UPDATE", (eid,)
            )
            row = await cur.fetchone()
            if row is None:
                return False
            if int(row[0]) not in ids.TERMINAL_EXECUTION_PHASES:
                raise Conflict(f"execution {eid} has not finished")
            async with conn.pipeline():
                for table in (
                    "nodes", "events", "dynamic_specs", "logs", "execution_payloads",
                    "executions",
                ):  # fmt: skip
                    await conn.execute(f"DELETE FROM {table} WHERE eid = %s", (eid,))
            return True

    # -- nodes, specs, events ------------------------------------------------------------
    async def node_records(self, eid: int) -> list[NodeRecord]:
        rows = await self._rows(f"SELECT {NODE_COLUMNS} FROM nodes WHERE eid = %s", (eid,))
        return [node_from_row(r) for r in rows]

    async def get_node(self, eid: int, node_id: str) -> NodeRecord | None:
        row = await self._one(
            f"SELECT {NODE_COLUMNS} FROM nodes WHERE eid = %s AND node_id = %s", (eid, node_id)
        )
        return None if row is None else node_from_row(row)

    async def list_nodes(
        self,
        eid: int,
        parent_id: str | None,
        limit: int,
        after_node_id: str = "",
        *,
        phases: Sequence[int] = (),
        name: str | None = None,
    ) -> list[NodeRecord]:
        sql = f"SELECT {NODE_COLUMNS} FROM nodes WHERE eid = %s AND node_id > %s"
        params: list[object] = [eid, after_node_id]
        if parent_id is not None:
            sql += " AND parent_id = %s"
            params.append(parent_id)
        if phases:
            sql += " AND phase = ANY(%s)"
            params.append([int(p) for p in phases])
        if name is not None:
            sql += " AND name = %s"
            params.append(name)
        sql += " ORDER BY node_id LIMIT %s"
        params.append(limit)
        return [node_from_row(r) for r in await self._rows(sql, params)]

    async def count_nodes(self, eid: int, under: str = "") -> dict[int, int]:
        sql = "SELECT phase, count(*) FROM nodes WHERE eid = %s"
        params: list[object] = [eid]
        if under:
            # The primary key's range of the ids below `under` ("C" collation: '0' sorts
            # right after '/').
            sql += " AND node_id > %s AND node_id < %s"
            params += [under + "/", under + "0"]
        rows = await self._rows(sql + " GROUP BY phase", params)
        return {int(r[0]): int(r[1]) for r in rows}

    async def count_children(self, eid: int, parent_id: str) -> list[tuple[str, int, int]]:
        rows = await self._rows(
            "SELECT name, phase, count(*) FROM nodes WHERE eid = %s AND parent_id = %s "
            "GROUP BY name, phase",
            (eid, parent_id),
        )
        return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]

    async def dynamic_specs(self, eid: int) -> list[DynamicSpecRecord]:
        rows = await self._rows(
            "SELECT node_id, closure, depth FROM dynamic_specs WHERE eid = %s", (eid,)
        )
        return [DynamicSpecRecord(str(r[0]), bytes(r[1]), int(r[2])) for r in rows]

    async def get_dynamic_spec(self, eid: int, node_id: str) -> DynamicSpecRecord | None:
        row = await self._one(
            "SELECT node_id, closure, depth FROM dynamic_specs WHERE eid = %s AND node_id = %s",
            (eid, node_id),
        )
        return None if row is None else DynamicSpecRecord(str(row[0]), bytes(row[1]), int(row[2]))

    async def events(self, eid: int, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        rows = await self._rows(
            "SELECT seq, body FROM events WHERE eid = %s AND seq > %s ORDER BY seq LIMIT %s",
            (eid, after_seq, limit),
        )
        return page(rows, after_seq, limit)

    async def node_events(
        self, eid: int, node_id: str, after_seq: int, limit: int
    ) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        while len(out) < limit:  # rows of several events may hold none of the node's
            rows = await self._rows(
                "SELECT seq, body FROM events WHERE eid = %s AND node_id IN (%s, %s) "
                "AND seq > %s ORDER BY seq LIMIT %s",
                (eid, node_id, MANY, after_seq, SCAN_ROWS),
            )
            out += node_page(rows, node_id, after_seq, limit - len(out))
            if len(rows) < SCAN_ROWS:
                break
            after_seq = int(rows[-1][0])
        return out

    # -- logs --------------------------------------------------------------------------
    async def append_logs(self, entries: Sequence[LogEntry]) -> None:
        if not entries:
            return
        rows = [(e.eid, e.node_id, e.attempt, e.stream, e.time, e.text) for e in entries]
        async with self._tx() as conn:
            await conn.execute(_INSERT_LOGS, columns(rows, 6))

    async def logs(
        self, eid: int, node_id: str, attempt: int, after: int, limit: int
    ) -> list[tuple[int, LogEntry]]:
        sql = "SELECT pos, eid, node_id, attempt, stream, time, text FROM logs WHERE eid = %s"
        params: list[object] = [eid]
        if node_id:
            sql += " AND node_id = %s"
            params.append(node_id)
            if attempt:
                sql += " AND attempt = %s"
                params.append(attempt)
        sql += " AND pos > %s ORDER BY pos LIMIT %s"
        params += [after, limit]
        rows = await self._rows(sql, params)
        return [
            (int(r[0]), LogEntry(int(r[1]), r[2], int(r[3]), int(r[4]), float(r[5]), r[6]))
            for r in rows
        ]

    # -- cache -------------------------------------------------------------------------
    async def cache_get_many(self, keys: Sequence[str]) -> dict[str, CacheEntry]:
        if not keys:
            return {}
        rows = await self._rows(
            "SELECT key, outputs, eid, node_id, created_at FROM cache WHERE key = ANY(%b::text[])",
            (list(keys),),
        )
        return {
            str(k): CacheEntry(str(k), bytes(o), int(e), str(n), float(c)) for k, o, e, n, c in rows
        }

    # -- writes ------------------------------------------------------------------------
    async def apply(self, batch: WriteBatch, now: float) -> ApplyResult:
        if not batch:
            return ApplyResult()
        async with self._tx(pipeline=True) as conn:
            return await apply_batch(conn, batch, now)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
