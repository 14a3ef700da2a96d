"""SQLite implementation of `Store`: WAL mode, versioned migrations, one writer."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from plait_engine.errors import AlreadyExists
from plait_engine.store._base import (
    CacheEntry,
    ExecutionRecord,
    NodeRecord,
    Store,
    TemplateKind,
    WriteBatch,
)

# Each entry upgrades the schema by one version; never edit a released entry, append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE templates (
        kind INTEGER NOT NULL,
        key TEXT NOT NULL,
        digest TEXT NOT NULL,
        body BLOB NOT NULL,
        created_seq INTEGER NOT NULL,
        PRIMARY KEY (kind, key)
    );
    CREATE TABLE executions (
        eid INTEGER PRIMARY KEY AUTOINCREMENT,
        project TEXT NOT NULL,
        domain TEXT NOT NULL,
        name TEXT NOT NULL,
        workflow_key TEXT NOT NULL,
        launch_plan_key TEXT NOT NULL,
        phase INTEGER NOT NULL,
        closure BLOB NOT NULL,
        workflow BLOB NOT NULL,
        inputs BLOB NOT NULL,
        outputs BLOB NOT NULL,
        error BLOB NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        request_id TEXT,
        labels TEXT NOT NULL,
        last_seq INTEGER NOT NULL,
        UNIQUE (project, domain, name)
    );
    CREATE UNIQUE INDEX executions_request_id ON executions (request_id)
        WHERE request_id IS NOT NULL;
    CREATE INDEX executions_phase ON executions (phase);
    CREATE TABLE nodes (
        eid INTEGER NOT NULL,
        node_id TEXT NOT NULL,
        phase INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        user_failures INTEGER NOT NULL,
        system_failures INTEGER NOT NULL,
        inputs BLOB NOT NULL,
        outputs BLOB NOT NULL,
        error BLOB NOT NULL,
        cache_status INTEGER NOT NULL,
        parent_id TEXT NOT NULL,
        task_key TEXT NOT NULL,
        is_dynamic INTEGER NOT NULL,
        detail TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (eid, node_id)
    ) WITHOUT ROWID;
    CREATE TABLE dynamic_specs (
        eid INTEGER NOT NULL,
        node_id TEXT NOT NULL,
        closure BLOB NOT NULL,
        depth INTEGER NOT NULL,
        PRIMARY KEY (eid, node_id)
    ) WITHOUT ROWID;
    CREATE TABLE events (
        eid INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        body BLOB NOT NULL,
        PRIMARY KEY (eid, seq)
    ) WITHOUT ROWID;
    CREATE TABLE cache (
        key TEXT PRIMARY KEY,
        outputs BLOB NOT NULL,
        eid INTEGER NOT NULL,
        node_id TEXT NOT NULL,
        created_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE cache_reservations (
        key TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        expires_at REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # 2: the node counts of a finished execution, so that reading it never scans its nodes.
    """
    ALTER TABLE executions ADD COLUMN counts TEXT NOT NULL DEFAULT '';
    """,
)

_EXEC_COLUMNS = (
    "eid, project, domain, name, workflow_key, launch_plan_key, phase, closure, workflow, "
    "inputs, outputs, error, created_at, updated_at, request_id, labels, last_seq, counts"
)
_NODE_COLUMNS = (
    "eid, node_id, phase, attempt, user_failures, system_failures, inputs, outputs, error, "
    "cache_status, parent_id, task_key, is_dynamic, detail, created_at, updated_at"
)


def _exec_from_row(row: Any) -> ExecutionRecord:
    (
        eid,
        project,
        domain,
        name,
        wkey,
        lkey,
        phase,
        closure,
        workflow,
        inputs,
        outputs,
        error,
        created,
        updated,
        request_id,
        labels,
        last_seq,
        counts,
    ) = row
    return ExecutionRecord(
        eid=int(eid),
        project=str(project),
        domain=str(domain),
        name=str(name),
        workflow_key=str(wkey),
        launch_plan_key=str(lkey),
        phase=int(phase),
        closure=bytes(closure),
        workflow=bytes(workflow),
        inputs=bytes(inputs),
        outputs=bytes(outputs),
        error=bytes(error),
        created_at=float(created),
        updated_at=float(updated),
        request_id=str(request_id or ""),
        labels=json.loads(str(labels)),
        last_seq=int(last_seq),
        counts=json.loads(counts) if counts else None,
    )


def _node_from_row(row: Any) -> NodeRecord:
    (
        eid,
        node_id,
        phase,
        attempt,
        uf,
        sf,
        inputs,
        outputs,
        error,
        cache_status,
        parent_id,
        task_key,
        is_dynamic,
        detail,
        created,
        updated,
    ) = row
    return NodeRecord(
        eid=int(eid),
        node_id=str(node_id),
        phase=int(phase),
        attempt=int(attempt),
        user_failures=int(uf),
        system_failures=int(sf),
        inputs=bytes(inputs),
        outputs=bytes(outputs),
        error=bytes(error),
        cache_status=int(cache_status),
        parent_id=str(parent_id),
        task_key=str(task_key),
        is_dynamic=bool(is_dynamic),
        detail=str(detail),
        created_at=float(created),
        updated_at=float(updated),
    )


class SqliteStore(Store):
    """A `Store` in one SQLite file.

    One connection writes (serialized by a lock); each thread that reads gets its own
    connection, so API reads never wait for a scheduler commit (WAL).
    """

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._writer = self._connect()
        self._migrate()

    # -- connections ---------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode is durable across process crashes (a SIGKILL of the engine); only
        # an OS crash may lose the last commits.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=10000")
        self._all.append(conn)
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            with self._lock:
                conn = self._connect()
            self._local.conn = conn
        return conn

    def _migrate(self) -> None:
        with self._lock:
            w = self._writer
            w.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = w.execute("SELECT max(version) FROM schema_version").fetchone()
            current = int(row[0] or 0)
            for version, script in enumerate(MIGRATIONS, start=1):
                if version <= current:
                    continue
                w.execute("BEGIN IMMEDIATE")
                try:
                    for statement in script.split(";"):
                        if statement.strip():
                            w.execute(statement)
                    w.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
                    w.execute("COMMIT")
                except BaseException:
                    w.execute("ROLLBACK")
                    raise

    def schema_version(self) -> int:
        """The schema version the file is at."""
        row = self._reader().execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    # -- templates -----------------------------------------------------------------------
    def put_templates(self, items: Sequence[tuple[TemplateKind, str, str, bytes]]) -> list[bool]:
        created: list[bool] = []
        with self._lock:
            w = self._writer
            w.execute("BEGIN IMMEDIATE")
            try:
                seq_row = w.execute("SELECT coalesce(max(created_seq), 0) FROM templates")
                seq = int(seq_row.fetchone()[0])
                for kind, key, digest, body in items:
                    row = w.execute(
                        "SELECT digest FROM templates WHERE kind = ? AND key = ?", (int(kind), key)
                    ).fetchone()
                    if row is None:
                        seq += 1
                        w.execute(
                            "INSERT INTO templates (kind, key, digest, body, created_seq) "
                            "VALUES (?, ?, ?, ?, ?)",
                            (int(kind), key, digest, body, seq),
                        )
                        created.append(True)
                    elif row[0] == digest:
                        created.append(False)
                    else:
                        raise AlreadyExists(
                            f"{kind.name.lower()} {key!r} is already registered with different "
                            "content; registered versions are immutable: register a new version"
                        )
                w.execute("COMMIT")
            except BaseException:
                w.execute("ROLLBACK")
                raise
        return created

    def get_template(self, kind: TemplateKind, key: str) -> bytes | None:
        row = (
            self._reader()
            .execute("SELECT body FROM templates WHERE kind = ? AND key = ?", (int(kind), key))
            .fetchone()
        )
        return None if row is None else bytes(row[0])

    def latest_template_key(self, kind: TemplateKind, prefix: str) -> str | None:
        row = (
            self._reader()
            .execute(
                "SELECT key FROM templates WHERE kind = ? AND substr(key, 1, ?) = ? "
                "ORDER BY created_seq DESC LIMIT 1",
                (int(kind), len(prefix), prefix),
            )
            .fetchone()
        )
        return None if row is None else str(row[0])

    def list_templates(
        self, kind: TemplateKind, prefix: str, limit: int, offset: int
    ) -> list[bytes]:
        rows = (
            self._reader()
            .execute(
                "SELECT body FROM templates WHERE kind = ? AND substr(key, 1, ?) = ? "
                "ORDER BY created_seq DESC LIMIT ? OFFSET ?",
                (int(kind), len(prefix), prefix, limit, offset),
            )
            .fetchall()
        )
        return [bytes(r[0]) for r in rows]

    # -- executions ----------------------------------------------------------------------
    def create_execution(self, record: ExecutionRecord, first_event: bytes) -> ExecutionRecord:
        with self._lock:
            w = self._writer
            w.execute("BEGIN IMMEDIATE")
            try:
                if record.request_id:
                    row = w.execute(
                        f"SELECT {_EXEC_COLUMNS} FROM executions WHERE request_id = ?",
                        (record.request_id,),
                    ).fetchone()
                    if row is not None:
                        w.execute("COMMIT")
                        return _exec_from_row(row)
                taken = w.execute(
                    "SELECT 1 FROM executions WHERE project = ? AND domain = ? AND name = ?",
                    (record.project, record.domain, record.name),
                ).fetchone()
                if taken is not None:
                    raise AlreadyExists(
                        f"execution {record.project}/{record.domain}/{record.name} already exists"
                    )
                cur = w.execute(
                    "INSERT INTO executions (project, domain, name, workflow_key, launch_plan_key, "
                    "phase, closure, workflow, inputs, outputs, error, created_at, updated_at, "
                    "request_id, labels, last_seq) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.project,
                        record.domain,
                        record.name,
                        record.workflow_key,
                        record.launch_plan_key,
                        record.phase,
                        record.closure,
                        record.workflow,
                        record.inputs,
                        record.outputs,
                        record.error,
                        record.created_at,
                        record.updated_at,
                        record.request_id or None,
                        json.dumps(record.labels, sort_keys=True),
                        1,
                    ),
                )
                eid = int(cur.lastrowid or 0)
                w.execute(
                    "INSERT INTO events (eid, seq, body) VALUES (?, 1, ?)", (eid, first_event)
                )
                w.execute("COMMIT")
            except BaseException:
                w.execute("ROLLBACK")
                raise
        record.eid = eid
        record.last_seq = 1
        return record

    def get_execution(self, project: str, domain: str, name: str) -> ExecutionRecord | None:
        row = (
            self._reader()
            .execute(
                f"SELECT {_EXEC_COLUMNS} FROM executions "
                "WHERE project = ? AND domain = ? AND name = ?",
                (project, domain, name),
            )
            .fetchone()
        )
        return None if row is None else _exec_from_row(row)

    def get_execution_by_eid(self, eid: int) -> ExecutionRecord | None:
        row = (
            self._reader()
            .execute(f"SELECT {_EXEC_COLUMNS} FROM executions WHERE eid = ?", (eid,))
            .fetchone()
        )
        return None if row is None else _exec_from_row(row)

    def list_executions(
        self, project: str, domain: str, phases: Iterable[int], limit: int, offset: int
    ) -> list[ExecutionRecord]:
        wanted = list(phases)
        sql = f"SELECT {_EXEC_COLUMNS} FROM executions WHERE project = ? AND domain = ?"
        params: list[object] = [project, domain]
        if wanted:
            sql += f" AND phase IN ({','.join('?' * len(wanted))})"
            params.extend(wanted)
        sql += " ORDER BY eid DESC LIMIT ? OFFSET ?"
        params.extend([limit, offset])
        return [_exec_from_row(r) for r in self._reader().execute(sql, params).fetchall()]

    def unfinished_executions(self) -> list[ExecutionRecord]:
        rows = (
            self._reader()
            .execute(f"SELECT {_EXEC_COLUMNS} FROM executions WHERE phase IN (1, 2) ORDER BY eid")
            .fetchall()
        )
        return [_exec_from_row(r) for r in rows]

    # -- nodes, specs, events ------------------------------------------------------------
    def node_records(self, eid: int) -> list[NodeRecord]:
        rows = (
            self._reader()
            .execute(f"SELECT {_NODE_COLUMNS} FROM nodes WHERE eid = ?", (eid,))
            .fetchall()
        )
        return [_node_from_row(r) for r in rows]

    def get_node(self, eid: int, node_id: str) -> NodeRecord | None:
        row = (
            self._reader()
            .execute(
                f"SELECT {_NODE_COLUMNS} FROM nodes WHERE eid = ? AND node_id = ?", (eid, node_id)
            )
            .fetchone()
        )
        return None if row is None else _node_from_row(row)

    def list_nodes(
        self, eid: int, parent_id: str | None, limit: int, offset: int
    ) -> list[NodeRecord]:
        sql = f"SELECT {_NODE_COLUMNS} FROM nodes WHERE eid = ?"
        params: list[object] = [eid]
        if parent_id is not None:
            sql += " AND parent_id = ?"
            params.append(parent_id)
        sql += " ORDER BY node_id LIMIT ? OFFSET ?"
        params.extend([limit, offset])
        return [_node_from_row(r) for r in self._reader().execute(sql, params).fetchall()]

    def dynamic_specs(self, eid: int) -> dict[str, tuple[bytes, int]]:
        rows = (
            self._reader()
            .execute("SELECT node_id, closure, depth FROM dynamic_specs WHERE eid = ?", (eid,))
            .fetchall()
        )
        return {str(r[0]): (bytes(r[1]), int(r[2])) for r in rows}

    def events(self, eid: int, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        rows = (
            self._reader()
            .execute(
                "SELECT seq, body FROM events WHERE eid = ? AND seq > ? ORDER BY seq LIMIT ?",
                (eid, after_seq, limit),
            )
            .fetchall()
        )
        return [(int(r[0]), bytes(r[1])) for r in rows]

    # -- cache ---------------------------------------------------------------------------
    def cache_get_many(self, keys: Sequence[str]) -> dict[str, CacheEntry]:
        found: dict[str, CacheEntry] = {}
        conn = self._reader()
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            rows = conn.execute(
                "SELECT key, outputs, eid, node_id, created_at FROM cache "
                f"WHERE key IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            for key, outputs, eid, node_id, created in rows:
                found[str(key)] = CacheEntry(
                    str(key), bytes(outputs), int(eid), str(node_id), float(created)
                )
        return found

    def cache_reserve(self, key: str, owner: str, now: float, ttl: float) -> str:
        with self._lock:
            w = self._writer
            w.execute("BEGIN IMMEDIATE")
            try:
                row = w.execute(
                    "SELECT owner, expires_at FROM cache_reservations WHERE key = ?", (key,)
                ).fetchone()
                if row is None or row[0] == owner or float(row[1]) < now:
                    w.execute(
                        "INSERT OR REPLACE INTO cache_reservations (key, owner, expires_at) "
                        "VALUES (?, ?, ?)",
                        (key, owner, now + ttl),
                    )
                    holder = owner
                else:
                    holder = str(row[0])
                w.execute("COMMIT")
            except BaseException:
                w.execute("ROLLBACK")
                raise
        return holder

    # -- writes --------------------------------------------------------------------------
    def apply(self, batch: WriteBatch) -> None:
        if not batch:
            return
        with self._lock:
            w = self._writer
            w.execute("BEGIN IMMEDIATE")
            try:
                if batch.nodes:
                    w.executemany(
                        f"INSERT OR REPLACE INTO nodes ({_NODE_COLUMNS}) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        batch.nodes,
                    )
                if batch.node_updates:
                    w.executemany(
                        "UPDATE nodes SET phase = ?, attempt = ?, user_failures = ?, "
                        "system_failures = ?, outputs = ?, error = ?, cache_status = ?, "
                        "is_dynamic = ?, detail = ?, updated_at = ? WHERE eid = ? AND node_id = ?",
                        batch.node_updates,
                    )
                if batch.dynamic_specs:
                    w.executemany(
                        "INSERT OR IGNORE INTO dynamic_specs (eid, node_id, closure, depth) "
                        "VALUES (?, ?, ?, ?)",
                        batch.dynamic_specs,
                    )
                if batch.events:
                    w.executemany(
                        "INSERT INTO events (eid, seq, body) VALUES (?, ?, ?)", batch.events
                    )
                if batch.cache_entries:
                    w.executemany(
                        "INSERT OR IGNORE INTO cache (key, outputs, eid, node_id, created_at) "
                        "VALUES (?, ?, ?, ?, ?)",
                        [
                            (c.key, c.outputs, c.eid, c.node_id, c.created_at)
                            for c in batch.cache_entries
                        ],
                    )
                if batch.released_reservations:
                    w.executemany(
                        "DELETE FROM cache_reservations WHERE key = ?",
                        [(k,) for k in batch.released_reservations],
                    )
                for e in batch.executions:
                    w.execute(
                        "UPDATE executions SET phase = ?, outputs = ?, error = ?, updated_at = ?, "
                        "last_seq = ?, counts = ? WHERE eid = ?",
                        (
                            e.phase,
                            e.outputs,
                            e.error,
                            e.updated_at,
                            e.last_seq,
                            json.dumps(e.counts, sort_keys=True) if e.counts else "",
                            e.eid,
                        ),
                    )
                w.execute("COMMIT")
            except BaseException:
                w.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
