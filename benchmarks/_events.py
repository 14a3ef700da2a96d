"""Figures from an engine's data dir: node counts and latencies from the events table.

Definitions (all times are `ExecutionEvent.occurred_at`, stamped by the engine's scheduler
tick that made the transition, just before the tick's group commit):

- *ready*: when a task node could first be dispatched: the latest of its frame's start (the
  execution's RUNNING event for top-level nodes, the generator's DYNAMIC_RUNNING event for
  nodes of a dynamic spec, the parent node's first RUNNING event for subworkflow and branch
  frames) and the SUCCEEDED events of its upstream siblings (read from the compiled specs).
  Upstreams are known for top-level and dynamic-spec nodes; elsewhere (branch then-nodes,
  subworkflow nodes) the node is taken to have none, which holds for the workloads here.
- *dispatch*: the task node's RUNNING event of attempt 1 (the engine committed the
  assignment; it is handed to the executor right after the commit).
- *done*: the first SUCCEEDED / DYNAMIC_RUNNING / FAILED / RETRYING event of that attempt
  (the result has been committed).

- *start*: `NodeTransition.started_at` on the event that ends attempt 1: when the worker (or
  the in-process executor) started running it, as the worker reported.

Schedule-to-start is `start - dispatch`: the commit, the hand-off to the executor, waiting for a
free worker slot, the trip to the worker and its pick-up. `dispatch - ready` is the engine's
own scheduling delay; `done - ready` bounds a whole hop.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plaitidl.core.v1 import dynamic_job_pb2, events_pb2, execution_pb2

NP = execution_pb2
_DONE = {
    NP.NODE_PHASE_SUCCEEDED, NP.NODE_PHASE_DYNAMIC_RUNNING, NP.NODE_PHASE_FAILED,
    NP.NODE_PHASE_RETRYING,
}  # fmt: skip


@dataclass
class _Node:
    task: bool = False
    parent: str = ""
    first_running: float | None = None
    dyn_running: float | None = None
    succeeded: float | None = None
    dispatch1: float | None = None
    start1: float | None = None
    done1: float | None = None
    phase: int = 0


@dataclass
class RunFigures:
    """What one execution's events tell."""

    nodes: int = 0
    task_nodes: int = 0
    phase: str = ""
    events: int = 0
    first_event: float = 0.0
    last_event: float = 0.0
    ready_to_dispatch: list[float] = field(default_factory=list)
    dispatch_to_done: list[float] = field(default_factory=list)
    ready_to_done: list[float] = field(default_factory=list)
    dispatch_to_start: list[float] = field(default_factory=list)


def _path(prefix: str, local: str) -> str:
    return f"{prefix}/{local}" if prefix else local


def _upstreams(spec: dynamic_job_pb2.DynamicJobSpec, prefix: str, out: dict[str, set[str]]) -> None:
    from plait_engine import compiler

    ids = {n.id for n in spec.nodes}
    for n in spec.nodes:
        ups = {u for u in compiler.node_upstreams(n) if u in ids}
        out[_path(prefix, n.id)] = {_path(prefix, u) for u in ups}


def _read_pg(url: str, execution: str | None) -> tuple[int, bytes, list[bytes], list[Any]]:
    import psycopg

    with psycopg.connect(url) as conn:
        if execution is None:
            found = conn.execute("SELECT eid, phase FROM executions ORDER BY eid DESC").fetchone()
        else:
            found = conn.execute(
                "SELECT eid, phase FROM executions WHERE name = %s", (execution,)
            ).fetchone()
        assert found is not None, "no execution in the database"
        eid, phase = int(found[0]), int(found[1])
        closure = conn.execute(
            "SELECT closure FROM execution_payloads WHERE eid = %s", (eid,)
        ).fetchone()
        bodies = [bytes(r[0]) for r in conn.execute(
            "SELECT body FROM events WHERE eid = %s ORDER BY seq", (eid,))]  # fmt: skip
        specs = conn.execute(
            "SELECT node_id, closure FROM dynamic_specs WHERE eid = %s", (eid,)
        ).fetchall()
    return phase, bytes(closure[0]) if closure else b"", bodies, specs


def _read(data_dir: Path, execution: str | None) -> tuple[int, bytes, list[bytes], list[Any]]:
    conn = sqlite3.connect(f"file:{data_dir / 'plait.db'}?mode=ro", uri=True)
    try:
        if execution is None:
            row = conn.execute(
                "SELECT eid, phase, closure FROM executions ORDER BY eid DESC"
            ).fetchone()
        else:
            row = conn.execute(
                "SELECT eid, phase, closure FROM executions WHERE name = ?", (execution,)
            ).fetchone()
        eid, phase, closure = int(row[0]), int(row[1]), bytes(row[2])
        bodies = [bytes(r[0]) for r in conn.execute(
            "SELECT body FROM events WHERE eid = ? ORDER BY seq", (eid,))]  # fmt: skip
        specs = conn.execute(
            "SELECT node_id, closure FROM dynamic_specs WHERE eid = ?", (eid,)
        ).fetchall()
    finally:
        conn.close()
    return phase, closure, bodies, specs


def _replay(bodies: list[bytes], figs: RunFigures) -> tuple[dict[str, _Node], float]:
    """Each node's moments, from the event log; and when the execution started running."""
    nodes: dict[str, _Node] = {}
    exec_running = 0.0
    for body in bodies:
        ev = events_pb2.ExecutionEvent.FromString(body)
        t = ev.occurred_at.ToNanoseconds() / 1e9
        if not figs.first_event:
            figs.first_event = t
        figs.last_event = t
        figs.events += 1
        if ev.WhichOneof("transition") == "execution":
            if ev.execution.phase == execution_pb2.EXECUTION_PHASE_RUNNING and not exec_running:
                exec_running = t
            continue
        tr = ev.node
        n = nodes.get(tr.node_id)
        if n is None:
            n = nodes[tr.node_id] = _Node(parent=tr.parent_node_id)
        _note(n, tr, t)
    return nodes, exec_running


def _note(n: _Node, tr: Any, t: float) -> None:
    n.phase = tr.phase
    if tr.HasField("task_id"):
        n.task = True
    if tr.phase == NP.NODE_PHASE_RUNNING:
        if n.first_running is None:
            n.first_running = t
        if tr.attempt == 1 and n.dispatch1 is None:
            n.dispatch1 = t
    elif tr.phase in _DONE and n.dispatch1 is not None and n.done1 is None:
        n.done1 = t
        if tr.HasField("started_at"):
            n.start1 = tr.started_at.ToNanoseconds() / 1e9
    if tr.phase == NP.NODE_PHASE_DYNAMIC_RUNNING and n.dyn_running is None:
        n.dyn_running = t
    if tr.phase == NP.NODE_PHASE_SUCCEEDED and n.succeeded is None:
        n.succeeded = t


def analyze(
    data_dir: Path, execution: str | None = None, store_url: str | None = None
) -> RunFigures:
    """Read the events of one execution (the newest when `execution` is None), from the
    SQLite file of `data_dir` or, with `store_url`, from that PostgreSQL database."""
    from plait_engine.blob import LocalObjectStore, Payloads

    payloads = Payloads(LocalObjectStore(data_dir / "blobs"))
    if store_url:
        phase, closure, bodies, specs = _read_pg(store_url, execution)
    else:
        phase, closure, bodies, specs = _read(data_dir, execution)
    ups: dict[str, set[str]] = {}
    _upstreams(dynamic_job_pb2.DynamicJobSpec.FromString(payloads.unpack(closure)), "", ups)
    dynamic_frames: set[str] = set()
    for node_id, body in specs:
        dynamic_frames.add(str(node_id))
        spec = dynamic_job_pb2.DynamicJobSpec.FromString(payloads.unpack(bytes(body)))
        _upstreams(spec, str(node_id), ups)

    phase_name = execution_pb2.ExecutionPhase.Name(phase)  # type: ignore[arg-type]
    figs = RunFigures(phase=phase_name.removeprefix("EXECUTION_PHASE_"))
    nodes, exec_running = _replay(bodies, figs)

    def frame_start(prefix: str) -> float | None:
        if not prefix:
            return exec_running or figs.first_event
        p = nodes.get(prefix)
        if p is None:
            return None
        return p.dyn_running if prefix in dynamic_frames else p.first_running

    figs.nodes = len(nodes)
    for node_id, n in nodes.items():
        if not n.task:
            continue
        figs.task_nodes += 1
        start = frame_start(n.parent)
        if n.dispatch1 is None or n.done1 is None or start is None:
            continue
        ready = start
        for u in ups.get(node_id, ()):
            un = nodes.get(u)
            if un is not None and un.succeeded is not None:
                ready = max(ready, un.succeeded)
        figs.ready_to_dispatch.append(n.dispatch1 - ready)
        figs.dispatch_to_done.append(n.done1 - n.dispatch1)
        figs.ready_to_done.append(n.done1 - ready)
        if n.start1 is not None:
            figs.dispatch_to_start.append(n.start1 - n.dispatch1)
    return figs


def dir_bytes(path: Path) -> int:
    """Bytes of every file under `path` (sqlite db, wal, shm, blobs)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def percentile(values: list[float], q: float) -> float | None:
    """The `q`-quantile (0..1, nearest rank) or None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return s[k]
