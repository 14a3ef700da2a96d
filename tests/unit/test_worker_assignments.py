"""Assignments spliced from wire parts equal the assignments the protobuf API builds, and the
messages carrying them keep to the byte and count bounds."""

from __future__ import annotations

import pytest
from plait_engine.executors import Dispatch
from plait_engine.executors.sessions import AssignmentEncoder, WorkerSession, pack
from plait_engine.executors.shared import to_assignment
from plaitidl.core.v1 import (
    dynamic_job_pb2,
    errors_pb2,
    identifier_pb2,
    interface_pb2,
    literals_pb2,
    tasks_pb2,
    types_pb2,
)
from plaitidl.service.v1 import worker_service_pb2 as ws


def _task(name: str, version: str = "v1") -> tasks_pb2.TaskTemplate:
    t = tasks_pb2.TaskTemplate(
        id=identifier_pb2.Identifier(project="p", domain="d", name=name, version=version),
        type="python-task",
    )
    t.interface.inputs.variables.append(
        interface_pb2.Variable(
            name="x", type=types_pb2.LiteralType(simple=types_pb2.SIMPLE_TYPE_INTEGER)
        )
    )
    t.worker.handler = f"mod.{name}"
    return t


def _inputs(x: int, blob: bytes = b"") -> literals_pb2.LiteralMap:
    m = literals_pb2.LiteralMap()
    m.literals["x"].scalar.primitive.integer = x
    if blob:
        m.literals["b"].scalar.binary.value = blob
    return m


def _dispatch(i: int, task: tasks_pb2.TaskTemplate, **kw: object) -> Dispatch:
    args: dict[str, object] = {
        "assignment_id": f"7:n{i}:1",
        "attempt": 1,
        "task": task,
        "task_key": "/".join((task.id.project, task.id.domain, task.id.name, task.id.version)),
        "inputs": _inputs(i),
        "deadline": None,
        "execution": "p/d/ex1é",
        "node_id": f"n0-dn{i}",
    }
    args.update(kw)
    return Dispatch(**args)  # type: ignore[arg-type]


def _session() -> WorkerSession:
    return WorkerSession("s", "w", ("default",), 8, 8, "python", "1")


def _reference(s: WorkerSession, d: Dispatch) -> ws.Assignment:
    # What the engine built through the protobuf API before assignments were spliced (the
    # shared queue still builds them so); the template goes only the first time per session.
    a = to_assignment(d)
    if d.task_key in s.templates_sent:
        a.ClearField("task_template")
    s.templates_sent.add(d.task_key)
    return a


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"attempt": 3, "assignment_id": "7:n1:3"},
        {"deadline": 1_700_000_123.25},
        {"deadline": 0.0},
        {"execution": "p//x", "node_id": ""},
        {"inputs": literals_pb2.LiteralMap()},
    ],
)
def test_encoded_assignments_parse_to_what_the_api_builds(kw: dict[str, object]) -> None:
    encoder = AssignmentEncoder()
    mine, theirs = _session(), _session()
    task, other = _task("inc"), _task("dec", "v2")
    for d in [_dispatch(1, task, **kw), _dispatch(2, task, **kw), _dispatch(3, other, **kw)]:
        got = ws.Assignment.FromString(encoder.encode(mine, d))
        assert got == _reference(theirs, d)
    assert mine.templates_sent == theirs.templates_sent == {"p/d/inc/v1", "p/d/dec/v2"}


def test_packed_messages_keep_to_count_and_bytes_and_refuse_what_cannot_fit() -> None:
    encoder = AssignmentEncoder()
    s = _session()
    task = _task("inc")
    ds = [_dispatch(i, task) for i in range(10)]
    ds[4] = _dispatch(4, task, inputs=_inputs(4, b"x" * 5000))  # too large for any message
    ds[7] = _dispatch(7, task, inputs=_inputs(7, b"y" * 1500))
    messages, refused = pack(s, ds, 2000, 3, encoder)
    assert [(d.node_id, size > 2000) for d, size in refused] == [("n0-dn4", True)]
    sent = [d.node_id for m in messages for d in m.dispatches]
    assert sent == [d.node_id for d in ds if d.node_id != "n0-dn4"]
    theirs = _session()
    for m in messages:
        parsed = m.message.assignments.assignments
        assert isinstance(m.payload, bytes) and len(m.payload) <= 2000 + 64
        assert 1 <= len(parsed) <= 3
        assert [a.assignment_id for a in parsed] == [d.assignment_id for d in m.dispatches]
        assert list(parsed) == [_reference(theirs, d) for d in m.dispatches]
    # The template went with the first assignment that left, not with the refused one.
    assert messages[0].message.assignments.assignments[0].HasField("task_template")


@pytest.mark.parametrize(
    "outcome",
    [
        _inputs(5),
        literals_pb2.LiteralMap(),
        errors_pb2.ExecutionError(code="Boom", message="é", recoverable=True),
        dynamic_job_pb2.DynamicJobSpec(min_successes=2),
    ],
)
@pytest.mark.parametrize("started_ns", [0, 1_700_000_000_000_000_123, 5_000_000_000])
def test_the_workers_results_parse_to_what_the_api_builds(
    outcome: literals_pb2.LiteralMap | errors_pb2.ExecutionError | dynamic_job_pb2.DynamicJobSpec,
    started_ns: int,
) -> None:
    from plait._worker import _encoded_result, _results_messages

    a = ws.Assignment(assignment_id="7:n1:2", attempt=2)
    expected = ws.TaskResult(assignment_id="7:n1:2", attempt=2)
    expected.started_at.FromNanoseconds(started_ns)
    if isinstance(outcome, literals_pb2.LiteralMap):
        expected.outputs.CopyFrom(outcome)
    elif isinstance(outcome, errors_pb2.ExecutionError):
        expected.error.CopyFrom(outcome)
    else:
        expected.dynamic_job_spec.CopyFrom(outcome)
    data = _encoded_result(a, outcome, started_ns)
    assert ws.TaskResult.FromString(data) == expected
    (message,) = _results_messages([data, data])
    assert list(ws.SessionRequest.FromString(message).results.results) == [expected, expected]


def test_results_finishing_together_are_split_by_bytes() -> None:
    from plait._worker import _results_messages

    ids = ["a" * 8, "b" * 8, "c" * 8, "d" * 200, "e" * 8]
    results = [ws.TaskResult(assignment_id=i, attempt=1).SerializeToString() for i in ids]
    messages = list(_results_messages(results, limit=45))  # 14 bytes per short result
    got = [
        [r.assignment_id for r in ws.SessionRequest.FromString(m).results.results] for m in messages
    ]
    assert got == [ids[:3], ids[3:4], ids[4:]]
