"""Deleting executions and retention: what is deleted goes with its nodes, events, logs and
blobs, and the data dir stays bounded under a steady load."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import grpc
import pytest
from plait_engine.app import Engine
from plait_engine.errors import FailedPrecondition, NotFound
from plait_engine.store import ExecutionFilter
from plaitidl.core.v1 import execution_pb2
from plaitidl.service.v1 import execution_service_pb2 as es
from plaitidl.service.v1 import execution_service_pb2_grpc as es_grpc

from tests.support.engines import start, with_engine
from tests.support.servers import EngineProcess, start_worker
from tests.workflows import behaviours as b

EP = execution_pb2
SUCCEEDED = EP.EXECUTION_PHASE_SUCCEEDED


def _dir_bytes(path: Path) -> int:
    total = 0
    for root, _, names in os.walk(path):
        for name in names:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:  # deleted meanwhile
                pass
    return total


def test_delete_removes_everything_of_a_finished_execution(tmp_path: Path) -> None:
    async def body(engine: Engine) -> None:
        big = await start(engine, b.big_wf, n=100_000)  # offloaded outputs: blobs on disk
        final = await engine.executions.wait(big, timeout=60)
        assert final.phase == EP.EXECUTION_PHASE_SUCCEEDED
        blobs = tmp_path / "data" / "blobs"
        mine = [p for p in blobs.rglob("*") if final.name in p.parts and p.is_file()]
        assert mine, "the big list should have been offloaded"
        await engine.executions.delete(final)
        with pytest.raises(NotFound):
            await engine.executions.get("", "", final.name)
        assert await engine.store.node_records(final.eid) == []
        assert await engine.store.events(final.eid, 0, 10) == []
        assert not any(p.exists() for p in mine)
        with pytest.raises(NotFound):
            await engine.executions.delete(final)

        stuck = await start(engine, b.stuck_wf, x=1)
        with pytest.raises(FailedPrecondition, match="terminate it"):
            await engine.executions.delete(stuck)
        await engine.executions.terminate(stuck, "done")
        await engine.executions.wait(stuck, timeout=10)
        await engine.executions.delete(await engine.executions.by_eid(stuck.eid))

    with_engine(tmp_path, body)


def test_a_cache_entry_whose_outputs_are_gone_or_corrupt_is_a_miss(tmp_path: Path) -> None:
    async def run(engine: Engine, n: int) -> int:
        rec = await start(engine, b.cached_big_wf, n=n)
        return (await engine.executions.wait(rec, timeout=60)).phase

    async def body(engine: Engine) -> None:
        b.CALLS.clear()
        first = await start(engine, b.cached_big_wf, n=100_000)  # outputs offloaded: a blob
        assert (await engine.executions.wait(first, timeout=60)).phase == SUCCEEDED
        assert await run(engine, 100_000) == SUCCEEDED  # a hit
        assert b.CALLS["cached_big_list:100000"] == 1
        # The entry outlives the execution that produced it.
        await engine.executions.delete(await engine.executions.by_eid(first.eid))
        assert await run(engine, 100_000) == SUCCEEDED
        assert b.CALLS["cached_big_list:100000"] == 1
        # A blob changed or lost on disk: the lookup misses and the task runs again (nothing
        # else waits on it).
        assert await run(engine, 90_000) == SUCCEEDED
        blobs = [p for p in (tmp_path / "data" / "blobs").rglob("*") if p.is_file()]
        for p in blobs:
            p.write_bytes(p.read_bytes()[:-8] + b"corrupt!")
        assert await run(engine, 90_000) == SUCCEEDED
        assert b.CALLS["cached_big_list:90000"] == 2
        assert await run(engine, 90_000) == SUCCEEDED  # the new entry is a hit again
        assert b.CALLS["cached_big_list:90000"] == 2
        for p in (tmp_path / "data" / "blobs").rglob("*"):
            if p.is_file():
                p.unlink()
        assert await run(engine, 90_000) == SUCCEEDED
        assert b.CALLS["cached_big_list:90000"] == 3

    with_engine(tmp_path, body)


def test_retention_keeps_the_data_dir_bounded(tmp_path: Path) -> None:
    data = tmp_path / "data"
    sizes: list[int] = []

    async def body(engine: Engine) -> None:
        for _ in range(8):
            recs = [await start(engine, b.big_wf, n=40_000) for _ in range(4)]
            recs += [await start(engine, b.cached_wf, x=int(time.time() * 1000) % 10**9)]
            for rec in recs:
                assert (await engine.executions.wait(rec, timeout=60)).phase == (
                    EP.EXECUTION_PHASE_SUCCEEDED
                )
            await asyncio.sleep(1.1)  # older than the retention of 1 s
            await engine.retention.sweep(time.time())
            sizes.append(_dir_bytes(data))
        left = await engine.store.list_executions(ExecutionFilter(), 100)
        assert len(left) <= 5  # only what finished within the last second
        assert engine.retention.deleted >= 30

    with_engine(tmp_path, body, retention=1.0)
    # After the first rounds the size stops growing: deleted space is reused.
    assert max(sizes[4:]) <= 1.2 * max(sizes[:4]), sizes


def test_delete_execution_over_grpc(engine: EngineProcess) -> None:
    from plait import Client

    worker = start_worker(engine.address, "tests/workflows/behaviours.py")
    try:
        with Client(engine.address) as client:
            run = client.execute(b.branch_wf, {"x": 2})
            assert client.wait(run, timeout=60) == 4
    finally:
        worker.kill()
        worker.wait()
    with grpc.insecure_channel(engine.address) as channel:
        stub = es_grpc.ExecutionServiceStub(channel)
        stub.DeleteExecution(es.DeleteExecutionRequest(id=run.id))
        with pytest.raises(grpc.RpcError) as info:
            stub.GetExecution(es.GetExecutionRequest(id=run.id))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as info:
            stub.DeleteExecution(es.DeleteExecutionRequest(id=run.id))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
