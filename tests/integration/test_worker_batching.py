"""Stream messages are coalesced both ways: an engine and its gRPC server on a loop of this
process (to read its counters), a real `plait worker` process, and a session written here.

- a `plait worker` with several slots answers a burst of quick tasks with fewer `ResultBatch`
  messages than results, while each hop of a chain (nothing else in flight) is answered on
  its own, without waiting for neighbours;
- the assignments one scheduler pass makes for a session go out in one `AssignmentBatch`, and
  a `ResultBatch` answering them all is applied as a whole.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from plait import _loader
from plaitidl.core.v1 import execution_pb2
from plaitidl.service.v1 import worker_service_pb2 as ws
from plaitidl.service.v1 import worker_service_pb2_grpc as ws_grpc

from tests.support.inproc import EngineServer
from tests.support.servers import start_worker

EP = execution_pb2

QUICK = """
from plait import dynamic, task, workflow


@task(queue="quick")
def inc(x: int) -> int:
    return x + 1


@dynamic
def fan(n: int) -> list[int]:
    return [inc(x=i) for i in range(n)]


@workflow
def fan_out(n: int) -> list[int]:
    return fan(n=n)


@dynamic
def chain_dyn(n: int) -> int:
    x = inc(x=0)
    for _ in range(n - 1):
        x = inc(x=x)
    return x


@workflow
def chain(n: int) -> int:
    return chain_dyn(n=n)
"""

WIDE = """
from plait import task, workflow


@task(queue="raw")
def echo(s: str) -> str:
    return s


@workflow
def wide(s: str) -> list[str]:
    return [echo(s=s) for _ in range(12)]
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EngineServer]:
    s = EngineServer(tmp_path / "engine")
    yield s
    s.close()


def _module(tmp_path: Path, name: str, text: str) -> tuple[Path, Any]:
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    return path, _loader.load_path(str(path))


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_a_worker_answers_a_burst_in_fewer_messages_and_a_chain_hop_by_hop(
    server: EngineServer, tmp_path: Path
) -> None:
    path, mod = _module(tmp_path, "quick_tasks", QUICK)
    worker = start_worker(
        server.address, str(path), extra_args=("--slots", "16"), log=tmp_path / "worker.log"
    )
    try:
        server.wait_for(lambda st: st.sessions == 1)
        before = server.stats()
        rec = server.start_execution(mod.fan_out, n=400)
        assert server.outputs(mod.fan_out, server.wait(rec, timeout=120)) == list(range(1, 401))
        after = server.stats()
        results = after.results_received - before.results_received
        messages = after.result_messages - before.result_messages
        assert results == 401  # the dynamic and its 400 tasks
        # Results finishing close together share a message (measured: 30-60 messages here;
        # 80-140 when each result leaves as soon as the sender sees it).
        assert messages * 4 <= results, (messages, results)
        sent = after.assignments_sent - before.assignments_sent
        assert (after.assignment_messages - before.assignment_messages) * 3 <= sent

        # A chain has one task in flight at a time: each result leaves on its own, at once.
        before = server.stats()
        rec = server.start_execution(mod.chain, n=20)
        assert server.outputs(mod.chain, server.wait(rec, timeout=60)) == 20
        after = server.stats()
        assert after.results_received - before.results_received == 21
        assert after.result_messages - before.result_messages == 21
    finally:
        _stop(worker)


class _BatchingSession:
    """A worker written here: answers every assignment message with one `ResultBatch`."""

    def __init__(self, address: str, slots: int) -> None:
        self.batches: list[list[str]] = []
        self._out: queue.Queue[ws.SessionRequest | None] = queue.Queue()
        hello = ws.Hello(worker_id="batching", queues=["raw"], slots=slots, language="test")
        self._out.put(ws.SessionRequest(hello=hello))
        self._channel = grpc.insecure_channel(address)
        stub = ws_grpc.WorkerServiceStub(self._channel)
        self._call: Any = stub.Session(iter(self._out.get, None))
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for response in self._call:
                if not response.HasField("assignments"):
                    continue
                got = list(response.assignments.assignments)
                self.batches.append([a.assignment_id for a in got])
                results = []
                for a in got:
                    r = ws.TaskResult(assignment_id=a.assignment_id, attempt=a.attempt)
                    r.outputs.literals["o0"].scalar.primitive.string_value = "ok"
                    results.append(r)
                self._out.put(ws.SessionRequest(results=ws.ResultBatch(results=results)))
        except grpc.RpcError:
            pass

    def close(self) -> None:
        self._out.put(None)
        self._call.cancel()
        self._thread.join(5)
        self._channel.close()


def test_a_pass_assigns_in_one_message_and_a_batch_of_results_lands_whole(
    server: EngineServer, tmp_path: Path
) -> None:
    _, mod = _module(tmp_path, "wide_tasks", WIDE)
    server.register(mod.wide)
    session = _BatchingSession(server.address, slots=12)
    try:
        server.wait_for(lambda st: st.sessions == 1)
        before = server.stats()
        rec = server.start_execution(mod.wide, s="x")
        assert server.outputs(mod.wide, server.wait(rec, timeout=60)) == ["ok"] * 12
        after = server.stats()
        assert [len(b) for b in session.batches] == [12]
        assert after.assignment_messages - before.assignment_messages == 1
        assert after.result_messages - before.result_messages == 1
        assert after.results_received - before.results_received == 12
        assert after.completed_by_worker == {"batching": 12}
    finally:
        session.close()
