"""`WatchExecution` with `counts_only` against a real `plait serve` and `plait worker`: counts and
the execution's own transitions instead of every event, what `plait run --remote` follows."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import threading
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import grpc
import pytest
from plait import Client, InvalidArgumentError
from plait._client import map_rpc_error
from plaitidl.core.v1 import execution_pb2
from plaitidl.service.v1 import execution_service_pb2 as es

from tests.support.servers import ROOT, EngineProcess, plait_command, start_worker
from tests.workflows import chatty

CHATTY = str(ROOT / "tests" / "workflows" / "chatty.py")
EP = execution_pb2
Responses = list[es.WatchExecutionResponse]


@contextmanager
def worker(address: str, log: Path) -> Iterator[None]:
    proc = start_worker(address, CHATTY, log=log)
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _phases(responses: Responses) -> list[int]:
    return [e.execution.phase for r in responses for e in r.events]


def _only_execution_events(responses: Responses) -> bool:
    return all(
        len(r.events) <= 1 and e.WhichOneof("transition") == "execution"
        for r in responses
        for e in r.events
    )


def test_counts_only_follows_a_fan_out_with_few_small_messages(
    engine: EngineProcess, tmp_path: Path
) -> None:
    n = 200
    with worker(engine.address, tmp_path / "worker.log"), Client(engine.address) as client:
        handle = client.execute(chatty.sleepy_wf, {"n": n, "seconds": 0.01})
        full: Responses = []
        watching = threading.Thread(target=lambda: full.extend(client.watch(handle)))
        watching.start()
        started = time.monotonic()
        counts = list(client.watch(handle, counts_only=True))
        took = time.monotonic() - started
        watching.join(60)
    assert not watching.is_alive()

    last = counts[-1]
    assert last.nodes.total == last.nodes.succeeded == n + 1
    assert _phases(counts)[-1] == EP.EXECUTION_PHASE_SUCCEEDED
    assert counts[-1].events[0].sequence == last.sequence == full[-1].events[-1].sequence
    succeeded = [r.nodes.succeeded for r in counts]
    assert succeeded == sorted(succeeded) and len(set(succeeded)) > 2  # it rose as it ran
    assert any(x.name == "sleepy" and x.count >= 1 for r in counts for x in r.running)
    assert _only_execution_events(counts)
    # The full watcher gets every node's transitions; this one at most ten views a second.
    node_events = sum(1 for r in full for e in r.events if e.WhichOneof("transition") == "node")
    assert node_events >= 2 * (n + 1)
    assert len(counts) <= 10 * took + 3 and 3 * len(counts) < len(full)
    assert sum(r.ByteSize() for r in counts) * 10 < sum(r.ByteSize() for r in full)


def test_a_failure_and_its_error_reach_a_counts_only_watcher(
    engine: EngineProcess, tmp_path: Path
) -> None:
    with worker(engine.address, tmp_path / "worker.log"), Client(engine.address) as client:
        handle = client.execute(chatty.doomed_wf, {"reason": "the disk is full"})
        responses = list(client.watch(handle, counts_only=True))
    assert _only_execution_events(responses)
    end = responses[-1].events[-1].execution
    assert end.phase == EP.EXECUTION_PHASE_FAILED
    assert end.error.node_id == "n0" and "the disk is full" in end.error.message
    assert responses[-1].nodes.failed == 1 and not responses[-1].running


def test_waiting_reason_then_resume_after_a_disconnect(
    engine: EngineProcess, tmp_path: Path
) -> None:
    with Client(engine.address) as client:
        handle = client.execute(chatty.sleepy_wf, {"n": 3, "seconds": 0.3})
        stream = cast(Generator[es.WatchExecutionResponse], client.watch(handle, counts_only=True))
        seen: Responses = []
        for r in stream:
            seen.append(r)
            if r.waiting:
                break
        stream.close()  # a client that goes away in the middle
        assert "no connected worker serves" in seen[-1].waiting
        assert seen[-1].nodes.queued == 1 and not seen[-1].running
        assert _phases(seen)[0] in (EP.EXECUTION_PHASE_QUEUED, EP.EXECUTION_PHASE_RUNNING)
        after = seen[-1].sequence
        with worker(engine.address, tmp_path / "worker.log"):
            resumed = list(client.watch(handle, after, counts_only=True))
        assert all(r.sequence > after for r in resumed)
        assert any(r.running for r in resumed) and not resumed[-1].waiting
        assert _phases(resumed)[0] == EP.EXECUTION_PHASE_RUNNING  # the phase it is in
        assert _phases(resumed)[-1] == EP.EXECUTION_PHASE_SUCCEEDED
        assert resumed[-1].nodes.succeeded == 4
        # Resuming after the end: the final view, once, then the stream ends.
        again = list(client.watch(handle, resumed[-1].sequence, counts_only=True))
        assert len(again) == 1 and _phases(again) == [EP.EXECUTION_PHASE_SUCCEEDED]


def test_counts_only_with_node_id_is_refused_naming_the_field(engine: EngineProcess) -> None:
    request = es.WatchExecutionRequest(counts_only=True, node_id="n0")
    request.id.name = "any"
    with Client(engine.address) as client, pytest.raises(grpc.RpcError) as raw:
        list(client.executions.WatchExecution(request))
    assert raw.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    refused = map_rpc_error(raw.value)
    assert isinstance(refused, InvalidArgumentError)
    assert refused.violations[0][0] == "node_id" and "counts_only" in refused.violations[0][1]


def _read_pty(leader: int, until: float) -> bytes:
    ready, _, _ = select.select([leader], [], [], max(until - time.monotonic(), 0))
    if not ready:
        return b""
    try:
        return os.read(leader, 4096)
    except OSError:  # the other end closed
        return b""


def test_plait_run_remote_shows_waiting_running_and_the_end(
    engine: EngineProcess, tmp_path: Path
) -> None:
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "PLAIT_ENGINE"}
    proc = subprocess.Popen(
        plait_command(
            "run", "--remote", engine.address, CHATTY, "sleepy_wf", "--n", "6", "--seconds", "0.5"
        ),
        cwd=ROOT,
        env={**env, "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    seen = b""
    worker_proc: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            chunk = _read_pty(leader, deadline)
            if not chunk and proc.poll() is not None:
                break
            seen += chunk
            if worker_proc is None and b"waiting: no connected worker serves" in seen:
                worker_proc = start_worker(engine.address, CHATTY, log=tmp_path / "worker.log")
        out, _ = proc.communicate(timeout=30)
    finally:
        os.close(leader)
        for p in (proc, worker_proc):
            if p is not None and p.poll() is None:
                p.terminate()
                p.wait(10)
    assert proc.returncode == 0 and json.loads(out) == [0.5] * 6
    text = seen.decode(errors="replace")
    assert worker_proc is not None, text
    frames = [f for f in text.replace("\n", "\r").split("\r") if "nodes done" in f]
    assert any("; running sleepy x" in f for f in frames), frames
    assert frames[-1].startswith("[####################] 7/7 nodes done, 0 running, 0 queued")

    with worker(engine.address, tmp_path / "worker2.log"):
        failed = subprocess.run(
            plait_command(
                "run",
                "--remote",
                engine.address,
                CHATTY,
                "doomed_wf",
                "--reason",
                "the disk is full",
            ),
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert failed.returncode == 1
    assert "error at node n0 (doomed): NonRetryableError: the disk is full" in failed.stderr
