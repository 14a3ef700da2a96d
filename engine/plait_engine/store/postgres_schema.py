"""The PostgreSQL schema as versioned migrations, how they are applied, and how rows map to
records.

Migrations run in one transaction under an advisory lock, so that engine processes starting at
once against one database migrate it once: the first takes the lock and upgrades, the others
wait, then find nothing to do. Each entry upgrades the schema by one version; never edit a
released entry, append a new one.

Keys compared or ordered by the engine (node ids, template and cache keys) use the "C"
collation: byte order, as SQLite and Python compare strings, whatever the database's locale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from plaitidl.core.v1 import execution_pb2
from psycopg import AsyncConnection

from plait_engine import ids
from plait_engine.store.errors import StoreError
from plait_engine.store.records import ExecutionRecord, NodeRecord, zero_counts

# Any 64-bit number of our own: the advisory lock migrations are applied under.
MIGRATION_LOCK = 0x706C616974  # "plait"

MIGRATIONS: tuple[str, ...] = (
    # 1: everything of the SQLite schema's version 4, payloads in a table of their own (the
    # executions row is rewritten by every commit; its large columns need not be).
    # Phases in partial indexes: unfinished executions are 1, 2 (QUEUED, RUNNING); finished
    # ones 3, 4, 5 (SUCCEEDED, FAILED, ABORTED).
    """
    CREATE TABLE templates (
        kind integer NOT NULL,
        key text COLLATE "C" NOT NULL,
        digest text NOT NULL,
        body bytea NOT NULL,
        created_seq bigint GENERATED ALWAYS AS IDENTITY,
        PRIMARY KEY (kind, key)
    );
    CREATE INDEX templates_order ON templates (kind, created_seq);
    CREATE TABLE executions (
        eid bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        project text NOT NULL,
        domain text NOT NULL,
        name text NOT NULL,
        workflow_key text COLLATE "C" NOT NULL,
        launch_plan_key text NOT NULL,
        phase integer NOT NULL,
        error bytea NOT NULL,
        created_at double precision NOT NULL,
        updated_at double precision NOT NULL,
        request_id text,
        labels jsonb NOT NULL,
        last_seq bigint NOT NULL,
        counts jsonb NOT NULL,
        owner text NOT NULL,
        epoch bigint NOT NULL,
        lease_expires_at double precision NOT NULL,
        terminate_reason text NOT NULL,
        last_batch text NOT NULL,
        UNIQUE (project, domain, name)
    ) WITH (fillfactor = 80);
    CREATE UNIQUE INDEX executions_request_id ON executions (request_id)
        WHERE request_id IS NOT NULL;
    CREATE INDEX executions_unfinished ON executions (eid) WHERE phase IN (1, 2);
    CREATE INDEX executions_finished ON executions (updated_at) WHERE phase IN (3, 4, 5);
    CREATE INDEX executions_scope ON executions (project, domain, eid);
    CREATE TABLE execution_payloads (
        eid bigint PRIMARY KEY,
        closure bytea NOT NULL,
        workflow bytea NOT NULL,
        inputs bytea NOT NULL,
        outputs bytea NOT NULL
    );
    CREATE TABLE nodes (
        eid bigint NOT NULL,
        node_id text COLLATE "C" NOT NULL,
        phase integer NOT NULL,
        attempt integer NOT NULL,
        user_failures integer NOT NULL,
        system_failures integer NOT NULL,
        inputs bytea NOT NULL,
        outputs bytea NOT NULL,
        error bytea NOT NULL,
        cache_status integer NOT NULL,
        parent_id text COLLATE "C" NOT NULL,
        task_key text NOT NULL,
        is_dynamic boolean NOT NULL,
        detail text NOT NULL,
        created_at double precision NOT NULL,
        updated_at double precision NOT NULL,
        name text NOT NULL,
        PRIMARY KEY (eid, node_id)
    ) WITH (fillfactor = 80);
    CREATE INDEX nodes_parent ON nodes (eid, parent_id, node_id);
    CREATE TABLE dynamic_specs (
        eid bigint NOT NULL,
        node_id text COLLATE "C" NOT NULL,
        closure bytea NOT NULL,
        depth integer NOT NULL,
        PRIMARY KEY (eid, node_id)
    );
    CREATE TABLE events (
        eid bigint NOT NULL,
        seq bigint NOT NULL,
        body bytea NOT NULL,
        PRIMARY KEY (eid, seq)
    );
    CREATE TABLE cache (
        key text COLLATE "C" PRIMARY KEY,
        outputs bytea NOT NULL,
        eid bigint NOT NULL,
        node_id text NOT NULL,
        created_at double precision NOT NULL
    );
    CREATE TABLE cache_reservations (
        key text COLLATE "C" PRIMARY KEY,
        owner text NOT NULL,
        expires_at double precision NOT NULL
    );
    CREATE TABLE logs (
        pos bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        eid bigint NOT NULL,
        node_id text COLLATE "C" NOT NULL,
        attempt integer NOT NULL,
        stream integer NOT NULL,
        time double precision NOT NULL,
        text text NOT NULL
    );
    CREATE INDEX logs_node ON logs (eid, node_id, pos);
    """,
    # 2: named leases, schedule states, the shared dispatch and results queues, cache by age,
    # finished executions by age (retention).
    """
    CREATE TABLE leases (
        name text COLLATE "C" PRIMARY KEY,
        owner text NOT NULL,
        expires_at double precision NOT NULL
    );
    CREATE TABLE schedules (
        key text COLLATE "C" PRIMARY KEY,
        paused boolean NOT NULL,
        last_tick double precision NOT NULL,
        last_execution text NOT NULL
    );
    CREATE TABLE dispatch_queue (
        assignment_id text COLLATE "C" PRIMARY KEY,
        eid bigint NOT NULL,
        queue text COLLATE "C" NOT NULL,
        assignment bytea NOT NULL,
        created_at double precision NOT NULL,
        taken_by text NOT NULL DEFAULT '',
        taken_until double precision NOT NULL DEFAULT 0,
        cancelled boolean NOT NULL DEFAULT false
    );
    CREATE INDEX dispatch_queue_ready ON dispatch_queue (queue, created_at)
        WHERE NOT cancelled;
    CREATE TABLE results_queue (
        pos bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        assignment_id text NOT NULL,
        eid bigint NOT NULL,
        result bytea NOT NULL,
        worker_id text NOT NULL,
        created_at double precision NOT NULL
    );
    CREATE INDEX results_queue_eid ON results_queue (eid, pos);
    CREATE INDEX cache_age ON cache (created_at);
    """,
    # 3: the node an event is about (the console reads one node's transitions without scanning
    # the execution's events); events stored before have none.
    """
    ALTER TABLE events ADD COLUMN node_id text COLLATE "C";
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
# The array types of NODE_COLUMNS, for INSERT ... SELECT FROM unnest(...).
NODE_ARRAYS = (
    "bigint[]", "text[]", "integer[]", "integer[]", "integer[]", "integer[]", "bytea[]",
    "bytea[]", "bytea[]", "integer[]", "text[]", "text[]", "boolean[]", "text[]",
    "double precision[]", "double precision[]", "text[]",
)  # fmt: skip
UNFINISHED = ", ".join(str(p) for p in sorted(ids.UNFINISHED_EXECUTION_PHASES))
TERMINAL = ", ".join(str(p) for p in sorted(ids.TERMINAL_EXECUTION_PHASES))
OPEN = ", ".join(str(p) for p in sorted(ids.UNFINISHED_NODE_PHASES))
ABORTED = execution_pb2.NODE_PHASE_ABORTED


def unnest(types: Sequence[str]) -> str:
    """``unnest(%b::t1, %b::t2, ...)``: rows from one array parameter per column.

    Arrays go in binary (``%b``): psycopg packs their elements as they are, where the text
    format would escape every element (most of a large commit's CPU)."""
    return "unnest(" + ", ".join(f"%b::{t}" for t in types) + ")"


def columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows turned into one list per column (what `unnest` takes)."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(c) for c in zip(*rows, strict=True)]


async def migrate(conn: AsyncConnection[Any]) -> int:
    """Bring the schema up to date, once however many processes call it at once.

    Returns:
        The schema version.

    Raises:
        StoreError: The database has a newer schema than this engine knows.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_version")
        row = await cur.fetchone()
        current = int(row[0]) if row else 0
        if current > len(MIGRATIONS):
            raise StoreError(
                f"the database's schema is version {current}, newer than this engine knows "
                f"({len(MIGRATIONS)}): upgrade plait"
            )
        for version, script in enumerate(MIGRATIONS, start=1):
            if version > current:
                await conn.execute(script.encode())
                await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
    return len(MIGRATIONS)


def exec_from_row(row: Sequence[Any]) -> ExecutionRecord:
    """An `ExecutionRecord` from a row of `EXEC_COLUMNS`."""
    counts = zero_counts()
    counts.update(row[13] or {})
    return ExecutionRecord(
        eid=int(row[0]),
        project=row[1],
        domain=row[2],
        name=row[3],
        workflow_key=row[4],
        launch_plan_key=row[5],
        phase=int(row[6]),
        error=bytes(row[7]),
        created_at=float(row[8]),
        updated_at=float(row[9]),
        request_id=row[10] or "",
        labels=dict(row[11]),
        last_seq=int(row[12]),
        counts=counts,
        owner=row[14],
        epoch=int(row[15]),
        lease_expires_at=float(row[16]),
        terminate_reason=row[17],
    )


def node_from_row(row: Sequence[Any]) -> NodeRecord:
    """A `NodeRecord` from a row of `NODE_COLUMNS`."""
    return NodeRecord(
        eid=int(row[0]),
        node_id=row[1],
        phase=int(row[2]),
        attempt=int(row[3]),
        user_failures=int(row[4]),
        system_failures=int(row[5]),
        inputs=bytes(row[6]),
        outputs=bytes(row[7]),
        error=bytes(row[8]),
        cache_status=int(row[9]),
        parent_id=row[10],
        task_key=row[11],
        is_dynamic=bool(row[12]),
        detail=row[13],
        created_at=float(row[14]),
        updated_at=float(row[15]),
        name=row[16],
    )


def node_row(n: NodeRecord) -> tuple[Any, ...]:
    """The values of `NODE_COLUMNS` of a record."""
    return (
        n.eid, n.node_id, n.phase, n.attempt, n.user_failures, n.system_failures, n.inputs,
        n.outputs, n.error, n.cache_status, n.parent_id, n.task_key, n.is_dynamic, n.detail,
        n.created_at, n.updated_at, n.name,
    )  # fmt: skip
