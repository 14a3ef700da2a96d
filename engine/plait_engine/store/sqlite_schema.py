"""The SQLite schema as versioned migrations.

Each entry upgrades the schema by one version; never edit a released entry, append a new one.
"""

from __future__ import annotations

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
)
