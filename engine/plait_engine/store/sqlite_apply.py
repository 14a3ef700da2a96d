"""The commit of a scheduler pass into SQLite: fenced by epochs, idempotent by token."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from plait_engine import ids
from plait_engine.store.errors import OwnershipLost
from plait_engine.store.event_rows import event_row, row_node
from plait_engine.store.records import ApplyResult, WriteBatch
from plait_engine.store.sqlite_schema import ABORTED, NODE_COLUMNS, OPEN, counts_text, node_row


def _fence(c: sqlite3.Connection, batch: WriteBatch, result: ApplyResult) -> dict[int, int]:
    """The last event sequence of every execution of the batch still to write; raises
    `OwnershipLost` when an epoch is stale. Executions that already carry their writes' token
    are left out (their sequence goes into `result`)."""
    last: dict[int, int] = {}
    lost: list[int] = []
    for eid, w in batch.executions.items():
        row = c.execute(
            "SELECT epoch, last_seq, last_batch FROM executions WHERE eid = ?", (eid,)
        ).fetchone()
        if row is None or int(row[0]) != w.epoch:
            lost.append(eid)
        elif w.token and row[2] == w.token:
            result.last_seq[eid] = int(row[1])
        else:
            last[eid] = int(row[1])
    if lost:
        raise OwnershipLost(lost)
    return last


def apply_batch(batch: WriteBatch, now: float, c: sqlite3.Connection) -> ApplyResult:
    result = ApplyResult()
    last = _fence(c, batch, result)
    nodes: list[tuple[Any, ...]] = []
    updates: list[tuple[Any, ...]] = []
    events: list[tuple[int, int, bytes, str | None]] = []
    specs: list[tuple[int, str, bytes, int]] = []
    for eid, w in batch.executions.items():
        if eid not in last:
            continue
        nodes.extend(node_row(n) for n in w.nodes)
        updates.extend(
            (u.phase, u.attempt, u.user_failures, u.system_failures, u.outputs, u.error,
             u.cache_status, u.is_dynamic, u.detail, u.updated_at, eid, u.node_id)
            for u in w.node_updates
        )  # fmt: skip
        seq = last[eid]
        if w.events:  # one row for the pass's events (see `event_rows`)
            seq += len(w.events)
            node = row_node(w.event_shared, w.events)
            events.append((eid, seq, event_row(w.event_shared, w.events), node))
        result.last_seq[eid] = seq
        specs.extend((eid, s.node_id, s.closure, s.depth) for s in w.dynamic_specs)
    if nodes:
        c.executemany(
            f"INSERT OR REPLACE INTO nodes ({NODE_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            nodes,
        )
    if updates:
        c.executemany(
            "UPDATE nodes SET phase = ?, attempt = ?, user_failures = ?, system_failures = ?, "
            "outputs = ?, error = ?, cache_status = ?, is_dynamic = ?, detail = ?, "
            "updated_at = ? WHERE eid = ? AND node_id = ?",
            updates,
        )
    if specs:
        c.executemany(
            "INSERT OR IGNORE INTO dynamic_specs (eid, node_id, closure, depth) "
            "VALUES (?, ?, ?, ?)",
            specs,
        )
    if events:
        c.executemany("INSERT INTO events (eid, seq, body, node_id) VALUES (?, ?, ?, ?)", events)
    _apply_executions(c, batch, last, result)
    _apply_cache(c, batch, now, result)
    return result


def _apply_executions(
    c: sqlite3.Connection, batch: WriteBatch, todo: Mapping[int, int], result: ApplyResult
) -> None:
    for eid, w in batch.executions.items():
        if eid not in todo:
            continue
        sets = ["last_seq = ?", "updated_at = max(updated_at, ?)", "last_batch = ?"]
        params: list[object] = [result.last_seq[eid], w.updated_at, w.token]
        if w.phase is not None:
            sets.append("phase = ?")
            params.append(w.phase)
            if w.phase in ids.TERMINAL_EXECUTION_PHASES:
                sets.append("owner = '', lease_expires_at = 0")
                # Whatever of it is still unfinished ends with it.
                c.execute(
                    f"UPDATE nodes SET phase = {ABORTED} WHERE eid = ? AND phase IN ({OPEN})",
                    (eid,),
                )
        if w.outputs is not None:
            sets.append("outputs = ?")
            params.append(w.outputs)
        if w.error is not None:
            sets.append("error = ?")
            params.append(w.error)
        if w.counts is not None:
            sets.append("counts = ?")
            params.append(counts_text(w.counts))
        params.append(eid)
        c.execute(f"UPDATE executions SET {', '.join(sets)} WHERE eid = ?", params)


def _apply_cache(c: sqlite3.Connection, batch: WriteBatch, now: float, result: ApplyResult) -> None:
    if batch.cache_entries:
        c.executemany(
            "INSERT OR IGNORE INTO cache (key, outputs, eid, node_id, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [(e.key, e.outputs, e.eid, e.node_id, e.created_at) for e in batch.cache_entries],
        )
    if batch.released:
        c.executemany(
            "DELETE FROM cache_reservations WHERE key = ?", [(k,) for k in batch.released]
        )
    for r in batch.reservations:
        row = c.execute(
            "SELECT owner, expires_at FROM cache_reservations WHERE key = ?", (r.key,)
        ).fetchone()
        if row is None or row[0] == r.holder or float(row[1]) < now:
            c.execute(
                "INSERT OR REPLACE INTO cache_reservations (key, owner, expires_at) "
                "VALUES (?, ?, ?)",
                (r.key, r.holder, r.expires_at),
            )
            result.holders[r.key] = r.holder
        else:
            result.holders[r.key] = str(row[0])
