"""Node transition events in wire form.

A node makes several events in its life, and each was built through the protobuf API, one
field at a time (~10 µs). Here an event is spliced from its fields' bytes, with the parts that
repeat serialized once: a task's identifier per task, the fields a pass's events share per
execution (see `plait_engine.store.event_rows`). The result parses to the `ExecutionEvent` the
API would build (tests/unit/test_scheduler_events.py compares them).
"""

from __future__ import annotations

from plaitidl.core.v1 import errors_pb2, events_pb2, execution_pb2, tasks_pb2

from plait_engine.scheduler.state import NodeExec
from plait_engine.wire import field, timestamp, timestamp_ns, uint_field, varint

_RUNNING = execution_pb2.NODE_PHASE_RUNNING


class EventParts:
    """The parts of events that repeat: kept while the engine runs (a few per task)."""

    def __init__(self) -> None:
        self._task_ids: dict[int, tuple[tasks_pb2.TaskTemplate, bytes]] = {}

    def task_id(self, task: tasks_pb2.TaskTemplate) -> bytes:
        """`NodeTransition.task_id` (field 8) of a task, serialized once per template object."""
        hit = self._task_ids.get(id(task))
        if hit is not None and hit[0] is task:
            return hit[1]
        data = field(b"\x42", task.id.SerializeToString())
        if len(self._task_ids) > 10_000:  # templates of finished executions: start over
            self._task_ids.clear()
        self._task_ids[id(task)] = (task, data)
        return data


def shared(project: str, domain: str, name: str, occurred_ns: int) -> bytes:
    """`ExecutionEvent.execution_id` (1) and `occurred_at` (3): what a pass's events of one
    execution share."""
    eid = field(b"\x0a", project.encode()) + field(b"\x12", domain.encode())
    eid += field(b"\x1a", name.encode())
    return field(b"\x0a", eid) + field(b"\x1a", timestamp_ns(occurred_ns))


def node_event(
    n: NodeExec,
    phase: int,
    name: str | None,
    task_id: bytes,
    error: errors_pb2.ExecutionError | None = None,
    dynamic: events_pb2.DynamicInfo | None = None,
    retry_ns: int = 0,
    reason: str = "",
) -> bytes:
    """An `ExecutionEvent` holding `n`'s `NodeTransition` (field 5) to `phase`, without the
    shared fields; `name` is set on a node's first event, `task_id` when it names its task."""
    parts = [field(b"\x0a", n.path.encode()), b"\x10" + varint(phase)]
    if n.attempt:
        parts.append(b"\x18" + varint(n.attempt))
    if error is not None:
        parts.append(field(b"\x22", error.SerializeToString()))
    if n.cache_status:
        parts.append(uint_field(b"\x28", n.cache_status))
    if dynamic is not None:
        parts.append(field(b"\x32", dynamic.SerializeToString()))
    prefix = n.frame.prefix
    if prefix:
        parts.append(field(b"\x3a", prefix.encode()))
    parts.append(task_id)
    if n.worker:
        parts.append(field(b"\x4a", n.worker.encode()))
    started = n.started_at
    if started and phase != _RUNNING:
        whole = int(started)
        parts.append(field(b"\x52", timestamp(whole, int((started - whole) * 1e9))))
    if reason:
        parts.append(field(b"\x5a", reason.encode()))
    if name:
        parts.append(field(b"\x62", name.encode()))
    if retry_ns:
        parts.append(field(b"\x6a", timestamp_ns(retry_ns)))
    return field(b"\x2a", b"".join(parts))


__all__ = ["EventParts", "node_event", "shared"]
