"""Process targets: a generator written in bash yields a spec that the engine runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

from plait_engine.app import Engine, build_engine
from plait_engine.config import EngineConfig
from plaitidl.core.v1 import (
    errors_pb2,
    execution_pb2,
    identifier_pb2,
    interface_pb2,
    literals_pb2,
    tasks_pb2,
    types_pb2,
    workflow_pb2,
)

ROOT = Path(__file__).resolve().parents[2]
INT = types_pb2.LiteralType(simple=types_pb2.SIMPLE_TYPE_INTEGER)
INT_LIST = types_pb2.LiteralType(collection_type=INT)


def _iface(
    inputs: dict[str, types_pb2.LiteralType], outputs: dict[str, types_pb2.LiteralType]
) -> interface_pb2.TypedInterface:
    return interface_pb2.TypedInterface(
        inputs=interface_pb2.VariableMap(
            variables=[interface_pb2.Variable(name=k, type=v) for k, v in inputs.items()]
        ),
        outputs=interface_pb2.VariableMap(
            variables=[interface_pb2.Variable(name=k, type=v) for k, v in outputs.items()]
        ),
    )


def _task(
    name: str, command: list[str], iface: interface_pb2.TypedInterface
) -> tasks_pb2.TaskTemplate:
    return tasks_pb2.TaskTemplate(
        id=identifier_pb2.Identifier(name=name, version="v1"),
        type="dynamic",
        interface=iface,
        process=tasks_pb2.ProcessTarget(command=command),
    )


def _single_node_workflow(task: tasks_pb2.TaskTemplate) -> workflow_pb2.WorkflowTemplate:
    node = workflow_pb2.Node(
        id="gen",
        task_node=workflow_pb2.TaskNode(task_id=task.id),
        inputs=[
            literals_pb2.Binding(
                var="n",
                binding=literals_pb2.BindingData(
                    promise=literals_pb2.OutputReference(node_id="start-node", var="n")
                ),
            )
        ],
    )
    return workflow_pb2.WorkflowTemplate(
        id=identifier_pb2.Identifier(name=f"{task.id.name}.wf", version="v1"),
        interface=_iface({"n": INT}, {"out": INT_LIST}),
        nodes=[node],
        outputs=[
            literals_pb2.Binding(
                var="out",
                binding=literals_pb2.BindingData(
                    promise=literals_pb2.OutputReference(node_id="gen", var="out")
                ),
            )
        ],
    )


async def _run(tmp_path: Path, task: tasks_pb2.TaskTemplate, n: int) -> tuple[Engine, object]:
    engine = build_engine(EngineConfig(data_dir=tmp_path / "data", allow_process=("*",)))
    await engine.start()
    wf = _single_node_workflow(task)
    await engine.registry.register(tasks=[task], workflows=[wf])
    inputs = literals_pb2.LiteralMap()
    inputs.literals["n"].scalar.primitive.integer = n
    rec = await engine.executions.create(workflow_id=wf.id, inputs=inputs)
    final = await engine.executions.wait(rec, timeout=60)
    return engine, final


def test_bash_generator_yields_a_spec_that_runs(tmp_path: Path) -> None:
    task = _task(
        "examples.process.fan_out",
        ["bash", str(ROOT / "examples/process/fan_out.sh"), "{{.input}}", "{{.outputPrefix}}"],
        _iface({"n": INT}, {"out": INT_LIST}),
    )

    async def main() -> None:
        engine, final = await _run(tmp_path, task, 12)
        try:
            assert final.phase == execution_pb2.EXECUTION_PHASE_SUCCEEDED, final.error  # type: ignore[attr-defined]
            _, out = await engine.executions.data(final)  # type: ignore[arg-type]
            values = [
                lit.scalar.primitive.integer for lit in out.literals["out"].collection.literals
            ]
            assert values == list(range(12))
            nodes = {n.node_id: n for n in await engine.store.node_records(final.eid)}  # type: ignore[attr-defined]
            assert nodes["gen"].is_dynamic
            assert nodes["gen"].phase == execution_pb2.NODE_PHASE_SUCCEEDED
            # The sub-graph's node ids derive from the generator's.
            assert {f"gen/n{i}" for i in range(12)} <= set(nodes)
            specs = await engine.store.dynamic_specs(final.eid)  # type: ignore[attr-defined]
            assert [(s.node_id, s.depth) for s in specs] == [("gen", 1)]
        finally:
            await engine.stop()

    asyncio.run(main())


def test_process_that_writes_nothing_fails_its_node(tmp_path: Path) -> None:
    task = _task("examples.process.silent", ["true"], _iface({"n": INT}, {"out": INT_LIST}))

    async def main() -> None:
        engine, final = await _run(tmp_path, task, 1)
        try:
            assert final.phase == execution_pb2.EXECUTION_PHASE_FAILED  # type: ignore[attr-defined]
            err = errors_pb2.ExecutionError.FromString(final.error)  # type: ignore[attr-defined]
            assert err.code == "BadProcessOutput" and err.node_id == "gen"
            assert "exactly one of outputs.pb, futures.pb or error.pb" in err.message
        finally:
            await engine.stop()

    asyncio.run(main())


def test_process_crash_is_a_system_error_retried_then_failed(tmp_path: Path) -> None:
    task = _task(
        "examples.process.crash",
        ["bash", "-c", "echo boom >&2; exit 3"],
        _iface({"n": INT}, {"out": INT_LIST}),
    )

    async def main() -> None:
        engine, final = await _run(tmp_path, task, 1)
        try:
            assert final.phase == execution_pb2.EXECUTION_PHASE_FAILED  # type: ignore[attr-defined]
            err = errors_pb2.ExecutionError.FromString(final.error)  # type: ignore[attr-defined]
            assert err.kind == errors_pb2.ExecutionError.KIND_SYSTEM
            assert "exited with 3" in err.message and "boom" in err.message
            node = await engine.store.get_node(final.eid, "gen")  # type: ignore[attr-defined]
            assert node is not None and node.attempt == 4  # 1 + the default 3 system retries
        finally:
            await engine.stop()

    asyncio.run(main())
