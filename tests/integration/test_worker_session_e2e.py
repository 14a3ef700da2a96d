"""The worker protocol end to end: an engine and its gRPC server (on a loop of this process, so
that the tests read its counters), real worker processes, and raw gRPC workers written here.

- a worker that heartbeats but answers with unknown assignment ids no longer leaves its node
  RUNNING: its assignments are taken back, and the node fails once the system budget is spent;
- assignments of two executions with 60 MB inputs travel in separate messages, and one that
  cannot fit even alone fails its node while the session carries on;
- two workers serving two versions of a task each get their own version; an execution of a
  version nobody serves waits, with a reason, and runs once a worker for it connects;
- a task's stdout, stderr and logging records reach `ExecutionService.StreamLogs` while it runs.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from plait import _loader
from plait_engine.store import ExecutionRecord
from plaitidl.core.v1 import errors_pb2, execution_pb2, identifier_pb2, literals_pb2
from plaitidl.service.v1 import execution_service_pb2 as es
from plaitidl.service.v1 import execution_service_pb2_grpc as es_grpc
from plaitidl.service.v1 import worker_service_pb2 as ws
from plaitidl.service.v1 import worker_service_pb2_grpc as ws_grpc

from tests.support.inproc import EngineServer

MB = 1 << 20
EP = execution_pb2


def _module(tmp_path: Path, name: str, text: str) -> Any:
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    return _loader.load_path(str(path))


def _error(rec: ExecutionRecord) -> errors_pb2.ExecutionError:
    return errors_pb2.ExecutionError.FromString(rec.error)


class RawWorker:
    """A worker speaking the protocol by hand: answers through `answer(assignment)`."""

    def __init__(
        self,
        address: str,
        queue_name: str,
        *,
        slots: int = 2,
        answer: Any = None,
        heartbeat: float = 0.1,
        outputs: Any = None,
        honest: bool = True,
    ) -> None:
        self.received: list[ws.SessionResponse] = []
        self.sizes: list[int] = []
        self._inbox: queue.Queue[ws.Assignment] = queue.Queue()
        self._stop = threading.Event()
        self._answer = answer or (lambda a: a.assignment_id)
        self._outputs = outputs
        self._honest = honest  # lists what it runs in heartbeats
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._hello = ws.Hello(worker_id=f"raw-{queue_name}", queues=[queue_name], slots=slots)
        self._heartbeat = heartbeat
        self._channel = grpc.insecure_channel(
            address, options=[("grpc.max_receive_message_length", 256 * MB)]
        )
        self._call: Any = ws_grpc.WorkerServiceStub(self._channel).Session(self._requests())
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _requests(self) -> Iterator[ws.SessionRequest]:
        yield ws.SessionRequest(hello=self._hello)
        last = time.monotonic()
        while not self._stop.is_set():
            try:
                a = self._inbox.get(timeout=0.02)
            except queue.Empty:
                a = None
            if a is not None:
                r = ws.TaskResult(assignment_id=self._answer(a), attempt=a.attempt)
                if self._outputs is not None:
                    r.outputs.CopyFrom(self._outputs(a))
                else:
                    r.outputs.literals["o0"].scalar.primitive.string_value = "ok"
                yield ws.SessionRequest(results=ws.ResultBatch(results=[r]))
            if a is not None:
                with self._lock:
                    self._running.discard(a.assignment_id)
            if time.monotonic() - last >= self._heartbeat:
                with self._lock:
                    running = sorted(self._running) if self._honest else []
                yield ws.SessionRequest(heartbeat=ws.Heartbeat(running_assignment_ids=running))
                last = time.monotonic()

    def _read(self) -> None:
        try:
            for response in self._call:
                self.received.append(response)
                self.sizes.append(response.ByteSize())
                for a in response.assignments.assignments:
                    with self._lock:
                        self._running.add(a.assignment_id)
                    self._inbox.put(a)
        except grpc.RpcError:
            pass

    def assignments(self) -> list[ws.Assignment]:
        return [a for r in self.received for a in r.assignments.assignments]

    def close(self) -> None:
        self._stop.set()
        self._call.cancel()
        self._thread.join(5)
        self._channel.close()


RAW = """
from plait import task, workflow


@task(queue={queue!r})
def echo(s: str) -> str:
    return s


@task(queue={queue!r})
def pair(a: str, b: str) -> str:
    return a + b


@workflow
def one(s: str) -> str:
    return echo(s=s)


@workflow
def two(a: str, b: str) -> str:
    return pair(a=a, b=b)
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EngineServer]:
    s = EngineServer(
        tmp_path / "engine",
        system_retries=2,
        max_literal_bytes=100 * MB,
        max_inputs_bytes=256 * MB,
    )
    yield s
    s.close()


def test_unknown_assignment_ids_do_not_leave_the_node_running(
    server: EngineServer, tmp_path: Path
) -> None:
    mod = _module(tmp_path, "raw_unknown", RAW.format(queue="unknown"))
    server.register(mod.one)
    # It never lists what it received (nor answers it by its id).
    worker = RawWorker(
        server.address, "unknown", answer=lambda a: "bogus-" + a.assignment_id, honest=False
    )
    try:
        rec = server.start_execution(mod.one, s="hello")
        final = server.wait(rec, timeout=20)
        assert final.phase == EP.EXECUTION_PHASE_FAILED
        err = _error(final)
        assert err.code == "NotAcknowledged", err
        assert "the worker did not acknowledge the assignment" in err.message
        st = server.stats()
        assert st.taken_back >= 2 and st.unknown_results >= st.taken_back
        assert st.sessions == 1  # the worker keeps its session: only its attempts were taken
        (node,) = [n for n in server.nodes(rec) if n.task_key]
        assert node.attempt == st.taken_back and node.phase == EP.NODE_PHASE_FAILED
    finally:
        worker.close()


@pytest.fixture
def big_server(tmp_path: Path) -> Iterator[EngineServer]:
    """`server` with heartbeats 10x slower: on a busy 2-core machine a 60 MB assignment queued
    behind another can take longer than the usual 0.4 s acknowledgement window to arrive, and
    would be taken back and sent again (what this module's heartbeat tests check)."""
    s = EngineServer(
        tmp_path / "engine",
        system_retries=2,
        max_literal_bytes=100 * MB,
        max_inputs_bytes=256 * MB,
        heartbeat_interval=2.0,
        lease_duration=10.0,
    )
    yield s
    s.close()


def test_assignment_messages_are_bounded_by_bytes(big_server: EngineServer, tmp_path: Path) -> None:
    server = big_server
    mod = _module(tmp_path, "raw_big", RAW.format(queue="big"))
    server.register(mod.one)
    server.register(mod.two)
    limit = server.engine.config.max_message_bytes
    recs = [server.start_execution(mod.one, s=c * (60 * MB)) for c in "ab"]
    worker = RawWorker(server.address, "big", slots=4)  # both are pending when it connects
    try:
        for rec in recs:  # 120 MB through one session: generous on a busy 2-core machine
            assert server.wait(rec, timeout=120).phase == EP.EXECUTION_PHASE_SUCCEEDED
        carrying = [r for r in worker.received if r.HasField("assignments")]
        assert [len(r.assignments.assignments) for r in carrying] == [1, 1]
        assert all(60 * MB < size < limit for size in worker.sizes if size > MB)

        # 2 x 40 MB cannot travel in one message even alone: the node fails, not the session.
        too_big = server.start_execution(mod.two, a="x" * (40 * MB), b="y" * (40 * MB))
        final = server.wait(too_big, timeout=120)
        assert final.phase == EP.EXECUTION_PHASE_FAILED
        err = _error(final)
        assert err.code == "AssignmentTooLarge" and not err.recoverable, err
        assert "max_message_bytes" in err.message
        small = server.start_execution(mod.one, s="still here")
        assert server.wait(small).phase == EP.EXECUTION_PHASE_SUCCEEDED
        st = server.stats()
        assert st.sessions == 1 and st.too_large == 1 and st.lost == 0
    finally:
        worker.close()


MAPPED = """
from plait import map_task, task, workflow


@task(queue="mapped")
def make() -> list[int]:
    return list(range(300_000))


@task(queue="mapped")
def double(x: int) -> int:
    return 2 * x


@workflow
def wf() -> list[int]:
    return map_task(double)(x=make())
"""


def test_a_map_over_an_offloaded_list_fails_clearly(server: EngineServer, tmp_path: Path) -> None:
    from plait import _types
    from plait._data import DataClient

    mod = _module(tmp_path, "mapped", MAPPED)
    server.register(mod.wf)
    channel = grpc.insecure_channel(server.address)
    data = DataClient(channel)
    items = _types.to_literal(list(range(300_000)), list[int], var="o0")
    list_type = _types.literal_type(list[int], where="o0")

    def offloaded(a: ws.Assignment) -> literals_pb2.LiteralMap:
        out = literals_pb2.LiteralMap()
        execution = a.task_execution_id.node_execution_id.execution_id
        out.literals["o0"].CopyFrom(data.offload(execution, items, list_type))
        return out

    worker = RawWorker(server.address, "mapped", outputs=offloaded, heartbeat=10)
    try:
        final = server.wait(server.start_execution(mod.wf))
        assert final.phase == EP.EXECUTION_PHASE_FAILED
        err = _error(final)
        # Not a map over an empty list: the engine says why it cannot map.
        assert err.code == "ArrayInputOffloaded" and "['x']" in err.message, err
    finally:
        worker.close()
        channel.close()


ROUTED = """
from plait import task, workflow


@task(name="routing.which", queue="routing", retries={n})
def which() -> int:
    return {n}


@workflow
def wf() -> int:
    return which()
"""


class Workers:
    """`run_worker` processes, stopped at the end."""

    def __init__(self, address: str, log_dir: Path) -> None:
        self.address = address
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, worker_id: str, path: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        code = (
            "import logging, sys\n"
            "logging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
            "from plait._worker import run_worker\n"
            f"run_worker({self.address!r}, [{str(path)!r}], slots=2, worker_id={worker_id!r})\n"
        )
        with open(self.log_dir / f"{worker_id}.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-c", code], stdout=log, stderr=log, cwd=cwd or self.log_dir
            )
        self.procs.append(proc)
        return proc

    def log(self, worker_id: str) -> str:
        return (self.log_dir / f"{worker_id}.log").read_text()

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)


@pytest.fixture
def workers(server: EngineServer, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(server.address, tmp_path)
    yield w
    w.close()


def test_each_version_goes_to_a_worker_that_serves_it(
    server: EngineServer, workers: Workers, tmp_path: Path
) -> None:
    paths = {}
    mods = {}
    for n in (1, 2, 3):
        paths[n] = tmp_path / f"routed{n}.py"
        paths[n].write_text(ROUTED.format(n=n))
        mods[n] = _loader.load_path(str(paths[n]))
    versions = {n: mods[n].which.template.id.version for n in mods}
    assert len(set(versions.values())) == 3
    workers.start("routed-1", paths[1])
    workers.start("routed-2", paths[2])
    server.wait_for(lambda st: {"routed-1", "routed-2"} <= set(st.workers))
    for n in (1, 2):
        for _ in range(3):  # each time to the one worker that has the code
            rec = server.start_execution(mods[n].wf)
            assert server.outputs(mods[n].wf, server.wait(rec)) == n
    done = server.stats().completed_by_worker
    assert done == {"routed-1": 3, "routed-2": 3}

    # Version 3: registered, but no connected worker has its code. It waits, QUEUED, and
    # the node says why.
    server.register(mods[3].wf)
    rec = server.start_execution(mods[3].wf)
    end = time.monotonic() + 10
    while True:
        queued = [n for n in server.nodes(rec) if n.phase == EP.NODE_PHASE_QUEUED]
        if queued:
            break
        assert time.monotonic() < end, "the waiting node was not journaled QUEUED"
        time.sleep(0.05)
    why = queued[0].detail
    assert f"routing.which version {versions[3]}" in why
    assert versions[1] in why and versions[2] in why  # what the connected workers serve
    assert server.stats().waiting == 1
    counts = server.on_loop(lambda: server.engine.executions.counts(rec))
    assert counts.get("queued") == 1, counts
    time.sleep(0.5)
    assert not server.call(server.engine.executions.by_eid(rec.eid)).terminal
    workers.start("routed-3", paths[3])
    assert server.outputs(mods[3].wf, server.wait(rec)) == 3
    (node,) = [n for n in server.nodes(rec) if n.node_id == queued[0].node_id]
    assert node.phase == EP.NODE_PHASE_SUCCEEDED and node.detail == ""
    assert server.stats().completed_by_worker.get("routed-3") == 1


CHATTY = """
import logging
import sys
import time

from plait import task, workflow


@task(queue="chatty")
def chatty(n: int) -> int:
    print("out line", n)
    print("err line", file=sys.stderr)
    logging.getLogger("chatty").warning("logged %d", n)
    print("before sleep", flush=True)
    time.sleep(2.0)
    print("after sleep")
    return n


@workflow
def wf(n: int) -> int:
    return chatty(n=n)
"""


def test_task_output_reaches_stream_logs_while_it_runs(
    server: EngineServer, workers: Workers, tmp_path: Path
) -> None:
    path = tmp_path / "chatty.py"
    path.write_text(CHATTY)
    mod = _loader.load_path(str(path))
    workers.start("chatty-1", path)
    server.wait_for(lambda st: "chatty-1" in st.workers)
    rec = server.start_execution(mod.wf, n=3)
    eid = identifier_pb2.ExecutionIdentifier(project=rec.project, domain=rec.domain, name=rec.name)
    seen: list[tuple[float, es.LogLine]] = []
    with grpc.insecure_channel(server.address) as channel:
        stub = es_grpc.ExecutionServiceStub(channel)
        for response in stub.StreamLogs(es.StreamLogsRequest(id=eid, follow=True), timeout=30):
            seen.extend((time.monotonic(), line) for line in response.lines)
            if any(line.text == "before sleep" for line in response.lines):
                running = server.call(server.engine.executions.by_eid(rec.eid))
                assert not running.terminal  # streamed live, while the task sleeps
        final = server.wait(rec)
        assert server.outputs(mod.wf, final) == 3
        time.sleep(0.5)  # the engine writes logs in batches every 100 ms
        everything = [
            line
            for response in stub.StreamLogs(es.StreamLogsRequest(id=eid), timeout=30)
            for line in response.lines
        ]
    assert any(line.text == "before sleep" for _, line in seen)
    lines = [(line.stream, line.text) for line in everything]
    # The followed stream ended with the execution and still carried its last lines.
    assert [(line.stream, line.text) for _, line in seen] == lines
    assert lines == [
        (es.LOG_STREAM_STDOUT, "out line 3"),
        (es.LOG_STREAM_STDERR, "err line"),
        (es.LOG_STREAM_LOGGER, "WARNING chatty: logged 3"),
        (es.LOG_STREAM_STDOUT, "before sleep"),
        (es.LOG_STREAM_STDOUT, "after sleep"),
    ]
    assert {(line.node_id, line.attempt) for line in everything} == {("n0", 1)}
    # Captured, not printed by the worker.
    assert "before sleep" not in workers.log("chatty-1")
