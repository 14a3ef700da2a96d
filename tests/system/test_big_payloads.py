"""A 200 MB input and a 200 MB output between a client, `plait serve` and `plait worker`, with
messages capped at 4 MiB: every large value travels in chunks through DataService.

The worker runs in its own working directory and home, and only ever sees ``plait-data://``
URIs: it reads and writes the values through the engine, never from the engine's disk. The
engine refuses any message over 4 MiB (both ways), so the run succeeding proves that no
message came near the size of the values.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from plait import Client, _loader
from plaitidl.service.v1 import data_service_pb2 as ds
from plaitidl.service.v1 import data_service_pb2_grpc as ds_grpc
from plaitidl.service.v1 import execution_service_pb2 as es

from tests.support.servers import EngineProcess, plait_command, start_engine

MB = 1 << 20
LIMIT = 4 * MB
SIZE = 200 * MB

TASKS = """
from plait import task, workflow


@task(queue="big")
def reverse(data: bytes) -> bytes:
    return data[::-1]


@workflow
def wf(data: bytes) -> bytes:
    return reverse(data=data)
"""


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineProcess]:
    proc = start_engine(tmp_path, "--max-message-bytes", str(LIMIT))
    try:
        yield proc
    finally:
        proc.kill()


@pytest.fixture
def worker(engine: EngineProcess, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    home = tmp_path / "worker-home"
    cwd = tmp_path / "worker-cwd"
    home.mkdir()
    cwd.mkdir()
    (cwd / "big_tasks.py").write_text(TASKS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1")
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            plait_command("worker", "--engine", engine.address, "big_tasks.py"),
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def test_200_mb_in_and_out_through_data_service(
    engine: EngineProcess, worker: tuple[subprocess.Popen[bytes], Path], tmp_path: Path
) -> None:
    proc, log = worker
    mod = _loader.load_path(str(tmp_path / "worker-cwd" / "big_tasks.py"))
    data = os.urandom(SIZE)
    started = time.monotonic()
    with Client(engine.address, max_message_bytes=LIMIT, timeout=120) as client:
        handle = client.execute(mod.wf, {"data": data})
        out = client.wait(handle, timeout=600)
        assert isinstance(out, bytes) and len(out) == SIZE
        assert hashlib.sha256(out).digest() == hashlib.sha256(data[::-1]).digest()
        del out

        # As stored: references, in a response far below the message limit.
        raw = client.data(handle, resolve=False)
        assert raw.ByteSize() < 64 * 1024
        refs = [raw.inputs.literals["data"].offloaded, raw.outputs.literals["o0"].offloaded]
        for ref in refs:
            assert ref.uri.startswith(f"plait-data://default/development/{handle.name}/")
            assert ref.size_bytes > SIZE and len(ref.sha256) == 64
        folder = engine.data_dir / "blobs" / "executions" / "default" / "development" / handle.name
        assert sorted(p.name for p in (folder / "+data").iterdir()) == sorted(
            r.sha256 for r in refs
        )

        # Deleting the execution deletes its payloads.
        client.executions.DeleteExecution(es.DeleteExecutionRequest(id=handle.id), timeout=30)
        assert not folder.exists()
        with grpc.insecure_channel(engine.address) as channel:
            read = ds_grpc.DataServiceStub(channel).ReadData(ds.ReadDataRequest(uri=refs[1].uri))
            with pytest.raises(grpc.RpcError) as info:
                list(read)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    elapsed = time.monotonic() - started
    assert proc.poll() is None, log.read_text()
    text = log.read_text()
    assert "RESOURCE_EXHAUSTED" not in text and "lost its session" not in text, text
    # The worker never wrote anything where it runs: values went through the engine.
    assert [p.name for p in (tmp_path / "worker-cwd").iterdir() if p.name != "__pycache__"] == [
        "big_tasks.py"
    ]
    print(f"200 MB in and out in {elapsed:.1f}s")
