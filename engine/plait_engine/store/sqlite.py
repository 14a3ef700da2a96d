"""The SQLite backend of the store contract: one file, WAL, versioned migrations.

Blocking calls run on threads of the store's own: one writer thread holds the only writing
connection (SQLite has one writer at a time anyway), and a reader thread has its own
connection, so API reads never wait for a scheduler commit (WAL) and the event loop never waits
on the disk.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from typing import TypeVar

from plait_engine import ids
from plait_engine.store.contract import Store, TemplateItem
from plait_engine.store.errors import Conflict
from plait_engine.store.event_rows import MANY, SCAN_ROWS, node_page, page, sequenced
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
from plait_engine.store.sqlite_apply import apply_batch
from plait_engine.store.sqlite_duties import SqliteDuties
from plait_engine.store.sqlite_schema import (
    EXEC_COLUMNS,
    NODE_COLUMNS,
    TERMINAL,
    UNFINISHED,
    counts_text,
    exec_from_row,
    node_from_row,
)

_T = TypeVar("_T")


class SqliteStore(SqliteDuties, Store):
    """The store in one SQLite file.

    Args:
        path: The database file (created with its folder when missing).
        synchronous: SQLite's ``synchronous`` level: NORMAL (default) keeps every commit across
            a crash of the engine process; FULL also across an OS crash or power loss.
    """

    async def schema_version(self) -> int:
        """The schema version of the file."""
        row = await self._one("SELECT max(version) FROM schema_version")
        return int(row[0] or 0)

    # -- templates ---------------------------------------------------------------------
    async def put_templates(self, items: Sequence[TemplateItem]) -> list[bool]:
        def put(c: sqlite3.Connection) -> list[bool]:
            created: list[bool] = []
            seq = int(
                c.execute("SELECT coalesce(max(created_seq), 0) FROM templates").fetchone()[0]
            )
            for kind, key, digest, body in items:
                row = c.execute(
                    "SELECT digest FROM templates WHERE kind = ? AND key = ?", (int(kind), key)
                ).fetchone()
                if row is None:
                    seq += 1
                    c.execute(
                        "INSERT INTO templates (kind, key, digest, body, created_seq) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (int(kind), key, digest, body, seq),
                    )
                    created.append(True)
                elif row[0] == digest:
                    created.append(False)
                else:
                    raise Conflict(f"{kind.name.lower()} {key!r} holds different content")
            return created

        return await self._w(put)

    async def get_template(self, kind: TemplateKind, key: str) -> bytes | None:
        row = await self._one(
            "SELECT body FROM templates WHERE kind = ? AND key = ?", (int(kind), key)
        )
        return None if row is None else bytes(row[0])

    async def latest_template_key(self, kind: TemplateKind, prefix: str) -> str | None:
        row = await self._one(
            "SELECT key FROM templates WHERE kind = ? AND substr(key, 1, ?) = ? "
            "ORDER BY created_seq DESC LIMIT 1",
            (int(kind), len(prefix), prefix),
        )
        return None if row is None else str(row[0])

    async def list_templates(
        self, kind: TemplateKind, prefix: str, limit: int, offset: int
    ) -> list[bytes]:
        rows = await self._r(
            "SELECT body FROM templates WHERE kind = ? AND substr(key, 1, ?) = ? "
            "ORDER BY created_seq DESC LIMIT ? OFFSET ?",
            (int(kind), len(prefix), prefix, limit, offset),
        )
        return [bytes(r[0]) for r in rows]

    # -- executions --------------------------------------------------------------------
    async def create_execution(
        self, record: ExecutionRecord, payload: ExecutionPayload, first_event: bytes
    ) -> tuple[ExecutionRecord, bool]:
        def create(c: sqlite3.Connection) -> tuple[ExecutionRecord, bool]:
            if record.request_id:
                row = c.execute(
                    f"SELECT {EXEC_COLUMNS} FROM executions WHERE request_id = ?",
                    (record.request_id,),
                ).fetchone()
                if row is not None:
                    return exec_from_row(row), False
            taken = c.execute(
                "SELECT 1 FROM executions WHERE project = ? AND domain = ? AND name = ?",
                (record.project, record.domain, record.name),
            ).fetchone()
            if taken is not None:
                raise Conflict(f"execution {record.key} already exists")
            cur = c.execute(
                "INSERT INTO executions (project, domain, name, workflow_key, launch_plan_key, "
                "phase, closure, workflow, inputs, outputs, error, created_at, updated_at, "
                "request_id, labels, last_seq, counts, owner, epoch, lease_expires_at, "
                "terminate_reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)",
                (
                    record.project, record.domain, record.name, record.workflow_key,
                    record.launch_plan_key, record.phase, payload.closure, payload.workflow,
                    payload.inputs, payload.outputs, record.error, record.created_at,
                    record.updated_at, record.request_id or None,
                    json.dumps(record.labels, sort_keys=True), counts_text(record.counts),
                    record.owner, record.epoch, record.lease_expires_at, record.terminate_reason,
                ),
            )  # fmt: skip
            eid = int(cur.lastrowid or 0)
            c.execute(
                "INSERT INTO events (eid, seq, body) VALUES (?, 1, ?)",
                (eid, sequenced(first_event, 1)),
            )
            row = c.execute(f"SELECT {EXEC_COLUMNS} FROM executions WHERE eid = ?", (eid,))
            return exec_from_row(row.fetchone()), True

        return await self._w(create)

    async def get_execution(self, project: str, domain: str, name: str) -> ExecutionRecord | None:
        row = await self._one(
            f"SELECT {EXEC_COLUMNS} FROM executions WHERE project = ? AND domain = ? AND name = ?",
            (project, domain, name),
        )
        return None if row is None else exec_from_row(row)

    async def get_execution_by_eid(self, eid: int) -> ExecutionRecord | None:
        row = await self._one(f"SELECT {EXEC_COLUMNS} FROM executions WHERE eid = ?", (eid,))
        return None if row is None else exec_from_row(row)

    async def get_payload(self, eid: int) -> ExecutionPayload | None:
        row = await self._one(
            "SELECT closure, workflow, inputs, outputs FROM executions WHERE eid = ?", (eid,)
        )
        if row is None:
            return None
        return ExecutionPayload(bytes(row[0]), bytes(row[1]), bytes(row[2]), bytes(row[3]))

    async def list_executions(
        self, where: ExecutionFilter, limit: int, before_eid: int = 0
    ) -> list[ExecutionRecord]:
        sql = [f"SELECT {EXEC_COLUMNS} FROM executions WHERE 1 = 1"]
        params: list[object] = []
        for column, value in (("project", where.project), ("domain", where.domain)):
            if value:
                sql.append(f"AND {column} = ?")
                params.append(value)
        if where.phases:
            sql.append(f"AND phase IN ({','.join('?' * len(where.phases))})")
            params.extend(where.phases)
        if where.workflow:
            sql.append("AND substr(workflow_key, 1, ?) = ?")
            params += [len(where.workflow), where.workflow]
        for k, v in where.labels:
            sql.append("AND json_extract(labels, ?) = ?")
            params += ['$."' + k.replace('"', '""') + '"', v]
        if where.request_id:
            sql.append("AND request_id = ?")
            params.append(where.request_id)
        if where.finished_before:
            sql.append(f"AND phase IN ({TERMINAL}) AND updated_at < ?")
            params.append(where.finished_before)
        if before_eid:
            sql.append("AND eid < ?")
            params.append(before_eid)
        sql.append("ORDER BY eid DESC LIMIT ?")
        params.append(limit)
        return [exec_from_row(r) for r in await self._r(" ".join(sql), params)]

    async def claimable(self, now: float, limit: int) -> list[ExecutionRecord]:
        rows = await self._r(
            f"SELECT {EXEC_COLUMNS} FROM executions WHERE phase IN ({UNFINISHED}) "
            "AND (owner = '' OR lease_expires_at < ?) ORDER BY eid LIMIT ?",
            (now, limit),
        )
        return [exec_from_row(r) for r in rows]

    async def unfinished(self, limit: int, after_eid: int = 0) -> list[ExecutionRecord]:
        rows = await self._r(
            f"SELECT {EXEC_COLUMNS} FROM executions WHERE phase IN ({UNFINISHED}) "
            "AND eid > ? ORDER BY eid LIMIT ?",
            (after_eid, limit),
        )
        return [exec_from_row(r) for r in rows]

    async def claim(
        self, eid: int, owner: str, now: float, until: float, *, expected_epoch: int | None = None
    ) -> ExecutionRecord | None:
        def claim(c: sqlite3.Connection) -> ExecutionRecord | None:
            cond = "(owner = '' OR lease_expires_at < ? OR owner = ?)"
            params: list[object] = [owner, until, eid, now, owner]
            if expected_epoch is not None:
                cond = f"({cond} OR epoch = ?)"
                params.append(expected_epoch)
            cur = c.execute(
                "UPDATE executions SET owner = ?, epoch = epoch + 1, lease_expires_at = ? "
                f"WHERE eid = ? AND phase IN ({UNFINISHED}) AND {cond}",
                params,
            )
            if cur.rowcount != 1:
                return None
            row = c.execute(f"SELECT {EXEC_COLUMNS} FROM executions WHERE eid = ?", (eid,))
            return exec_from_row(row.fetchone())

        return await self._w(claim)

    async def renew(self, owner: str, epochs: Mapping[int, int], until: float) -> set[int]:
        items = list(epochs.items())

        def renew(c: sqlite3.Connection) -> set[int]:
            lost: set[int] = set()
            for eid, epoch in items:
                cur = c.execute(
                    "UPDATE executions SET lease_expires_at = ? WHERE eid = ? AND owner = ? "
                    f"AND epoch = ? AND phase IN ({UNFINISHED})",
                    (until, eid, owner, epoch),
                )
                if cur.rowcount != 1:
                    lost.add(eid)
            return lost

        return await self._w(renew) if items else set()

    async def release(self, owner: str, epochs: Mapping[int, int]) -> None:
        rows = [(eid, owner, epoch) for eid, epoch in epochs.items()]

        def release(c: sqlite3.Connection) -> None:
            c.executemany(
                "UPDATE executions SET lease_expires_at = 0 WHERE eid = ? AND owner = ? "
                "AND epoch = ?",
                rows,
            )

        if rows:
            await self._w(release)

    async def request_termination(self, eid: int, reason: str) -> ExecutionRecord | None:
        def request(c: sqlite3.Connection) -> ExecutionRecord | None:
            c.execute(
                "UPDATE executions SET terminate_reason = ? WHERE eid = ? "
                f"AND phase IN ({UNFINISHED}) AND terminate_reason = ''",
                (reason or "terminated by request", eid),
            )
            row = c.execute(f"SELECT {EXEC_COLUMNS} FROM executions WHERE eid = ?", (eid,))
            found = row.fetchone()
            return None if found is None else exec_from_row(found)

        return await self._w(request)

    async def termination_requests(self, eids: Collection[int]) -> dict[int, str]:
        wanted = list(eids)
        out: dict[int, str] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = await self._r(
                "SELECT eid, terminate_reason FROM executions "
                f"WHERE eid IN ({','.join('?' * len(chunk))}) AND terminate_reason != ''",
                chunk,
            )
            out.update({int(r[0]): str(r[1]) for r in rows})
        return out

    async def delete_execution(self, eid: int) -> bool:
        def delete(c: sqlite3.Connection) -> bool:
            row = c.execute("SELECT phase FROM executions WHERE eid = ?", (eid,)).fetchone()
            if row is None:
                return False
            if int(row[0]) not in ids.TERMINAL_EXECUTION_PHASES:
                raise Conflict(f"execution {eid} has not finished")
            for table in ("nodes", "events", "dynamic_specs", "logs", "executions"):
                c.execute(f"DELETE FROM {table} WHERE eid = ?", (eid,))
            return True

        return await self._w(delete)

    # -- nodes, specs, events ------------------------------------------------------------
    async def node_records(self, eid: int) -> list[NodeRecord]:
        rows = await self._r(f"SELECT {NODE_COLUMNS} FROM nodes WHERE eid = ?", (eid,))
        return [node_from_row(r) for r in rows]

    async def get_node(self, eid: int, node_id: str) -> NodeRecord | None:
        row = await self._one(
            f"SELECT {NODE_COLUMNS} FROM nodes WHERE eid = ? AND node_id = ?", (eid, node_id)
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
        sql = f"SELECT {NODE_COLUMNS} FROM nodes WHERE eid = ? AND node_id > ?"
        params: list[object] = [eid, after_node_id]
        if parent_id is not None:
            sql += " AND parent_id = ?"
            params.append(parent_id)
        if phases:
            sql += f" AND phase IN ({', '.join('?' for _ in phases)})"
            params.extend(int(p) for p in phases)
        if name is not None:
            sql += " AND name = ?"
            params.append(name)
        sql += " ORDER BY node_id LIMIT ?"
        params.append(limit)
        return [node_from_row(r) for r in await self._r(sql, params)]

    async def count_nodes(self, eid: int, under: str = "") -> dict[int, int]:
        sql = "SELECT phase, count(*) FROM nodes WHERE eid = ?"
        params: list[object] = [eid]
        if under:
            # The primary key's range of the ids below `under`: '0' sorts right after '/'.
            sql += " AND node_id > ? AND node_id < ?"
            params += [under + "/", under + "0"]
        rows = await self._r(sql + " GROUP BY phase", params)
        return {int(r[0]): int(r[1]) for r in rows}

    async def count_children(self, eid: int, parent_id: str) -> list[tuple[str, int, int]]:
        rows = await self._r(
            "SELECT name, phase, count(*) FROM nodes WHERE eid = ? AND parent_id = ? "
            "GROUP BY name, phase",
            (eid, parent_id),
        )
        return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]

    async def dynamic_specs(self, eid: int) -> list[DynamicSpecRecord]:
        rows = await self._r(
            "SELECT node_id, closure, depth FROM dynamic_specs WHERE eid = ?", (eid,)
        )
        return [DynamicSpecRecord(str(r[0]), bytes(r[1]), int(r[2])) for r in rows]

    async def get_dynamic_spec(self, eid: int, node_id: str) -> DynamicSpecRecord | None:
        row = await self._one(
            "SELECT node_id, closure, depth FROM dynamic_specs WHERE eid = ? AND node_id = ?",
            (eid, node_id),
        )
        return None if row is None else DynamicSpecRecord(str(row[0]), bytes(row[1]), int(row[2]))

    async def events(self, eid: int, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        rows = await self._r(
            "SELECT seq, body FROM events WHERE eid = ? AND seq > ? ORDER BY seq LIMIT ?",
            (eid, after_seq, limit),
        )
        return page(rows, after_seq, limit)

    async def node_events(
        self, eid: int, node_id: str, after_seq: int, limit: int
    ) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        while len(out) < limit:  # rows of several events may hold none of the node's
            rows = await self._r(
                "SELECT seq, body FROM events WHERE eid = ? AND node_id IN (?, ?) "
                "AND seq > ? ORDER BY seq LIMIT ?",
                (eid, node_id, MANY, after_seq, SCAN_ROWS),
            )
            out += node_page(rows, node_id, after_seq, limit - len(out))
            if len(rows) < SCAN_ROWS:
                break
            after_seq = int(rows[-1][0])
        return out

    # -- logs --------------------------------------------------------------------------
    async def append_logs(self, entries: Sequence[LogEntry]) -> None:
        rows = [(e.eid, e.node_id, e.attempt, e.stream, e.time, e.text) for e in entries]

        def append(c: sqlite3.Connection) -> None:
            c.executemany(
                "INSERT INTO logs (eid, node_id, attempt, stream, time, text) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )

        if rows:
            await self._w(append)

    async def logs(
        self, eid: int, node_id: str, attempt: int, after: int, limit: int
    ) -> list[tuple[int, LogEntry]]:
        sql = "SELECT pos, eid, node_id, attempt, stream, time, text FROM logs WHERE eid = ?"
        params: list[object] = [eid]
        if node_id:
            sql += " AND node_id = ?"
            params.append(node_id)
            if attempt:
                sql += " AND attempt = ?"
                params.append(attempt)
        sql += " AND pos > ? ORDER BY pos LIMIT ?"
        params += [after, limit]
        rows = await self._r(sql, params)
        return [
            (
                int(r[0]),
                LogEntry(int(r[1]), str(r[2]), int(r[3]), int(r[4]), float(r[5]), str(r[6])),
            )
            for r in rows
        ]

    # -- cache -------------------------------------------------------------------------
    async def cache_get_many(self, keys: Sequence[str]) -> dict[str, CacheEntry]:
        found: dict[str, CacheEntry] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            rows = await self._r(
                "SELECT key, outputs, eid, node_id, created_at FROM cache "
                f"WHERE key IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for key, outputs, eid, node_id, created in rows:
                found[str(key)] = CacheEntry(
                    str(key), bytes(outputs), int(eid), str(node_id), float(created)
                )
        return found

    # -- writes ------------------------------------------------------------------------
    async def apply(self, batch: WriteBatch, now: float) -> ApplyResult:
        if not batch:
            return ApplyResult()
        return await self._w(functools.partial(apply_batch, batch, now))

    async def close(self) -> None:
        self._writer.submit(self._db.close).result()
        self._writer.shutdown(wait=True)
        self._reader.shutdown(wait=True)
        self._db.close()
