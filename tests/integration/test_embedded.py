"""The engine core on the embedded engine: caching, retries, timeouts, branches, failures."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from plait import _embedded, _serialize
from plait_engine.app import Engine
from plait_engine.store import ExecutionFilter, ExecutionRecord
from plaitidl.core.v1 import errors_pb2, execution_pb2, literals_pb2

from tests.support.engines import outputs, start, with_engine
from tests.workflows import behaviours as b

EP = execution_pb2


def run(entity: Any, data_dir: Path, **inputs: object) -> _embedded.RunResult:
    return _embedded.run(entity, _embedded.inputs_to_literals(entity, inputs), data_dir)


def value(entity: Any, result: _embedded.RunResult) -> object:
    assert result.phase == "SUCCEEDED", result.error
    return _serialize.outputs_to_python(entity, result.outputs)


async def node_attempts(engine: Engine, rec: ExecutionRecord) -> dict[str, tuple[int, int]]:
    return {n.node_id: (n.phase, n.attempt) for n in await engine.store.node_records(rec.eid)}


def test_cache_hit_skips_the_body_and_a_new_version_runs_it(tmp_path: Path) -> None:
    b.CALLS.clear()
    first = run(b.cached_wf, tmp_path, x=7)
    second = run(b.cached_wf, tmp_path, x=7)
    assert value(b.cached_wf, first) == value(b.cached_wf, second) == 70
    assert b.CALLS["expensive:7"] == 1
    assert second.counts["cached"] == 1
    # Other inputs are another key.
    assert value(b.cached_wf, run(b.cached_wf, tmp_path, x=8)) == 80
    assert b.CALLS["expensive:8"] == 1
    # A new cache_version invalidates.
    assert value(b.cached_wf_v2, run(b.cached_wf_v2, tmp_path, x=7)) == 70
    assert b.CALLS["expensive:7"] == 2


def test_dynamic_node_outputs_are_cached(tmp_path: Path) -> None:
    b.CALLS.clear()
    one = run(b.cached_dynamic_wf, tmp_path, n=4)
    two = run(b.cached_dynamic_wf, tmp_path, n=4)
    assert value(b.cached_dynamic_wf, one) == value(b.cached_dynamic_wf, two) == [0, 1, 4, 9]
    assert b.CALLS["cached_fan_out"] == 1


def test_cache_serialize_runs_the_body_once_for_concurrent_runs(tmp_path: Path) -> None:
    b.CALLS.clear()

    async def body(engine: Engine) -> None:
        recs = [await start(engine, b.serialized_wf, x=41) for _ in range(3)]
        finals = await asyncio.gather(*(engine.executions.wait(r, timeout=30) for r in recs))
        for f in finals:
            assert f.phase == EP.EXECUTION_PHASE_SUCCEEDED
            out = await outputs(engine, f)
            assert out.literals["o0"].scalar.primitive.integer == 42
        rows = [n for f in finals for n in await engine.store.node_records(f.eid)]
        statuses = sorted(n.cache_status for n in rows if n.node_id == "n0")
        assert statuses.count(EP.CACHE_STATUS_HIT) == 2
        assert statuses.count(EP.CACHE_STATUS_POPULATED) == 1

    with_engine(tmp_path, body)
    assert b.CALLS["slow_cached:41"] == 1


def test_recoverable_failures_are_retried_until_success(tmp_path: Path) -> None:
    b.CALLS.clear()

    async def body(engine: Engine) -> None:
        rec = await start(engine, b.flaky_wf, key="a")
        final = await engine.executions.wait(rec, timeout=30)
        assert final.phase == EP.EXECUTION_PHASE_SUCCEEDED
        out = await outputs(engine, final)
        assert out.literals["o0"].scalar.primitive.string_value == "ok after 3"
        assert (await node_attempts(engine, final))["n0"] == (EP.NODE_PHASE_SUCCEEDED, 3)
        # Each failed attempt left a RETRYING event carrying the task's message.
        events = [e for batch in [await engine.store.events(final.eid, 0, 100)] for _, e in batch]
        assert sum(b"transient failure" in e for e in events) == 2

    with_engine(tmp_path, body)


def test_non_recoverable_error_is_not_retried(tmp_path: Path) -> None:
    b.CALLS.clear()
    result = run(b.broken_wf, tmp_path, key="z")
    assert result.phase == "FAILED"
    assert result.error.code == "NonRetryableError"
    assert result.error.message == "bad input, retrying cannot help"
    assert result.error.node_id == "n0"
    assert not result.error.recoverable
    assert b.CALLS["broken:z"] == 1


def test_timeout_is_a_retryable_error_per_attempt(tmp_path: Path) -> None:
    b.CALLS.clear()
    result = run(b.sleepy_wf, tmp_path, seconds=1.5)
    assert result.phase == "FAILED"
    assert result.error.code == "Timeout"
    assert "attempt 2" in result.error.message and "0.3s" in result.error.message
    assert b.CALLS["sleepy"] == 2
    # A fast enough run succeeds.
    assert value(b.sleepy_wf, run(b.sleepy_wf, tmp_path, seconds=0.0)) == 0.0


def test_branch_runs_one_case_and_skips_the_others(tmp_path: Path) -> None:
    async def body(engine: Engine) -> None:
        pos = await start(engine, b.branch_wf, x=5)
        neg = await start(engine, b.branch_wf, x=-5)
        fp, fn = (
            await engine.executions.wait(pos, timeout=30),
            await engine.executions.wait(neg, timeout=30),
        )
        for final, expected in ((fp, 25), (fn, 5)):
            out = await outputs(engine, final)
            assert out.literals["o0"].scalar.primitive.integer == expected
        phases = {k: p for k, (p, _) in (await node_attempts(engine, fp)).items()}
        assert phases["n0/n0-case0"] == EP.NODE_PHASE_SUCCEEDED
        assert phases["n0/n0-else"] == EP.NODE_PHASE_SKIPPED
        phases = {k: p for k, (p, _) in (await node_attempts(engine, fn)).items()}
        assert phases["n0/n0-case0"] == EP.NODE_PHASE_SKIPPED
        assert phases["n0/n0-else"] == EP.NODE_PHASE_SUCCEEDED

    with_engine(tmp_path, body)


def test_map_task_runs_an_array_node(tmp_path: Path) -> None:
    assert value(b.map_wf, run(b.map_wf, tmp_path, xs=[1, 2, 3, 4])) == [1, 4, 9, 16]
    assert value(b.map_wf, run(b.map_wf, tmp_path, xs=[])) == []


def test_terminate_aborts_a_running_execution(tmp_path: Path) -> None:
    async def body(engine: Engine) -> None:
        rec = await start(engine, b.stuck_wf, x=1)
        for _ in range(100):
            await asyncio.sleep(0.02)
            if engine.executions.counts(rec)["running"]:
                break
        await engine.executions.terminate(rec, "user asked")
        final = await engine.executions.wait(rec, timeout=10)
        assert final.phase == EP.EXECUTION_PHASE_ABORTED
        err = errors_pb2.ExecutionError.FromString(final.error)
        assert err.code == "Terminated" and err.message == "user asked"
        assert (await node_attempts(engine, final))["n0"][0] == EP.NODE_PHASE_ABORTED

    with_engine(tmp_path, body)


def test_wrong_inputs_are_refused_before_anything_is_stored(tmp_path: Path) -> None:
    from plait_engine.errors import InvalidArgument

    async def body(engine: Engine) -> None:
        bundle = _serialize.collect(b.cached_wf)
        await engine.registry.register(bundle.tasks, bundle.workflows, bundle.launch_plans)
        bad = literals_pb2.LiteralMap()
        bad.literals["x"].scalar.primitive.string_value = "seven"
        with pytest.raises(InvalidArgument) as info:
            await engine.executions.create(workflow_id=bundle.root, inputs=bad)
        assert info.value.violations[0].field == "inputs.x"
        assert await engine.store.list_executions(ExecutionFilter(), 10) == []

    with_engine(tmp_path, body)


def test_large_literals_live_in_the_blob_store(tmp_path: Path) -> None:
    n = 200_000

    async def body(engine: Engine) -> None:
        rec = await start(engine, b.big_wf, n=n)
        final = await engine.executions.wait(rec, timeout=60)
        assert final.phase == EP.EXECUTION_PHASE_SUCCEEDED
        out = await outputs(engine, final)
        assert out.literals["o0"].scalar.primitive.integer == n * (n - 1) // 2
        row = await engine.store.get_node(final.eid, "n0")
        assert row is not None and engine.payloads.is_pointer(row.outputs)
        assert len(row.outputs) < 1000  # the store keeps a pointer, not the list
        blob_files = list((tmp_path / "data" / "blobs" / "payloads").rglob("*"))
        assert any(p.is_file() and p.stat().st_size > 200_000 for p in blob_files)
        data = await engine.executions.node_data(final, "n0")
        assert len(data.outputs.literals["o0"].collection.literals) == n

    with_engine(tmp_path, body)


def test_attempt_start_times_are_recorded_for_schedule_to_start(tmp_path: Path) -> None:
    from plaitidl.core.v1 import events_pb2

    async def body(engine: Engine) -> None:
        rec = await start(engine, b.cached_wf, x=99)
        final = await engine.executions.wait(rec, timeout=30)
        events = [
            events_pb2.ExecutionEvent.FromString(e)
            for _, e in await engine.store.events(final.eid, 0, 100)
        ]
        node = [e for e in events if e.HasField("node") and e.node.node_id == "n0"]
        running = next(e for e in node if e.node.phase == EP.NODE_PHASE_RUNNING)
        done = next(e for e in node if e.node.phase == EP.NODE_PHASE_SUCCEEDED)
        assert not running.node.HasField("started_at")  # unknown when dispatched
        assert done.node.HasField("started_at") and done.node.worker_id == "in-process"
        dispatched = running.occurred_at.ToNanoseconds()
        started = done.node.started_at.ToNanoseconds()
        assert dispatched - 50_000_000 <= started <= done.occurred_at.ToNanoseconds()

    with_engine(tmp_path, body)


def test_launch_plans_run_as_roots_and_as_nodes(tmp_path: Path) -> None:
    assert value(b.triple, run(b.triple, tmp_path, x=5)) == 15
    assert value(b.tenfold_by_default, run(b.tenfold_by_default, tmp_path, x=5)) == 50
    assert value(b.tenfold_by_default, run(b.tenfold_by_default, tmp_path, x=5, factor=4)) == 20
    # A launch-plan node inside a workflow: its fixed input applies.
    assert value(b.via_launch_plan, run(b.via_launch_plan, tmp_path, x=7)) == 21


def test_a_fixed_launch_plan_input_cannot_be_overridden(tmp_path: Path) -> None:
    from plait_engine.errors import InvalidArgument

    async def body(engine: Engine) -> None:
        bundle = _serialize.collect(b.triple)
        await engine.registry.register(bundle.tasks, bundle.workflows, bundle.launch_plans)
        inputs = _embedded.inputs_to_literals(b.scaled, {"x": 1, "factor": 9})
        with pytest.raises(InvalidArgument) as info:
            await engine.executions.create(launch_plan_id=bundle.root, inputs=inputs)
        assert info.value.violations[0].field == "inputs.factor"
        assert "fixed" in info.value.violations[0].description

    with_engine(tmp_path, body)


def test_a_waiter_takes_over_when_the_serialized_owner_fails(tmp_path: Path) -> None:
    b.CALLS.clear()

    async def body(engine: Engine) -> None:
        recs = [await start(engine, b.serialized_takeover_wf, x=5) for _ in range(2)]
        finals = await asyncio.gather(*(engine.executions.wait(r, timeout=30) for r in recs))
        phases = sorted(f.phase for f in finals)
        assert phases == [EP.EXECUTION_PHASE_SUCCEEDED, EP.EXECUTION_PHASE_FAILED]
        ok = next(f for f in finals if f.phase == EP.EXECUTION_PHASE_SUCCEEDED)
        assert (await outputs(engine, ok)).literals["o0"].scalar.primitive.integer == 10

    with_engine(tmp_path, body)
    # The owner ran once and failed; the waiter then computed: no third run.
    assert b.CALLS["first_call_fails:5"] == 2


def test_a_finished_execution_keeps_its_node_counts(tmp_path: Path) -> None:
    async def body(engine: Engine) -> None:
        rec = await start(engine, b.branch_wf, x=3)
        final = await engine.executions.wait(rec, timeout=30)
        assert final.counts == {"total": 3, "succeeded": 2, "running": 0, "failed": 0,
                                "skipped": 1, "cached": 0, "queued": 0}  # fmt: skip
        # Stored with the execution: a fresh read has them, and counting uses them.
        stored = await engine.store.get_execution_by_eid(final.eid)
        assert stored is not None and stored.counts == final.counts
        assert engine.executions.counts(stored) == final.counts

    with_engine(tmp_path, body)


def test_array_node_tolerates_failures_up_to_its_success_ratio(tmp_path: Path) -> None:
    ok = run(b.tolerant_map, tmp_path, xs=[2, 3, 4, 6])
    assert value(b.tolerant_map, ok) == [1, None, 2, 3]
    too_many = run(b.tolerant_map, tmp_path, xs=[1, 3, 5, 6])
    assert too_many.phase == "FAILED"
    assert too_many.error.code == "NonRetryableError" and "is odd" in too_many.error.message
    assert too_many.error.node_id.startswith("n0/")  # the element that broke the ratio


def test_terminate_inside_a_dynamic_sub_graph_aborts_it(tmp_path: Path) -> None:
    async def body(engine: Engine) -> None:
        rec = await start(engine, b.long_fan, n=40)
        for _ in range(200):
            await asyncio.sleep(0.05)
            if (
                engine.executions.counts(rec)["running"] > 2
            ):  # the generator and some of its children
                break
        await engine.executions.terminate(rec, "enough")
        final = await engine.executions.wait(rec, timeout=30)
        assert final.phase == EP.EXECUTION_PHASE_ABORTED
        phases = {n.node_id: n.phase for n in await engine.store.node_records(final.eid)}
        assert phases["n0"] == EP.NODE_PHASE_ABORTED
        assert EP.NODE_PHASE_RUNNING not in phases.values()
        children = [p for k, p in phases.items() if k.startswith("n0/")]
        assert EP.NODE_PHASE_ABORTED in children
        assert children.count(EP.NODE_PHASE_SUCCEEDED) < 40  # stopped before the fan-out ended
        assert final.counts is not None and final.counts["running"] == 0

    with_engine(tmp_path, body)
