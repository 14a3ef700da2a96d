"""The SQLite schema as versioned migrations, and how records map to its rows.

Each migration upgrades the schema by one version; never edit a released entry, append a new
one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from plaitidl.core.v1 import execution_pb2

from plait_engine import ids
from plait_engine.store.records import ExecutionRecord, NodeRecord, zero_counts

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
    # 3: ownership (owner, fencing epoch, lease), durable termination requests, idempotent
    # commits (the token of the last batch applied), and children of a node in id order.
    """
    ALTER TABLE executions ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    ALTER TABLE executions ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE executions ADD COLUMN lease_expires_at REAL NOT NULL DEFAULT 0;
    ALTER TABLE executions ADD COLUMN terminate_reason TEXT NOT NULL DEFAULT '';
    ALTER TABLE executions ADD COLUMN last_batch TEXT NOT NULL DEFAULT '';
    CREATE INDEX executions_scope ON executions (project, domain, eid);
    CREATE INDEX nodes_parent ON nodes (eid, parent_id, node_id);
    """,
    # 4: captured output of task attempts; nodes' display names.
    """
    ALTER TABLE nodes ADD COLUMN name TEXT NOT NULL DEFAULT '';
    CREATE TABLE logs (
        pos INTEGER PRIMARY KEY AUTOINCREMENT,
        eid INTEGER NOT NULL,
        node_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        stream INTEGER NOT NULL,
        time REAL NOT NULL,
        text TEXT NOT NULL
    );
    CREATE INDEX logs_node ON logs (eid, node_id, pos);
    """,
    # 5: named leases (the replica that runs retention, schedules); cache entries by age;
    # schedule states.
    """
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        expires_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX cache_age ON cache (created_at);
    CREATE INDEX executions_finished ON executions (phase, updated_at);
    CREATE TABLE schedules (
        key TEXT PRIMARY KEY,
        paused INTEGER NOT NULL,
        last_tick REAL NOT NULL,
        last_execution TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
    # 6: the shared dispatch queue and the results on their way to owners (many replicas).
    """
    CREATE TABLE dispatch_queue (
        assignment_id TEXT PRIMARY KEY,
        eid INTEGER NOT NULL,
        queue TEXT NOT NULL,
        assignment BLOB NOT NULL,
        created_at REAL NOT NULL,
        taken_by TEXT NOT NULL DEFAULT '',
        taken_until REAL NOT NULL DEFAULT 0,
        cancelled INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE INDEX dispatch_queue_ready ON dispatch_queue (queue, created_at);
    CREATE TABLE results_queue (
        pos INTEGER PRIMARY KEY AUTOINCREMENT,
        assignment_id TEXT NOT NULL,
        eid INTEGER NOT NULL,
        result BLOB NOT NULL,
        worker_id TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX results_queue_eid ON results_queue (eid, pos);
    """,
    # 7: the node an event is about, to read one node's transitions (its attempts) without
    # scanning the execution's events. Events stored before have none.
    """
    ALTER TABLE events ADD COLUMN node_id TEXT;
    CREATE INDEX events_node ON events (eid, node_id, seq) WHERE node_id IS NOT NULL;
    """,
)

EXEC_COLUMNS = (
    "eid, project, domain, name, workflow_key, launch_plan_key, phase, error, created_at, "
    "updated_at, request_id, labels, last_seq, counts, owner, epoch, lease_expires_at, "
    "terminate_reason"
)
NODE_COLUMNS = (
    "eid, node_id, phase, attempt, user_failures, system_failures, inputs, outputs, error, "
    "cache_status, parent_id, task_key, is_dynamic, detail, created_at, updated_at, name"
)
UNFINISHED = ", ".join(str(p) for p in sorted(ids.UNFINISHED_EXECUTION_PHASES))
TERMINAL = ", ".join(str(p) for p in sorted(ids.TERMINAL_EXECUTION_PHASES))
OPEN = ", ".join(str(p) for p in sorted(ids.UNFINISHED_NODE_PHASES))
ABORTED = execution_pb2.NODE_PHASE_ABORTED


def exec_from_row(row: Sequence[Any]) -> ExecutionRecord:
    counts = zero_counts()
    if row[13]:
        counts.update(json.loads(row[13]))
    return ExecutionRecord(
        eid=int(row[0]),
        project=str(row[1]),
        domain=str(row[2]),
        name=str(row[3]),
        workflow_key=str(row[4]),
        launch_plan_key=str(row[5]),
        phase=int(row[6]),
        error=bytes(row[7]),
        created_at=float(row[8]),
        updated_at=float(row[9]),
        request_id=str(row[10] or ""),
        labels=json.loads(str(row[11])),
        last_seq=int(row[12]),
        counts=counts,
        owner=str(row[14]),
        epoch=int(row[15]),
        lease_expires_at=float(row[16]),
        terminate_reason=str(row[17]),
    )


def node_from_row(row: Sequence[Any]) -> NodeRecord:
    return NodeRecord(
        eid=int(row[0]),
        node_id=str(row[1]),
        phase=int(row[2]),
        attempt=int(row[3]),
        user_failures=int(row[4]),
        system_failures=int(row[5]),
        inputs=bytes(row[6]),
        outputs=bytes(row[7]),
        error=bytes(row[8]),
        cache_status=int(row[9]),
        parent_id=str(row[10]),
        task_key=str(row[11]),
        is_dynamic=bool(row[12]),
        detail=str(row[13]),
        created_at=float(row[14]),
        updated_at=float(row[15]),
        name=str(row[16]),
    )


def node_row(n: NodeRecord) -> tuple[Any, ...]:
    return (
        n.eid, n.node_id, n.phase, n.attempt, n.user_failures, n.system_failures, n.inputs,
        n.outputs, n.error, n.cache_status, n.parent_id, n.task_key, n.is_dynamic, n.detail,
        n.created_at, n.updated_at, n.name,
    )  # fmt: skip


def counts_text(counts: Mapping[str, int]) -> str:
    return json.dumps(dict(counts), sort_keys=True)
