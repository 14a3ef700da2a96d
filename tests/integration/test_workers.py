"""Worker sessions: the session logic on its own, then real workers over a real gRPC server.

The end-to-end tests run an engine (SQLite file, `WorkerSessions` with short leases) and a
`grpc.aio` server on a background loop of this process, so that they can read the sessions'
counters; workers are separate processes started with `run_worker`, killed and stopped with
real signals.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import grpc.aio
import pytest
from plait import _loader
from plait._errors import PlaitValueError
from plait._worker import WorkerError, run_worker
from plait_engine.executors import Dispatch, Result
from plait_engine.executors.workers import WorkerSessions
from plaitidl.core.v1 import (
    errors_pb2,
    identifier_pb2,
    literals_pb2,
    tasks_pb2,
)
from plaitidl.service.v1 import worker_service_pb2 as ws
from plaitidl.service.v1 import worker_service_pb2_grpc as ws_grpc

from tests.support.inproc import EngineServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
T = TypeVar("T")


# -- the session logic alone -----------------------------------------------------------------
def _template(name: str, queue: str = "q") -> tasks_pb2.TaskTemplate:
    return tasks_pb2.TaskTemplate(
        id=identifier_pb2.Identifier(name=name, version="v1"),
        worker=tasks_pb2.WorkerTarget(queue=queue, handler=f"mod:{name}"),
    )


def _dispatches(n: int, template: tasks_pb2.TaskTemplate, attempt: int = 1) -> list[Dispatch]:
    return [
        Dispatch(
            assignment_id=f"1:n{i}:{attempt}",
            attempt=attempt,
            task=template,
            task_key=f"{template.id.name}@{template.id.version}",
            inputs=literals_pb2.LiteralMap(),
            deadline=None,
            execution="p/d/x1",
            node_id=f"n{i}",
        )
        for i in range(n)
    ]


def _hello(slots: int, queues: tuple[str, ...] = ("q",), worker: str = "w") -> ws.Hello:
    return ws.Hello(worker_id=worker, queues=queues, slots=slots, language="python")


def _drain(session: Any) -> list[ws.SessionResponse]:
    out = []
    while not session.outbox.empty():
        item = session.outbox.get_nowait()
        message = getattr(item, "message", None)
        if isinstance(message, ws.SessionResponse):
            out.append(message)
    return out


def _assignments(msgs: list[ws.SessionResponse]) -> list[ws.Assignment]:
    return [a for m in msgs if m.HasField("assignments") for a in m.assignments.assignments]


def _ok(a: ws.Assignment) -> ws.TaskResult:
    return ws.TaskResult(
        assignment_id=a.assignment_id, attempt=a.attempt, outputs=literals_pb2.LiteralMap()
    )


def _results(*rs_: ws.TaskResult) -> ws.SessionRequest:
    return ws.SessionRequest(results=ws.ResultBatch(results=rs_))


def _logic(test: Callable[[WorkerSessions, list[Result]], Awaitable[None]]) -> None:
    """Run `test` on a fresh loop against started sessions whose sink collects results."""

    async def main() -> None:
        sessions = WorkerSessions(heartbeat_interval=0.05, lease_duration=0.3)
        got: list[Result] = []
        sessions.start(got.extend, asyncio.get_running_loop())
        try:
            await test(sessions, got)
        finally:
            await sessions.stop()

    asyncio.run(main())


def test_stale_and_duplicate_results_are_ignored_and_counted() -> None:
    async def t(sessions: WorkerSessions, got: list[Result]) -> None:
        a_s = sessions.open_session(_hello(4, worker="a"))
        b_s = sessions.open_session(_hello(4, worker="b"))
        sessions.submit(_dispatches(1, _template("t")))
        a_msgs, b_msgs = _drain(a_s), _drain(b_s)
        (assignment,) = _assignments(a_msgs + b_msgs)
        holder, other = (a_s, b_s) if _assignments(a_msgs) else (b_s, a_s)
        sessions.handle(other, _results(_ok(assignment)))  # not leased to that session
        assert got == []
        sessions.handle(holder, _results(_ok(assignment), _ok(assignment)))  # duplicate
        assert [(r.assignment_id, r.attempt, r.worker_id) for r in got] == [
            (assignment.assignment_id, 1, holder.worker_id)
        ]
        sessions.handle(holder, _results(_ok(assignment)))  # late retransmission
        st = sessions.stats()
        assert st.ignored_results == 3
        assert st.free_slots == 8 and st.leased == 0

    _logic(t)


def test_wrong_attempt_from_the_holder_is_a_protocol_error() -> None:
    # Ignoring it would leave the node waiting forever: the session must end loudly instead.
    async def t(sessions: WorkerSessions, got: list[Result]) -> None:
        s = sessions.open_session(_hello(4))
        sessions.submit(_dispatches(1, _template("t")))
        (assignment,) = _assignments(_drain(s))
        wrong = ws.TaskResult(assignment_id=assignment.assignment_id, attempt=0)
        with pytest.raises(ValueError, match="carries attempt 0, but the assignment is attempt 1"):
            sessions.handle(s, _results(wrong))
        assert got == []

    _logic(t)


def test_thousand_dispatches_travel_in_a_handful_of_messages() -> None:
    async def t(sessions: WorkerSessions, got: list[Result]) -> None:
        big = sessions.open_session(_hello(1000, queues=("big",)))
        sessions.submit(_dispatches(1000, _template("t", "big")))
        msgs = [m for m in _drain(big) if m.HasField("assignments")]
        assert len(msgs) == 1 and len(msgs[0].assignments.assignments) == 1000
        with_template = [a for a in msgs[0].assignments.assignments if a.HasField("task_template")]
        assert len(with_template) == 1  # then by reference only

        # 100 slots: each answered batch frees 100 slots and costs one message back.
        small = sessions.open_session(_hello(100, queues=("small",)))
        template = _template("u", "small")
        sessions.submit(_dispatches(1000, template, attempt=2))
        messages = 0
        answered = 0
        while answered < 1000:
            batch = _assignments(_drain(small))
            assert batch, "no work pushed into free slots"
            messages += 1
            sessions.handle(small, _results(*[_ok(a) for a in batch]))
            answered += len(batch)
        assert messages == 10
        assert len(got) == 1000 and sessions.stats().pending == {}

    _logic(t)


def test_work_spreads_over_sessions_and_waits_for_a_worker() -> None:
    async def t(sessions: WorkerSessions, got: list[Result]) -> None:
        sessions.submit(_dispatches(10, _template("t")))
        assert sessions.stats().pending == {"q": 10}  # nobody serves "q" yet: it waits
        a_s = sessions.open_session(_hello(4, worker="a"))
        b_s = sessions.open_session(_hello(4, worker="b"))
        assert len(_assignments(_drain(a_s))) == 4  # the first worker takes what fits
        assert len(_assignments(_drain(b_s))) == 4
        assert sessions.stats().pending == {"q": 2}

    _logic(t)


def test_lost_session_reports_worker_lost_and_requeues_unsent_work() -> None:
    async def t(sessions: WorkerSessions, got: list[Result]) -> None:
        a_s = sessions.open_session(_hello(2, worker="a"))
        sessions.submit(_dispatches(3, _template("t")))
        sent = _assignments(_drain(a_s))  # these reached the worker
        assert len(sent) == 2
        sessions.handle(a_s, _results(_ok(sent[0])))  # frees a slot: the third is pushed
        assert len(got) == 1
        sessions.close_session(a_s, "test")  # the third never left the outbox
        lost = got[1:]
        assert [r.assignment_id for r in lost] == [sent[1].assignment_id]
        err = lost[0].outcome
        assert isinstance(err, errors_pb2.ExecutionError)
        assert err.code == "WorkerLost" and err.kind == errors_pb2.ExecutionError.KIND_SYSTEM
        assert "worker a lost while running attempt 1 of node 'n1'" in err.message
        assert sessions.stats().pending == {"q": 1}
        b_s = sessions.open_session(_hello(2, worker="b"))
        (third,) = _assignments(_drain(b_s))
        assert third.assignment_id == "1:n2:1" and third.HasField("task_template")

    _logic(t)


def test_cancel_drops_pending_and_withdraws_leased() -> None:
    async def t(sessions: WorkerSessions, got: list[Result]) -> None:
        a_s = sessions.open_session(_hello(1))
        sessions.submit(_dispatches(3, _template("t")))
        (first,) = _assignments(_drain(a_s))
        sessions.cancel([first.assignment_id, "1:n2:1"])
        msgs = _drain(a_s)
        cancels = [m.cancellations for m in msgs if m.HasField("cancellations")]
        assert list(cancels[0].assignment_ids) == [first.assignment_id]
        # The freed slot took the next live one; the cancelled pending one never goes out.
        assert [a.assignment_id for a in _assignments(msgs)] == ["1:n1:1"]
        assert sessions.stats().pending == {}
        sessions.handle(a_s, _results(_ok(first)))  # the cancelled attempt's late result
        assert got == [] and sessions.stats().ignored_results == 1

    _logic(t)


def test_silent_session_expires_and_loses_its_leases() -> None:
    async def t(sessions: WorkerSessions, got: list[Result]) -> None:
        quiet = sessions.open_session(_hello(1, worker="quiet"))
        alive = sessions.open_session(_hello(1, queues=("other",), worker="alive"))
        sessions.submit(_dispatches(1, _template("t")))
        assert len(_assignments(_drain(quiet))) == 1  # written to the stream
        for _ in range(10):  # alive heartbeats, quiet does not
            await asyncio.sleep(0.05)
            sessions.handle(alive, ws.SessionRequest(heartbeat=ws.Heartbeat()))
        assert quiet.closed and not alive.closed
        assert [r.outcome.code for r in got] == ["WorkerLost"]  # type: ignore[union-attr]
        assert "no heartbeat" in got[0].outcome.message  # type: ignore[union-attr]

    _logic(t)


# -- a real engine and gRPC server ---------------------------------------------------------
@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineServer]:
    server = EngineServer(tmp_path_factory.mktemp("engine"))
    yield server
    server.close()


class Workers:
    """Worker processes started with `run_worker`, stopped (or killed) at the end."""

    def __init__(self, address: str, log_dir: Path) -> None:
        self.address = address
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, worker_id: str, paths: list[str], slots: int = 2) -> subprocess.Popen[bytes]:
        code = (
            "import logging, sys\n"
            "logging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
            "from plait._worker import run_worker\n"
            f"run_worker({self.address!r}, {paths!r}, slots={slots}, worker_id={worker_id!r})\n"
        )
        log = (self.log_dir / f"{worker_id}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=log)
        self.procs[worker_id] = proc
        return proc

    def by_pid(self, pid: int) -> str:
        return next(w for w, p in self.procs.items() if p.pid == pid)

    def log(self, worker_id: str) -> str:
        return (self.log_dir / f"{worker_id}.log").read_text()

    def close(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
            p.wait(5)


@pytest.fixture
def workers(engine: EngineServer, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(engine.address, tmp_path)
    yield w
    w.close()


def test_seed_examples_on_two_workers(engine: EngineServer, workers: Workers) -> None:
    paths = [str(EXAMPLES / f) for f in ("dynamic_workflow.py", "merge_sort.py",
                                          "generate_others.py")]  # fmt: skip
    w1 = workers.start("ex-1", paths)
    w2 = workers.start("ex-2", paths)
    engine.wait_for(lambda st: st.sessions >= 2)
    dyn = _loader.load_path(paths[0])
    ms = _loader.load_path(paths[1])
    gen = _loader.load_path(paths[2])
    numbers = random.Random(7).sample(range(1000), 50)
    cases: list[tuple[Any, dict[str, Any], object]] = [
        (dyn.dynamic_wf, {"s1": "Pear", "s2": "Earth"}, 3),
        (ms.merge_sort, {"numbers": numbers, "numbers_count": 50}, sorted(numbers)),
        (gen.fan_out, {"tasks_count": 200}, [i * i for i in range(200)]),
    ]
    for entity, kwargs, expected in cases:
        before = engine.stats().completed_by_worker
        rec = engine.start_execution(entity, **kwargs)
        assert engine.outputs(entity, engine.wait(rec)) == expected
        after = engine.stats().completed_by_worker
        for w in ("ex-1", "ex-2"):
            assert after.get(w, 0) > before.get(w, 0), f"{w} got no work: {after}"
    assert engine.stats().ignored_results == 0
    # SIGTERM: the workers finish (nothing runs), close their sessions and exit cleanly.
    for p in (w1, w2):
        p.send_signal(signal.SIGTERM)
    assert w1.wait(10) == 0 and w2.wait(10) == 0
    engine.wait_for(lambda st: st.sessions == 0, timeout=5)
    assert "connected to" in workers.log("ex-1")


SLOW_MODULE = """
import os
import time
from pathlib import Path

from plait import task, workflow


@task(queue={queue!r})
def slow(marker_dir: str, seconds: float) -> int:
    Path(marker_dir, f"{{os.getpid()}}-{{time.time_ns()}}").write_text("")
    time.sleep(seconds)
    return os.getpid()


@workflow
def wf(marker_dir: str, seconds: float) -> int:
    return slow(marker_dir=marker_dir, seconds=seconds)
"""


def _slow_run(
    engine: EngineServer, workers: Workers, tmp_path: Path, name: str, sig: signal.Signals
) -> None:
    module_path = tmp_path / f"{name}.py"
    module_path.write_text(SLOW_MODULE.format(queue=name))
    markers = tmp_path / "markers"
    markers.mkdir()
    before = engine.stats()
    workers.start(f"{name}-1", [str(module_path)], slots=1)
    workers.start(f"{name}-2", [str(module_path)], slots=1)
    # Wait for these two by id: sessions of earlier tests' workers may still be closing.
    engine.wait_for(lambda st: {f"{name}-1", f"{name}-2"} <= set(st.workers))
    mod = _loader.load_path(str(module_path))
    rec = engine.start_execution(mod.wf, marker_dir=str(markers), seconds=1.5)
    final = engine.submit(engine.engine.executions.wait(rec, timeout=30))
    end = time.monotonic() + 20
    while not list(markers.iterdir()):
        assert time.monotonic() < end, "the task never started"
        time.sleep(0.02)
    victim = int(next(markers.iterdir()).name.split("-")[0])
    os.kill(victim, sig)
    done = final.result(35)
    assert engine.outputs(mod.wf, done) != victim  # the other worker answered attempt 2
    survivor = workers.by_pid(int(str(engine.outputs(mod.wf, done))))
    assert survivor != workers.by_pid(victim)
    (node,) = [n for n in engine.nodes(rec) if n.task_key]
    assert node.attempt == 2 and node.system_failures == 1
    assert engine.stats().lost >= before.lost + 1


def test_killed_worker_task_is_retried_on_the_other(
    engine: EngineServer, workers: Workers, tmp_path: Path
) -> None:
    _slow_run(engine, workers, tmp_path, "killed", signal.SIGKILL)


def test_stalled_worker_loses_its_lease(
    engine: EngineServer, workers: Workers, tmp_path: Path
) -> None:
    started = time.monotonic()
    _slow_run(engine, workers, tmp_path, "stalled", signal.SIGSTOP)
    # The retry could only start after the lease ran out.
    assert time.monotonic() - started >= 1.0 + 1.5


def test_sigterm_lets_the_running_task_finish(
    engine: EngineServer, workers: Workers, tmp_path: Path
) -> None:
    module_path = tmp_path / "graceful.py"
    module_path.write_text(SLOW_MODULE.format(queue="graceful"))
    markers = tmp_path / "markers"
    markers.mkdir()
    proc = workers.start("graceful-1", [str(module_path)], slots=1)
    engine.wait_for(lambda st: "graceful-1" in st.workers)
    mod = _loader.load_path(str(module_path))
    rec = engine.start_execution(mod.wf, marker_dir=str(markers), seconds=1.0)
    end = time.monotonic() + 20
    while not list(markers.iterdir()):
        assert time.monotonic() < end, "the task never started"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    assert engine.outputs(mod.wf, engine.wait(rec)) == proc.pid  # its result was sent before exit
    assert proc.wait(10) == 0
    (node,) = [n for n in engine.nodes(rec) if n.task_key]
    assert node.attempt == 1 and node.system_failures == 0


def _session(address: str, *first: ws.SessionRequest) -> grpc.Call:
    with grpc.insecure_channel(address) as channel:
        call = ws_grpc.WorkerServiceStub(channel).Session(iter(first), timeout=5)
        with pytest.raises(grpc.RpcError) as info:
            list(call)
    assert isinstance(info.value, grpc.Call)
    return info.value


def test_hello_is_validated(engine: EngineServer) -> None:
    hb = ws.SessionRequest(heartbeat=ws.Heartbeat())
    cases = [
        ((hb,), "first message must be hello"),
        ((ws.SessionRequest(hello=ws.Hello(worker_id="x", slots=1)),), "hello.queues"),
        ((ws.SessionRequest(hello=ws.Hello(worker_id="x", queues=["q"])),), "hello.slots"),
    ]
    for requests, message in cases:
        err = _session(engine.address, *requests)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in (err.details() or "")
    # A second hello is a protocol error too.
    hello = ws.SessionRequest(hello=ws.Hello(worker_id="x", queues=["q"], slots=1))
    err = _session(engine.address, hello, hello)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    # The Python worker checks its own arguments and stops on a refused hello.
    with pytest.raises(PlaitValueError):
        run_worker(engine.address, [], slots=0)
    with pytest.raises(WorkerError, match=r"hello\.queues"):
        run_worker(engine.address, [], queues=[""], register=False)
