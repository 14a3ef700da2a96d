"""The scheduler over the in-memory store: isolation, a faulty store, min_successes, recovery.

These run the real scheduler, compiler and SDK tasks in this process; only the store is the
in-memory backend (which passes the same conformance suite as SQLite).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest
from plait import _embedded, _loader, _runtime, _serialize
from plait_engine.app import Engine, build_engine
from plait_engine.config import EngineConfig
from plait_engine.executors import Outcome, TaskRunner
from plait_engine.store import ExecutionRecord, Store
from plait_engine.store.faults import FaultyStore
from plait_engine.store.memory import MemoryStore
from plaitidl.core.v1 import (
    dynamic_job_pb2,
    errors_pb2,
    events_pb2,
    execution_pb2,
    identifier_pb2,
    interface_pb2,
    literals_pb2,
    tasks_pb2,
    types_pb2,
    workflow_pb2,
)

from tests.workflows import behaviours as b

ROOT = Path(__file__).resolve().parents[2]
generate_others = _loader.load_path(str(ROOT / "examples" / "generate_others.py"))
merge_sort = _loader.load_path(str(ROOT / "examples" / "merge_sort.py"))

EP = execution_pb2


def _engine(
    tmp_path: Path, store: Store, runner: TaskRunner = _runtime.execute, task_threads: int = 8
) -> Engine:
    return build_engine(
        EngineConfig(data_dir=tmp_path / "data"),
        task_runner=runner,
        runner_checks_outputs=runner is _runtime.execute,
        store=store,
        task_threads=task_threads,
    )


def _run(
    tmp_path: Path,
    store: Store,
    body: Callable[[Engine], Awaitable[None]],
    *,
    adopt: bool = False,
    **kw: Any,
) -> None:
    async def main() -> None:
        engine = _engine(tmp_path, store, **kw)
        engine.scheduler.config.adopt = adopt  # a server adopts; the embedded runner does not
        await engine.start()
        try:
            await body(engine)
        finally:
            await engine.stop()

    asyncio.run(main())


async def _start(engine: Engine, entity: Any, **inputs: object) -> ExecutionRecord:
    bundle = _serialize.collect(entity)
    await engine.registry.register(bundle.tasks, bundle.workflows, bundle.launch_plans)
    return await engine.executions.create(
        workflow_id=bundle.root, inputs=_embedded.inputs_to_literals(entity, inputs)
    )


async def _value(engine: Engine, entity: Any, rec: ExecutionRecord) -> object:
    final = await engine.executions.wait(rec, timeout=60)
    assert final.phase == EP.EXECUTION_PHASE_SUCCEEDED, errors_pb2.ExecutionError.FromString(
        final.error
    )
    _, out = await engine.executions.data(final)
    return _serialize.outputs_to_python(entity, out)


# A mix of workflows with the answer plain Python gives.
MIX: list[tuple[Any, dict[str, object], object]] = [
    (generate_others.fan_out, {"tasks_count": 30}, [i * i for i in range(30)]),
    (
        merge_sort.merge_sort,
        {"numbers": [9, 3, 7, 1, 8, 2, 6, 4, 5, 0], "numbers_count": 10},
        list(range(10)),
    ),
    (b.branch_wf, {"x": 4}, 16),
    (b.branch_wf, {"x": -4}, 4),
    (b.map_wf, {"xs": [1, 2, 3]}, [1, 4, 9]),
    (b.cached_wf, {"x": 3}, 30),
]


def test_a_store_that_fails_commits_before_and_after_loses_nothing(tmp_path: Path) -> None:
    faulty = FaultyStore(MemoryStore(), rate=0.3, seed=7)

    async def body(engine: Engine) -> None:
        recs = [
            (entity, await _start(engine, entity, **inputs), want) for entity, inputs, want in MIX
        ]
        for entity, rec, want in recs:
            assert await _value(engine, entity, rec) == want

    _run(tmp_path, cast(Store, faulty), body)
    assert faulty.injected_before > 0 and faulty.injected_after > 0


def test_failing_reads_delay_work_but_lose_none(tmp_path: Path) -> None:
    faulty = FaultyStore(
        MemoryStore(),
        rate=0.3,
        methods=frozenset({"cache_get_many", "get_payload", "node_records", "apply"}),
        seed=3,
    )

    async def body(engine: Engine) -> None:
        recs = [
            (entity, await _start(engine, entity, **inputs), want) for entity, inputs, want in MIX
        ]
        for entity, rec, want in recs:
            assert await _value(engine, entity, rec) == want

    _run(tmp_path, cast(Store, faulty), body)
    assert faulty.injected_before + faulty.injected_after > 5


def test_an_exception_handling_one_execution_fails_only_that_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryStore()
    victim: list[int] = []

    async def body(engine: Engine) -> None:
        tasks = engine.scheduler.walker.tasks
        real = tasks.on_result

        def broken(n: Any, r: Any) -> None:
            if n.frame.run.eid in victim:
                raise RuntimeError("injected fault")
            real(n, r)

        tasks.on_result = broken  # type: ignore[method-assign]
        bad = await _start(engine, generate_others.fan_out, tasks_count=5)
        victim.append(bad.eid)
        good = [(e, await _start(engine, e, **i), w) for e, i, w in MIX]
        final = await engine.executions.wait(bad, timeout=30)
        assert final.phase == EP.EXECUTION_PHASE_FAILED
        err = errors_pb2.ExecutionError.FromString(final.error)
        assert err.code == "InternalError" and "injected fault" in err.message
        assert err.kind == errors_pb2.ExecutionError.KIND_SYSTEM
        for entity, rec, want in good:
            assert await _value(engine, entity, rec) == want
        # Its unfinished nodes ended with it.
        assert all(
            n.phase not in (EP.NODE_PHASE_RUNNING, EP.NODE_PHASE_DYNAMIC_RUNNING)
            for n in await engine.store.node_records(bad.eid)
        )

    with caplog.at_level(logging.ERROR, logger="plait.scheduler"):
        _run(tmp_path, store, body)
    assert any("injected fault" in str(r.exc_info) for r in caplog.records)

    # After a restart on the same state, the failed one stays failed and new work runs.
    async def after(engine: Engine) -> None:
        rec = await _start(engine, b.branch_wf, x=3)
        assert await _value(engine, b.branch_wf, rec) == 9
        stored = await engine.executions.by_eid(victim[0])
        assert stored.phase == EP.EXECUTION_PHASE_FAILED

    _run(tmp_path, store, after)


# -- min_successes -----------------------------------------------------------------------------
INT = types_pb2.LiteralType(simple=types_pb2.SIMPLE_TYPE_INTEGER)
INTS = types_pb2.LiteralType(collection_type=INT)


def _vars(**types: types_pb2.LiteralType) -> interface_pb2.VariableMap:
    return interface_pb2.VariableMap(
        variables=[interface_pb2.Variable(name=k, type=v) for k, v in types.items()]
    )


def _task(name: str, inputs: dict[str, Any], outputs: dict[str, Any]) -> tasks_pb2.TaskTemplate:
    return tasks_pb2.TaskTemplate(
        id=identifier_pb2.Identifier(name=name, version="v1"),
        interface=interface_pb2.TypedInterface(inputs=_vars(**inputs), outputs=_vars(**outputs)),
        worker=tasks_pb2.WorkerTarget(queue="default", handler=name),
    )


CHECK = _task("check", {"n": INT}, {"out": INT})  # fails for odd n
GEN = _task("gen", {"n": INT}, {"out": INT})  # yields n checks and keeps the first


def _int_binding(v: int) -> literals_pb2.BindingData:
    lit = literals_pb2.Literal()
    lit.scalar.primitive.integer = v
    return literals_pb2.BindingData(literal=lit)


def _runner(min_successes: int) -> TaskRunner:
    def run(
        template: tasks_pb2.TaskTemplate, inputs: literals_pb2.LiteralMap, context: object = None
    ) -> Outcome:
        n = inputs.literals["n"].scalar.primitive.integer
        if template.id.name == "check":
            if n % 2:
                return errors_pb2.ExecutionError(code="Odd", message=f"{n} is odd")
            out = literals_pb2.LiteralMap()
            out.literals["out"].scalar.primitive.integer = n
            return out
        nodes = [
            workflow_pb2.Node(
                id=f"c{i}",
                task_node=workflow_pb2.TaskNode(task_id=CHECK.id),
                inputs=[literals_pb2.Binding(var="n", binding=_int_binding(i))],
            )
            for i in range(n)
        ]
        return dynamic_job_pb2.DynamicJobSpec(
            nodes=nodes,
            min_successes=min_successes,
            outputs=[
                literals_pb2.Binding(
                    var="out",
                    binding=literals_pb2.BindingData(
                        promise=literals_pb2.OutputReference(node_id="c0", var="out")
                    ),
                )
            ],
            tasks=[CHECK],
        )

    return run


def _gen_workflow() -> workflow_pb2.WorkflowTemplate:
    return workflow_pb2.WorkflowTemplate(
        id=identifier_pb2.Identifier(name="gen.wf", version="v1"),
        interface=interface_pb2.TypedInterface(inputs=_vars(n=INT), outputs=_vars(out=INT)),
        nodes=[
            workflow_pb2.Node(
                id="g",
                task_node=workflow_pb2.TaskNode(task_id=GEN.id),
                inputs=[
                    literals_pb2.Binding(
                        var="n",
                        binding=literals_pb2.BindingData(
                            promise=literals_pb2.OutputReference(node_id="start-node", var="n")
                        ),
                    )
                ],
            )
        ],
        outputs=[
            literals_pb2.Binding(
                var="out",
                binding=literals_pb2.BindingData(
                    promise=literals_pb2.OutputReference(node_id="g", var="out")
                ),
            )
        ],
    )


@pytest.mark.parametrize(
    ("min_successes", "phase"), [(3, "SUCCEEDED"), (4, "FAILED"), (0, "FAILED")]
)
def test_dynamic_min_successes_tolerates_failed_nodes(
    tmp_path: Path, min_successes: int, phase: str
) -> None:
    async def body(engine: Engine) -> None:
        wf = _gen_workflow()
        await engine.registry.register(tasks=[GEN, CHECK], workflows=[wf])
        inputs = literals_pb2.LiteralMap()
        inputs.literals["n"].scalar.primitive.integer = 6  # 0, 2, 4 succeed; 1, 3, 5 fail
        rec = await engine.executions.create(workflow_id=wf.id, inputs=inputs)
        final = await engine.executions.wait(rec, timeout=30)
        assert final.phase == getattr(EP, f"EXECUTION_PHASE_{phase}")
        nodes = {n.node_id: n.phase for n in await engine.store.node_records(rec.eid)}
        if phase == "SUCCEEDED":
            _, out = await engine.executions.data(final)
            assert out.literals["out"].scalar.primitive.integer == 0
            assert [nodes[f"g/c{i}"] for i in range(6)] == [
                EP.NODE_PHASE_SUCCEEDED,
                EP.NODE_PHASE_FAILED,
            ] * 3
        else:
            err = errors_pb2.ExecutionError.FromString(final.error)
            assert err.code == "Odd"

    _run(tmp_path, MemoryStore(), body, runner=_runner(min_successes))


def test_a_restart_resumes_from_the_same_store(tmp_path: Path) -> None:
    store = MemoryStore()
    started: list[ExecutionRecord] = []

    async def first(engine: Engine) -> None:
        started.append(await _start(engine, b.stuck_wf, x=1))
        for _ in range(200):
            if engine.executions.counts(started[0])["running"]:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("never started")

    _run(tmp_path, store, first)

    async def second(engine: Engine) -> None:
        # The first engine released its lease on stop: this one adopts at once.
        for _ in range(200):
            if engine.scheduler.run_of(started[0].eid) is not None:
                break
            await asyncio.sleep(0.01)
        rec = await engine.executions.by_eid(started[0].eid)
        assert rec.owner == engine.scheduler.owner
        await engine.executions.terminate(rec, "done testing")
        final = await engine.executions.wait(rec, timeout=10)
        assert final.phase == EP.EXECUTION_PHASE_ABORTED

    _run(tmp_path, store, second, adopt=True)


# -- retries: backoff and priority -----------------------------------------------------------
FLAKY = _task("flaky", {"n": INT}, {"out": INT})


def _retry_workflow(
    task: tasks_pb2.TaskTemplate, node_ids: list[str]
) -> workflow_pb2.WorkflowTemplate:
    def node(nid: str) -> workflow_pb2.Node:
        return workflow_pb2.Node(
            id=nid,
            task_node=workflow_pb2.TaskNode(task_id=task.id),
            inputs=[literals_pb2.Binding(var="n", binding=_int_binding(int(nid[1:])))],
        )

    return workflow_pb2.WorkflowTemplate(
        id=identifier_pb2.Identifier(name=f"{task.id.name}.wf", version="v1"),
        interface=interface_pb2.TypedInterface(inputs=_vars(), outputs=_vars(out=INT)),
        nodes=[node(nid) for nid in node_ids],
        outputs=[
            literals_pb2.Binding(
                var="out",
                binding=literals_pb2.BindingData(
                    promise=literals_pb2.OutputReference(node_id=node_ids[0], var="out")
                ),
            )
        ],
    )


def test_retries_back_off_exponentially(tmp_path: Path) -> None:
    task = tasks_pb2.TaskTemplate()
    task.CopyFrom(FLAKY)
    r = task.metadata.retries
    r.retries = 3
    r.backoff.FromMilliseconds(300)
    r.backoff_multiplier = 2.0
    r.backoff_jitter = 0.0
    starts: list[float] = []

    def run(template: tasks_pb2.TaskTemplate, inputs: Any, context: object = None) -> Outcome:
        starts.append(time.monotonic())
        if len(starts) < 3:
            return errors_pb2.ExecutionError(code="Flaky", message="again", recoverable=True)
        out = literals_pb2.LiteralMap()
        out.literals["out"].scalar.primitive.integer = len(starts)
        return out

    async def body(engine: Engine) -> None:
        wf = _retry_workflow(task, ["n0"])
        await engine.registry.register(tasks=[task], workflows=[wf])
        rec = await engine.executions.create(workflow_id=wf.id)
        final = await engine.executions.wait(rec, timeout=30)
        assert final.phase == EP.EXECUTION_PHASE_SUCCEEDED
        events = [
            events_pb2.ExecutionEvent.FromString(b)
            for _, b in await engine.store.events(rec.eid, 0, 100)
        ]
        retrying = [e.node for e in events if e.node.phase == EP.NODE_PHASE_RETRYING]
        assert len(retrying) == 2 and all(t.HasField("retry_at") for t in retrying)

    _run(tmp_path, MemoryStore(), body, runner=run)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(starts) == 3
    assert 0.25 <= gaps[0] < 0.6, gaps  # 300 ms
    assert 0.55 <= gaps[1] < 1.0, gaps  # 600 ms


def test_a_retry_does_not_wait_behind_the_queue(tmp_path: Path) -> None:
    """With a long queue of slow tasks, a failed attempt is tried again at once, not after
    the queue drained."""
    task = tasks_pb2.TaskTemplate()
    task.CopyFrom(FLAKY)
    task.metadata.retries.retries = 1
    task.metadata.retries.backoff.FromMilliseconds(0)
    seen: dict[int, list[float]] = {}

    def run(template: tasks_pb2.TaskTemplate, inputs: Any, context: object = None) -> Outcome:
        n = inputs.literals["n"].scalar.primitive.integer
        seen.setdefault(n, []).append(time.monotonic())
        if n == 0 and len(seen[0]) == 1:
            return errors_pb2.ExecutionError(code="Flaky", message="again", recoverable=True)
        if n:
            time.sleep(0.05)
        out = literals_pb2.LiteralMap()
        out.literals["out"].scalar.primitive.integer = n
        return out

    async def body(engine: Engine) -> None:
        wf = _retry_workflow(task, [f"n{i}" for i in range(60)])
        await engine.registry.register(tasks=[task], workflows=[wf])
        rec = await engine.executions.create(workflow_id=wf.id)
        final = await engine.executions.wait(rec, timeout=60)
        assert final.phase == EP.EXECUTION_PHASE_SUCCEEDED

    _run(tmp_path, MemoryStore(), body, runner=run, task_threads=2)
    last_start = max(times[0] for times in seen.values())
    retried = seen[0][1]
    # 59 slow tasks on 2 threads take ~1.5 s; the retry ran long before the last one started.
    assert retried < last_start - 0.5, (retried, last_start)
