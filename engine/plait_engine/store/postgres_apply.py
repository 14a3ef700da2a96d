"""The commit of a scheduler pass into PostgreSQL: one transaction, fenced by epochs, idempotent
by token, with a fixed number of statements whatever the batch's size.

The whole runs in pipeline mode: statements are sent without waiting for each other's results,
so a commit is two round trips (BEGIN and the fence; the writes and COMMIT), whatever its size.

1. The fence: one ``SELECT ... FOR UPDATE`` locks the batch's executions (in eid order, so two
   commits never deadlock) and reads their epoch, last event sequence and last token. A stale
   epoch refuses the whole batch (`OwnershipLost`); a token already applied skips that
   execution. The lock also orders this commit with a competing claim or commit.
2. The writes, sent together: each kind of row is one multi-row statement
   over arrays (``INSERT ... SELECT FROM unnest(...)``, ``UPDATE ... FROM unnest(...)``).
   Event sequences continue from the locked ``last_seq``.
3. Cache reservations (only batches that ask for them): rows are made and locked, decided in
   order as SQLite does, and written back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection

from plait_engine import ids
from plait_engine.store.errors import OwnershipLost
from plait_engine.store.event_rows import event_row, row_node
from plait_engine.store.postgres_schema import (
    ABORTED,
    NODE_ARRAYS,
    NODE_COLUMNS,
    OPEN,
    TERMINAL,
    columns,
    node_row,
    unnest,
)
from plait_engine.store.records import ApplyResult, ExecutionWrites, WriteBatch

_FENCE = (
    "SELECT eid, epoch, last_seq, last_batch FROM executions WHERE eid = ANY(%b::bigint[]) "
    "ORDER BY eid FOR UPDATE"
)
_NODE_SET = ", ".join(f"{c} = EXCLUDED.{c}" for c in NODE_COLUMNS.split(", ")[2:])
_INSERT_NODES = (
    f"INSERT INTO nodes ({NODE_COLUMNS}) SELECT * FROM {unnest(NODE_ARRAYS)} "
    f"ON CONFLICT (eid, node_id) DO UPDATE SET {_NODE_SET}"
)
_UPDATE_ARRAYS = (
    "bigint[]", "text[]", "integer[]", "integer[]", "integer[]", "integer[]", "bytea[]",
    "bytea[]", "integer[]", "boolean[]", "text[]", "double precision[]",
)  # fmt: skip
_UPDATE_NODES = (
    "UPDATE nodes AS n SET phase = u.phase, attempt = u.attempt, user_failures = u.uf, "
    "system_failures = u.sf, outputs = u.outputs, error = u.error, cache_status = u.cs, "
    "is_dynamic = u.dyn, detail = u.detail, updated_at = u.updated_at "
    f"FROM {unnest(_UPDATE_ARRAYS)} AS u(eid, node_id, phase, attempt, uf, sf, outputs, error, "
    "cs, dyn, detail, updated_at) WHERE n.eid = u.eid AND n.node_id = u.node_id"
)
_INSERT_SPECS = (
    "INSERT INTO dynamic_specs (eid, node_id, closure, depth) "
    f"SELECT * FROM {unnest(('bigint[]', 'text[]', 'bytea[]', 'integer[]'))} "
    "ON CONFLICT DO NOTHING"
)
_INSERT_EVENTS = (
    "INSERT INTO events (eid, seq, body, node_id) "
    f"SELECT * FROM {unnest(('bigint[]', 'bigint[]', 'bytea[]', 'text[]'))}"
)
_UPDATE_EXECUTIONS = (
    "UPDATE executions AS e SET last_seq = v.last_seq, "
    "updated_at = greatest(e.updated_at, v.updated_at), last_batch = v.token, "
    "phase = coalesce(v.phase, e.phase), error = coalesce(v.error, e.error), "
    "counts = coalesce(v.counts::jsonb, e.counts), "
    f"owner = CASE WHEN v.phase IN ({TERMINAL}) THEN '' ELSE e.owner END, "
    f"lease_expires_at = CASE WHEN v.phase IN ({TERMINAL}) THEN 0 ELSE e.lease_expires_at END "
    "FROM "
    + unnest(
        ("bigint[]", "bigint[]", "double precision[]", "text[]", "integer[]", "bytea[]", "text[]")
    )
    + " AS v(eid, last_seq, updated_at, token, phase, error, counts) WHERE e.eid = v.eid"
)
_UPDATE_OUTPUTS = (
    "UPDATE execution_payloads AS p SET outputs = v.outputs "
    f"FROM {unnest(('bigint[]', 'bytea[]'))} AS v(eid, outputs) WHERE p.eid = v.eid"
)
# Whatever of a finished execution is still unfinished ends with it.
_ABORT_OPEN_NODES = (
    f"UPDATE nodes SET phase = {ABORTED} WHERE eid = ANY(%b::bigint[]) AND phase IN ({OPEN})"
)
_INSERT_CACHE = (
    "INSERT INTO cache (key, outputs, eid, node_id, created_at) "
    f"SELECT * FROM {unnest(('text[]', 'bytea[]', 'bigint[]', 'text[]', 'double precision[]'))} "
    "ON CONFLICT DO NOTHING"
)
_RELEASE = "DELETE FROM cache_reservations WHERE key = ANY(%b::text[])"
# A row per requested key (free when new), then every one locked, in key order.
_RESERVE_ROWS = (
    "INSERT INTO cache_reservations (key, owner, expires_at) "
    "SELECT k, '', 0 FROM unnest(%b::text[]) AS k ORDER BY k ON CONFLICT DO NOTHING"
)
_LOCK_RESERVATIONS = (
    "SELECT key, owner, expires_at FROM cache_reservations WHERE key = ANY(%b::text[]) "
    "ORDER BY key FOR UPDATE"
)
_WRITE_RESERVATIONS = (
    "UPDATE cache_reservations AS r SET owner = v.owner, expires_at = v.expires_at "
    f"FROM {unnest(('text[]', 'text[]', 'double precision[]'))} AS v(key, owner, expires_at) "
    "WHERE r.key = v.key"
)


@dataclass
class _Rows:
    """The rows of a batch, by statement."""

    nodes: dict[tuple[int, str], list[Any]] = field(default_factory=dict)
    updates: dict[tuple[int, str], tuple[Any, ...]] = field(default_factory=dict)
    specs: list[tuple[int, str, bytes, int]] = field(default_factory=list)
    events: list[tuple[int, int, bytes, str | None]] = field(default_factory=list)
    executions: list[tuple[Any, ...]] = field(default_factory=list)
    outputs: list[tuple[int, bytes]] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)

    def add(self, eid: int, w: ExecutionWrites, last_seq: int, result: ApplyResult) -> None:
        for n in w.nodes:  # the last record of a node wins, as with INSERT OR REPLACE
            self.nodes[(eid, n.node_id)] = list(node_row(n))
        for u in w.node_updates:
            state = (u.phase, u.attempt, u.user_failures, u.system_failures, u.outputs,
                     u.error, u.cache_status, u.is_dynamic, u.detail, u.updated_at)  # fmt: skip
            new = self.nodes.get((eid, u.node_id))
            if new is not None:  # recorded in this batch: the insert carries its last state
                new[2:6] = state[0:4]  # phase, attempt, failures
                new[7:10] = state[4:7]  # outputs, error, cache_status
                new[12:14] = state[7:9]  # is_dynamic, detail
                new[15] = state[9]  # updated_at
            else:  # the last update of a node is its state after the batch
                self.updates[(eid, u.node_id)] = (eid, u.node_id, *state)
        seq = last_seq
        if w.events:  # one row for the pass's events (see `event_rows`)
            seq += len(w.events)
            node = row_node(w.event_shared, w.events)
            self.events.append((eid, seq, event_row(w.event_shared, w.events), node))
        result.last_seq[eid] = seq
        self.specs.extend((eid, s.node_id, s.closure, s.depth) for s in w.dynamic_specs)
        counts = None if w.counts is None else json.dumps(dict(w.counts), sort_keys=True)
        self.executions.append((eid, seq, w.updated_at, w.token, w.phase, w.error, counts))
        if w.outputs is not None:
            self.outputs.append((eid, w.outputs))
        if w.phase in ids.TERMINAL_EXECUTION_PHASES:
            self.finished.append(eid)


async def _fence(
    conn: AsyncConnection[Any], batch: WriteBatch, result: ApplyResult
) -> dict[int, int]:
    """Lock the batch's executions; their last sequence, for those still to write.

    Raises:
        OwnershipLost: An epoch is stale or an execution is gone.
    """
    cur = await conn.execute(_FENCE, (list(batch.executions),))
    found = {int(r[0]): (int(r[1]), int(r[2]), r[3]) for r in await cur.fetchall()}
    lost: list[int] = []
    last: dict[int, int] = {}
    for eid, w in batch.executions.items():
        row = found.get(eid)
        if row is None or row[0] != w.epoch:
            lost.append(eid)
        elif w.token and row[2] == w.token:
            result.last_seq[eid] = row[1]  # applied before
        else:
            last[eid] = row[1]
    if lost:
        raise OwnershipLost(lost)
    return last


async def apply_batch(conn: AsyncConnection[Any], batch: WriteBatch, now: float) -> ApplyResult:
    """Apply a batch in the transaction open on `conn`, in pipeline mode: the transaction's
    BEGIN goes with the fence, its COMMIT with the writes (two round trips in all)."""
    result = ApplyResult()
    rows = _Rows()
    if batch.executions:
        last = await _fence(conn, batch, result)
        for eid, w in batch.executions.items():
            if eid in last:
                rows.add(eid, w, last[eid], result)
    statements: list[tuple[str, Any]] = [
        (_INSERT_NODES, columns(list(rows.nodes.values()), len(NODE_ARRAYS))),
        (_UPDATE_NODES, columns(list(rows.updates.values()), len(_UPDATE_ARRAYS))),
        (_INSERT_SPECS, columns(rows.specs, 4)),
        (_INSERT_EVENTS, columns(rows.events, 4)),
        (_UPDATE_EXECUTIONS, columns(rows.executions, 7)),
        (_UPDATE_OUTPUTS, columns(rows.outputs, 2)),
        (_ABORT_OPEN_NODES, [rows.finished]),
        (_INSERT_CACHE, columns(
            [(e.key, e.outputs, e.eid, e.node_id, e.created_at) for e in batch.cache_entries], 5
        )),
        (_RELEASE, [batch.released]),
    ]  # fmt: skip
    for sql, params in statements:
        if params[0]:
            await conn.execute(sql, params)
    if batch.reservations:
        await _reserve(conn, batch, now, result)
    return result


async def _reserve(
    conn: AsyncConnection[Any], batch: WriteBatch, now: float, result: ApplyResult
) -> None:
    """Decide the reservations in order: a key is taken when free, expired at `now` or held by
    the requester already; otherwise its holder stays."""
    keys = sorted({r.key for r in batch.reservations})
    await conn.execute(_RESERVE_ROWS, (keys,))
    cur = await conn.execute(_LOCK_RESERVATIONS, (keys,))
    held = {str(k): (str(o), float(x)) for k, o, x in await cur.fetchall()}
    changed: set[str] = set()
    for r in batch.reservations:
        owner, expires = held[r.key]
        if not owner or owner == r.holder or expires < now:
            held[r.key] = (r.holder, r.expires_at)
            changed.add(r.key)
            result.holders[r.key] = r.holder
        else:
            result.holders[r.key] = owner
    writes = [(k, *held[k]) for k in sorted(changed)]
    await conn.execute(_WRITE_RESERVATIONS, columns(writes, 3))
