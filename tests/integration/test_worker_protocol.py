"""The worker protocol's rules, on `WorkerSessions` alone: messages bounded by bytes, inputs
offloaded into the blob store, heartbeats that reconcile, routing by task version and type,
unknown results counted. (End to end over gRPC: test_worker_session_e2e.py.)"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from plait_engine.blob import DataStore, LocalObjectStore
from plait_engine.executors import Dispatch, ReportsWaiting, Result
from plait_engine.executors.sessions import Outgoing
from plait_engine.executors.workers import WorkerSession, WorkerSessions
from plaitidl.core.v1 import (
    errors_pb2,
    identifier_pb2,
    interface_pb2,
    literals_pb2,
    tasks_pb2,
    types_pb2,
)
from plaitidl.service.v1 import worker_service_pb2 as ws

STR = types_pb2.LiteralType(simple=types_pb2.SIMPLE_TYPE_STRING)


def _template(
    name: str = "t", version: str = "v1", queue: str = "q", type: str = "python-task"
) -> tasks_pb2.TaskTemplate:
    return tasks_pb2.TaskTemplate(
        id=identifier_pb2.Identifier(
            project="default", domain="development", name=name, version=version
        ),
        type=type,
        interface=interface_pb2.TypedInterface(
            inputs=interface_pb2.VariableMap(
                variables=[interface_pb2.Variable(name="s", type=STR)]
            ),
            outputs=interface_pb2.VariableMap(
                variables=[interface_pb2.Variable(name="o0", type=STR)]
            ),
        ),
        worker=tasks_pb2.WorkerTarget(queue=queue, handler=f"mod:{name}"),
    )


def _str(n: int, fill: str = "x") -> literals_pb2.LiteralMap:
    lm = literals_pb2.LiteralMap()
    lm.literals["s"].scalar.primitive.string_value = fill * n
    return lm


def _dispatch(
    i: int,
    template: tasks_pb2.TaskTemplate,
    inputs: literals_pb2.LiteralMap | None = None,
    execution: str = "default/development/x1",
) -> Dispatch:
    return Dispatch(
        assignment_id=f"1:n{i}:1",
        attempt=1,
        task=template,
        task_key=f"{template.id.name}/{template.id.version}",
        inputs=inputs if inputs is not None else _str(1),
        deadline=None,
        execution=execution,
        node_id=f"n{i}",
    )


def _hello(
    slots: int = 4,
    *,
    worker: str = "w",
    queues: tuple[str, ...] = ("q",),
    tasks: tuple[tuple[str, str], ...] = (),
    types: tuple[str, ...] = (),
) -> ws.Hello:
    return ws.Hello(
        worker_id=worker,
        queues=queues,
        slots=slots,
        tasks=[identifier_pb2.Identifier(name=n, version=v) for n, v in tasks],
        task_types=types,
    )


def _outgoing(s: WorkerSession) -> list[Outgoing]:
    out = []
    while not s.outbox.empty():
        item = s.outbox.get_nowait()
        if isinstance(item, Outgoing):
            out.append(item)
    return out


def _assignments(items: list[Outgoing]) -> list[ws.Assignment]:
    return [
        a
        for o in items
        if o.message.HasField("assignments")
        for a in o.message.assignments.assignments
    ]


def _ok(a: ws.Assignment, outputs: literals_pb2.LiteralMap | None = None) -> ws.SessionRequest:
    r = ws.TaskResult(assignment_id=a.assignment_id, attempt=a.attempt)
    r.outputs.CopyFrom(outputs or literals_pb2.LiteralMap())
    return ws.SessionRequest(results=ws.ResultBatch(results=[r]))


Body = Callable[[WorkerSessions, list[Result]], Awaitable[None]]


def _run(body: Body, **kwargs: Any) -> None:
    async def main() -> None:
        kwargs.setdefault("heartbeat_interval", 0.05)
        kwargs.setdefault("lease_duration", 5.0)
        sessions = WorkerSessions(**kwargs)
        got: list[Result] = []
        sessions.start(got.extend, asyncio.get_running_loop())
        try:
            await body(sessions, got)
        finally:
            await sessions.stop()

    asyncio.run(main())


def _error(r: Result) -> errors_pb2.ExecutionError:
    assert isinstance(r.outcome, errors_pb2.ExecutionError), r.outcome
    return r.outcome


# -- messages bounded by bytes ----------------------------------------------------------------
def test_batches_are_bounded_by_bytes_and_a_too_large_assignment_fails_alone() -> None:
    limit = 20_000

    async def body(sessions: WorkerSessions, got: list[Result]) -> None:
        s = sessions.open_session(_hello(10))
        _outgoing(s)  # the welcome
        template = _template()
        ds = [_dispatch(i, template, _str(8_000)) for i in range(5)]
        ds.insert(0, _dispatch(9, template, _str(30_000)))  # cannot fit even alone
        sessions.submit(ds)
        items = _outgoing(s)
        sizes = [o.message.ByteSize() for o in items]
        assert all(size <= limit for size in sizes), sizes
        assert [len(o.dispatches) for o in items] == [2, 2, 1]  # bytes, not count, decided
        sent = _assignments(items)
        assert "1:n9:1" not in {a.assignment_id for a in sent}
        # The refused one carried the template first: the next one sent carries it instead.
        assert sent[0].HasField("task_template")
        (refused,) = got
        err = _error(refused)
        assert err.code == "AssignmentTooLarge" and not err.recoverable
        assert "node 'n9'" in err.message and "s (30" in err.message
        assert not s.closed and s.free == 5 and sessions.stats().too_large == 1

    _run(body, max_message_bytes=limit)


# -- offloading ------------------------------------------------------------------------------
def test_large_inputs_are_offloaded_once_and_results_are_checked(tmp_path: Path) -> None:
    data = DataStore(LocalObjectStore(tmp_path / "blobs"))

    async def body(sessions: WorkerSessions, got: list[Result]) -> None:
        s = sessions.open_session(_hello(10))
        template = _template()
        big = _str(50_000, "b")
        sessions.submit([_dispatch(i, template, big) for i in range(3)] + [_dispatch(7, template)])
        for _ in range(500):  # stored on threads, then sent
            if sessions.stats().offloaded == 3:
                break
            await asyncio.sleep(0.01)
        sent = _assignments(_outgoing(s))
        assert len(sent) == 4
        small = next(a for a in sent if a.assignment_id == "1:n7:1")
        assert small.inputs.literals["s"].scalar.primitive.string_value == "x"
        refs = [a.inputs.literals["s"].offloaded for a in sent if a.assignment_id != "1:n7:1"]
        assert len({r.uri for r in refs}) == 1  # one value, stored once
        ref = refs[0]
        assert ref.uri.startswith("plait-data://default/development/x1/")
        assert ref.type == STR and ref.size_bytes == big.literals["s"].ByteSize()
        folder = tmp_path / "blobs" / "executions" / "default" / "development" / "x1" / "+data"
        assert [p.name for p in folder.iterdir()] == [ref.sha256]
        stored = literals_pb2.Literal.FromString((folder / ref.sha256).read_bytes())
        assert stored == big.literals["s"]

        by_id = {a.assignment_id: a for a in sent}
        # Handing an input reference back as an output is fine; so is data of this execution.
        own = literals_pb2.LiteralMap()
        own.literals["o0"].offloaded.CopyFrom(ref)
        sessions.handle(s, _ok(by_id["1:n0:1"], own))
        mine = data.offload(("default", "development", "x1"), literals_pb2.Literal(), STR)
        theirs = literals_pb2.LiteralMap()
        theirs.literals["o0"].offloaded.CopyFrom(mine.offloaded)
        sessions.handle(s, _ok(by_id["1:n1:1"], theirs))
        # Another execution's data is not this attempt's to return.
        foreign = literals_pb2.LiteralMap()
        foreign.literals["o0"].offloaded.uri = ref.uri.replace("/x1/", "/x2/")
        foreign.literals["o0"].offloaded.sha256 = ref.sha256
        sessions.handle(s, _ok(by_id["1:n2:1"], foreign))
        outcomes = {r.assignment_id: r.outcome for r in got}
        assert isinstance(outcomes["1:n0:1"], literals_pb2.LiteralMap)
        assert isinstance(outcomes["1:n1:1"], literals_pb2.LiteralMap)
        err = outcomes["1:n2:1"]
        assert isinstance(err, errors_pb2.ExecutionError)
        assert err.code == "BadOffloadedOutput" and "another execution" in err.message

    _run(body, inline_limit=10_000, data=data)


def test_cancelled_while_offloading_is_never_sent(tmp_path: Path) -> None:
    async def body(sessions: WorkerSessions, got: list[Result]) -> None:
        s = sessions.open_session(_hello(4))
        sessions.submit([_dispatch(0, _template(), _str(100_000))])
        sessions.cancel(["1:n0:1"])
        await asyncio.sleep(0.3)
        assert _assignments(_outgoing(s)) == [] and got == []

    _run(body, inline_limit=1_000, data=DataStore(LocalObjectStore(tmp_path)))


# -- reconcile ------------------------------------------------------------------------------
def test_heartbeats_take_back_what_the_worker_does_not_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def body(sessions: WorkerSessions, got: list[Result]) -> None:
        s = sessions.open_session(_hello(4))
        sessions.submit([_dispatch(i, _template()) for i in range(3)])
        (item,) = [o for o in _outgoing(s) if o.dispatches]
        sessions.sent(s, item)
        a0, a1, a2 = _assignments([item])
        beat = ws.SessionRequest(heartbeat=ws.Heartbeat(running_assignment_ids=[a0.assignment_id]))
        sessions.handle(s, beat)  # too early to judge the missing ones
        assert got == [] and s.free == 1
        await asyncio.sleep(0.12)  # more than two heartbeat intervals
        sessions.handle(s, _ok(a2))  # answered: not missing
        sessions.handle(s, beat)
        (taken,) = [r for r in got if r.assignment_id == a1.assignment_id]
        err = _error(taken)
        assert err.code == "NotAcknowledged" and err.recoverable
        assert err.kind == errors_pb2.ExecutionError.KIND_SYSTEM
        assert "the worker did not acknowledge the assignment" in err.message
        cancels = [
            o.message.cancellations for o in _outgoing(s) if o.message.HasField("cancellations")
        ]
        assert [list(c.assignment_ids) for c in cancels] == [[a1.assignment_id]]
        assert s.free == 3 and sessions.stats().taken_back == 1
        # Its late result is normal (logged at info); a result for an id never given is not.
        with caplog.at_level(logging.INFO, logger="plait_engine.workers"):
            sessions.handle(s, _ok(a1))
            sessions.handle(s, _ok(ws.Assignment(assignment_id="1:bogus:1", attempt=1)))
        st = sessions.stats()
        assert st.ignored_results == 2 and st.unknown_results == 1
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert any("'1:bogus:1'" in r.getMessage() for r in warnings)

        # A heartbeat written before the assignment arrived may be read late (a busy engine):
        # it takes a second heartbeat since sending to judge, however long ago it was sent.
        sessions.submit([_dispatch(5, _template())])
        (item,) = [o for o in _outgoing(s) if o.dispatches]
        sessions.sent(s, item)
        await asyncio.sleep(0.12)
        sessions.handle(s, beat)
        assert sessions.stats().taken_back == 1
        sessions.handle(s, beat)
        assert sessions.stats().taken_back == 2

    _run(body)


# -- routing ------------------------------------------------------------------------------
def test_routing_by_version_and_type_and_waiting_reasons() -> None:
    async def body(sessions: WorkerSessions, got: list[Result]) -> None:
        assert isinstance(sessions, ReportsWaiting)
        reasons: list[tuple[str, str]] = []
        sessions.set_waiting_callback(lambda aid, why: reasons.append((aid, why)))
        v1 = sessions.open_session(_hello(4, worker="v1", tasks=(("t", "v1"),)))
        v2 = sessions.open_session(_hello(4, worker="v2", tasks=(("t", "v2"),)))
        sessions.submit(
            [
                _dispatch(1, _template(version="v1")),
                _dispatch(2, _template(version="v2")),
                _dispatch(3, _template(version="v3")),
                _dispatch(4, _template(version="v1")),
            ]
        )
        assert [a.assignment_id for a in _assignments(_outgoing(v1))] == ["1:n1:1", "1:n4:1"]
        assert [a.assignment_id for a in _assignments(_outgoing(v2))] == ["1:n2:1"]
        (waiting,) = reasons
        assert waiting[0] == "1:n3:1"
        assert "serves task t version v3" in waiting[1] and "v1, v2" in waiting[1]
        assert sessions.stats().waiting == 1
        # A worker for any version (nothing declared) picks it up; the wait is over.
        anyone = sessions.open_session(_hello(1, worker="any"))
        assert reasons[-1] == ("1:n3:1", "")
        assert [a.assignment_id for a in _assignments(_outgoing(anyone))] == ["1:n3:1"]

        # Types: a session that declares types gets only those.
        typed = sessions.open_session(
            _hello(2, worker="typed", queues=("t",), types=("python-task",))
        )
        sessions.submit(
            [
                _dispatch(5, _template(name="p", queue="t")),
                _dispatch(6, _template(name="q1", queue="t", type="sql")),
            ]
        )
        assert [a.assignment_id for a in _assignments(_outgoing(typed))] == ["1:n5:1"]
        assert reasons[-1][0] == "1:n6:1" and "type 'sql'" in reasons[-1][1]
        # No worker on a queue at all says so.
        sessions.submit([_dispatch(8, _template(queue="nobody"))])
        assert reasons[-1] == (
            "1:n8:1",
            "no connected worker serves queue 'nobody' (needed by task t version v1)",
        )

    _run(body)


def test_a_name_without_version_serves_every_version() -> None:
    async def body(sessions: WorkerSessions, got: list[Result]) -> None:
        s = sessions.open_session(_hello(4, tasks=(("t", ""),)))
        sessions.submit([_dispatch(1, _template(version="a")), _dispatch(2, _template(name="u"))])
        assert [a.assignment_id for a in _assignments(_outgoing(s))] == ["1:n1:1"]
        assert sessions.stats().pending == {"q": 1}

    _run(body)


def test_a_retry_goes_before_the_queued_work() -> None:
    async def body(sessions: WorkerSessions, got: list[Result]) -> None:
        t = _template()
        busy = sessions.open_session(_hello(1))
        sessions.submit([_dispatch(i, t) for i in range(5)])  # one runs, four queue
        (first,) = _assignments(_outgoing(busy))
        retry = _dispatch(99, t)
        retry.assignment_id, retry.attempt = "1:n99:2", 2
        sessions.submit([retry])  # a failed attempt, due again: it does not wait behind four
        sessions.handle(busy, _ok(first))
        (second,) = _assignments(_outgoing(busy))
        assert (second.assignment_id, second.attempt) == ("1:n99:2", 2)
        sessions.handle(busy, _ok(second))
        (third,) = _assignments(_outgoing(busy))
        assert third.assignment_id == "1:n1:1"  # then the queue, in order

    _run(body)
