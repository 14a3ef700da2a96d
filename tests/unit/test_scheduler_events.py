"""Events spliced from wire parts equal the events the protobuf API builds, and a pass's
events stored in one row come back whole and numbered."""

from __future__ import annotations

import itertools

import pytest
from plait_engine.scheduler import events
from plait_engine.scheduler.state import Frame, NodeExec, Run, Templates
from plait_engine.store import ExecutionRecord
from plait_engine.store.event_rows import event_row, page, row_count, row_events
from plaitidl.core.v1 import (
    dynamic_job_pb2,
    errors_pb2,
    events_pb2,
    execution_pb2,
    identifier_pb2,
    literals_pb2,
    tasks_pb2,
    workflow_pb2,
)

EP = execution_pb2


def _node(prefix: str) -> NodeExec:
    run = Run(ExecutionRecord(7, "p", "d", "x1é", "p/d/wf/v"))
    frame = Frame(
        run, None, literals_pb2.LiteralMap(), Templates(dynamic_job_pb2.DynamicJobSpec()), 0
    )
    frame.prefix = prefix
    return NodeExec(frame, "n3", workflow_pb2.Node(id="n3"))


def _reference(
    n: NodeExec, phase: int, name: str | None, task: tasks_pb2.TaskTemplate | None,
    error: errors_pb2.ExecutionError | None, dynamic: events_pb2.DynamicInfo | None,
    retry_at: float, reason: str,
) -> events_pb2.ExecutionEvent:  # fmt: skip
    # What the journal built through the protobuf API before events were spliced.
    ev = events_pb2.ExecutionEvent()
    t = ev.node
    t.node_id = n.path
    t.phase = phase  # type: ignore[assignment]
    if n.attempt:
        t.attempt = n.attempt
    if n.cache_status:
        t.cache_status = n.cache_status  # type: ignore[assignment]
    if n.frame.prefix:
        t.parent_node_id = n.frame.prefix
    if error is not None:
        t.error.CopyFrom(error)
    if dynamic is not None:
        t.dynamic.CopyFrom(dynamic)
    if task is not None:
        t.task_id.CopyFrom(task.id)
    if name:
        t.name = name
    if n.worker:
        t.worker_id = n.worker
    if n.started_at and phase != EP.NODE_PHASE_RUNNING:
        whole = int(n.started_at)
        t.started_at.seconds = whole
        t.started_at.nanos = int((n.started_at - whole) * 1e9)
    if retry_at:
        t.retry_at.FromNanoseconds(int(retry_at * 1e9))
    if reason:
        t.reason = reason
    return ev


_TASK = tasks_pb2.TaskTemplate(
    id=identifier_pb2.Identifier(
        resource_type=identifier_pb2.RESOURCE_TYPE_TASK,
        project="p",
        domain="d",
        name="m.inc",
        version="v9",
    )
)


@pytest.mark.parametrize(
    ("prefix", "phase", "attempt", "worker", "started", "extras"),
    list(itertools.product(
        ["", "n0/n1-c0"],
        [EP.NODE_PHASE_RUNNING, EP.NODE_PHASE_SUCCEEDED, EP.NODE_PHASE_RETRYING],
        [0, 1, 300],
        ["", "wörker-1"],
        [0.0, 1764530000.123456],
        [False, True],
    )),
)  # fmt: skip
def test_spliced_node_events_equal_built_ones(
    prefix: str, phase: int, attempt: int, worker: str, started: float, extras: bool
) -> None:
    n = _node(prefix)
    n.attempt, n.worker, n.started_at = attempt, worker, started
    n.cache_status = EP.CACHE_STATUS_HIT if extras else 0
    error = errors_pb2.ExecutionError(code="E", message="boom") if extras else None
    dynamic = events_pb2.DynamicInfo(node_count=3, depth=1) if extras else None
    retry_at = 1764530001.5 if extras else 0.0
    reason = "no worker serves it" if extras else ""
    name = "inc" if extras else None
    task = _TASK if attempt else None
    parts = events.EventParts()
    got = events.node_event(
        n, phase, name, parts.task_id(task) if task else b"", error, dynamic,
        int(retry_at * 1e9) if retry_at else 0, reason,
    )  # fmt: skip
    want = _reference(n, phase, name, task, error, dynamic, retry_at, reason)
    assert events_pb2.ExecutionEvent.FromString(got) == want


def test_shared_fields_and_rows_give_each_event_back_whole() -> None:
    shared = events.shared("proj", "dev", "x1", 1764530000_123456789)
    want_shared = events_pb2.ExecutionEvent()
    want_shared.execution_id.project, want_shared.execution_id.domain = "proj", "dev"
    want_shared.execution_id.name = "x1"
    want_shared.occurred_at.FromNanoseconds(1764530000_123456789)
    assert events_pb2.ExecutionEvent.FromString(shared) == want_shared
    for count in (1, 3, 400):  # small rows are stored plain, large ones compressed
        parts = [
            events.node_event(_node("n0"), EP.NODE_PHASE_SUCCEEDED, None, b"") for _ in range(count)
        ]
        body = event_row(shared, parts)
        assert body[0] == 0 and row_count(body) == count
        got = row_events(10 + count, body)
        assert [s for s, _ in got] == list(range(11, 11 + count))
        for s, ev in got:
            e = events_pb2.ExecutionEvent.FromString(ev)
            assert e.sequence == s and e.execution_id.name == "x1" and e.node.node_id == "n0/n3"
            assert e.occurred_at == want_shared.occurred_at
    # A whole, numbered event (an execution's first, or a row of the old layout) is one row.
    single = events_pb2.ExecutionEvent(sequence=1).SerializeToString()
    assert row_events(1, single) == [(1, single)] and row_count(single) == 1
    rows = [(1, single), (4, event_row(shared, parts[:3])), (6, event_row(shared, parts[:2]))]
    assert [s for s, _ in page(rows, 2, 10)] == [3, 4, 5, 6]
    assert [s for s, _ in page(rows, 0, 3)] == [1, 2, 3]
