"""Figures from an engine's store: node counts and latencies from the events of one execution.

Definitions (all times are `ExecutionEvent.occurred_at`, stamped by the engine's scheduler
pass that made the transition, just before the pass's group commit):

- *ready*: when a task node could first be dispatched: the latest of its frame's start (the
  execution's RUNNING event for top-level nodes, the generator's DYNAMIC_RUNNING event for
  nodes of a dynamic spec, the parent node's first RUNNING event for subworkflow and branch
  frames) and the SUCCEEDED events of its upstream siblings (read from the compiled specs).
  Upstreams are known for top-level and dynamic-spec nodes; elsewhere (branch then-nodes,
  subworkflow nodes) the node is taken to have none, which holds for the workloads here.
- *dispatch*: the task node's RUNNING event of attempt 1.
- *done*: the first SUCCEEDED / DYNAMIC_RUNNING / FAILED / RETRYING event of that attempt
  (the result has been committed).
- *start*: `NodeTransition.started_at` on the event that ends attempt 1: when the worker (or
  the in-process executor) started running it, as the worker reported.
- *first child*: the first event of a node inside a sub-graph (a dynamic's spec, a
  subworkflow), after the execution's RUNNING event: how long until the first nodes of a
  yielded spec were committed.

Schedule-to-start is `start - dispatch`; `dispatch - ready` is the engine's own scheduling
delay; `done - ready` bounds a whole hop (in a chain of no-op tasks: from one task's result to
the next one's, i.e. the engine's latency per hop plus a no-op task).

Everything is read through the engine's `Store` contract, so the figures do not depend on how
a backend lays out its rows.
"""

from __future__ import annotations

import asyncio
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
    exec_running: float = 0.0
    first_child: float | None = None
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
        if ups:
            out[_path(prefix, n.id)] = {_path(prefix, u) for u in ups}


async def _read(
    data_dir: Path, execution: str | None, store_url: str | None
) -> tuple[int, bytes, list[bytes], list[tuple[str, bytes]]]:
    from plait_engine.app import open_store
    from plait_engine.blob import LocalObjectStore, Payloads
    from plait_engine.config import EngineConfig

    payloads = Payloads(LocalObjectStore(data_dir / "blobs"))
    store = open_store(EngineConfig(data_dir=data_dir, store=store_url or ""))
    await store.open()
    try:
        if execution is None:
            listed = await store.list_executions(_any_filter(), 1)
            rec = listed[0] if listed else None
        else:
            rec = await store.get_execution("default", "development", execution)
        assert rec is not None, "no execution in the store"
        payload = await store.get_payload(rec.eid)
        assert payload is not None
        closure = await payloads.load(payload.closure)
        bodies: list[bytes] = []
        seq = 0
        while True:
            rows = await store.events(rec.eid, seq, 100_000)
            if not rows:
                break
            seq = rows[-1][0]
            bodies.extend(b for _, b in rows)
        stored = await store.dynamic_specs(rec.eid)
        specs = [(s.node_id, await payloads.load_spec(s.closure)) for s in stored]
        return rec.phase, closure, bodies, specs
    finally:
        await store.close()


def _any_filter() -> Any:
    from plait_engine.store import ExecutionFilter

    return ExecutionFilter()


def _replay(bodies: list[bytes], figs: RunFigures) -> dict[str, _Node]:
    """Each node's moments, from the event log."""
    nodes: dict[str, _Node] = {}
    for body in bodies:
        ev = events_pb2.ExecutionEvent.FromString(body)
        t = ev.occurred_at.ToNanoseconds() / 1e9
        if not figs.first_event:
            figs.first_event = t
        figs.last_event = t
        figs.events += 1
        if ev.WhichOneof("transition") == "execution":
            running = ev.execution.phase == execution_pb2.EXECUTION_PHASE_RUNNING
            if running and not figs.exec_running:
                figs.exec_running = t
            continue
        tr = ev.node
        n = nodes.get(tr.node_id)
        if n is None:
            n = nodes[tr.node_id] = _Node(parent=tr.parent_node_id)
            if tr.parent_node_id and figs.first_child is None:
                figs.first_child = t
        _note(n, tr, t)
    return nodes


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
    phase, closure, bodies, specs = asyncio.run(_read(data_dir, execution, store_url))
    ups: dict[str, set[str]] = {}
    _upstreams(dynamic_job_pb2.DynamicJobSpec.FromString(closure), "", ups)
    dynamic_frames: set[str] = set()
    for node_id, body in specs:
        dynamic_frames.add(node_id)
        _upstreams(dynamic_job_pb2.DynamicJobSpec.FromString(body), node_id, ups)

    phase_name = execution_pb2.ExecutionPhase.Name(phase)  # type: ignore[arg-type]
    figs = RunFigures(phase=phase_name.removeprefix("EXECUTION_PHASE_"))
    nodes = _replay(bodies, figs)
    del bodies

    def frame_start(prefix: str) -> float | None:
        if not prefix:
            return figs.exec_running or figs.first_event
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
