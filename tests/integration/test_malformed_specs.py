"""Malformed dynamic specs fail their node with a non-retryable user error naming the node,
the execution fails cleanly, and the engine keeps running other executions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from plait_engine.app import build_engine
from plait_engine.config import EngineConfig
from plait_engine.executors import Outcome
from plaitidl.core.v1 import (
    dynamic_job_pb2,
    errors_pb2,
    execution_pb2,
    identifier_pb2,
    interface_pb2,
    literals_pb2,
    tasks_pb2,
    types_pb2,
    workflow_pb2,
)

EP = execution_pb2
INT = types_pb2.LiteralType(simple=types_pb2.SIMPLE_TYPE_INTEGER)


def _vars(**types: types_pb2.LiteralType) -> interface_pb2.VariableMap:
    return interface_pb2.VariableMap(
        variables=[interface_pb2.Variable(name=k, type=v) for k, v in types.items()]
    )


def _task(name: str, handler: str) -> tasks_pb2.TaskTemplate:
    return tasks_pb2.TaskTemplate(
        id=identifier_pb2.Identifier(name=name, version="v1"),
        type="dynamic",
        interface=interface_pb2.TypedInterface(inputs=_vars(n=INT), outputs=_vars(out=INT)),
        worker=tasks_pb2.WorkerTarget(queue="default", handler=handler),
        metadata=tasks_pb2.TaskMetadata(retries=tasks_pb2.RetryStrategy(retries=3)),
    )


ECHO = _task("echo", "echo")


def _promise(node: str, var: str) -> literals_pb2.BindingData:
    return literals_pb2.BindingData(promise=literals_pb2.OutputReference(node_id=node, var=var))


def _int(v: int) -> literals_pb2.BindingData:
    lit = literals_pb2.Literal()
    lit.scalar.primitive.integer = v
    return literals_pb2.BindingData(literal=lit)


def _node(
    node_id: str, task: tasks_pb2.TaskTemplate, n: literals_pb2.BindingData
) -> workflow_pb2.Node:
    return workflow_pb2.Node(
        id=node_id,
        task_node=workflow_pb2.TaskNode(task_id=task.id),
        inputs=[literals_pb2.Binding(var="n", binding=n)],
    )


def _spec(
    nodes: list[workflow_pb2.Node], out: literals_pb2.BindingData, *tasks: tasks_pb2.TaskTemplate
) -> dynamic_job_pb2.DynamicJobSpec:
    return dynamic_job_pb2.DynamicJobSpec(
        nodes=nodes,
        outputs=[literals_pb2.Binding(var="out", binding=out)],
        tasks=[ECHO, *tasks],
    )


def _bad_spec(kind: str) -> dynamic_job_pb2.DynamicJobSpec:
    if kind == "cycle":
        return _spec(
            [_node("a", ECHO, _promise("b", "out")), _node("b", ECHO, _promise("a", "out"))],
            _promise("a", "out"),
        )
    if kind == "dangling":
        return _spec([_node("a", ECHO, _promise("ghost", "out"))], _promise("a", "out"))
    if kind == "mismatch":
        s = literals_pb2.Literal()
        s.scalar.primitive.string_value = "not an int"
        return _spec([_node("a", ECHO, literals_pb2.BindingData(literal=s))], _promise("a", "out"))
    if kind == "too_many":
        nodes = [_node(f"n{i}", ECHO, _int(i)) for i in range(21)]
        return _spec(nodes, _promise("n0", "out"))
    if kind == "override":
        # Same identifier as the registered ECHO, other content.
        impostor = tasks_pb2.TaskTemplate()
        impostor.CopyFrom(ECHO)
        impostor.worker.handler = "something_else"
        spec = _spec([_node("a", ECHO, _int(1))], _promise("a", "out"))
        spec.tasks[0].CopyFrom(impostor)
        return spec
    if kind == "too_deep":
        # Calls itself forever: only the depth limit stops it.
        return _spec(
            [_node("again", DEEP, _promise("start-node", "n"))], _promise("again", "out"), DEEP
        )
    raise AssertionError(kind)


DEEP = _task("too_deep", "too_deep")
KINDS = {
    "cycle": "cycle",
    "dangling": "ghost",
    "mismatch": "expected int",
    "too_many": "20",
    "too_deep": "depth",
    "override": "immutable",
}


def runner(
    template: tasks_pb2.TaskTemplate, inputs: literals_pb2.LiteralMap, context: object = None
) -> Outcome:
    handler = template.worker.handler
    if handler == "echo":
        out = literals_pb2.LiteralMap()
        out.literals["out"].CopyFrom(inputs.literals["n"])
        return out
    return _bad_spec(handler)


def _workflow(gen: tasks_pb2.TaskTemplate) -> workflow_pb2.WorkflowTemplate:
    return workflow_pb2.WorkflowTemplate(
        id=identifier_pb2.Identifier(name=f"wf.{gen.id.name}", version="v1"),
        interface=interface_pb2.TypedInterface(inputs=_vars(n=INT), outputs=_vars(out=INT)),
        nodes=[_node("gen", gen, _promise("start-node", "n"))],
        outputs=[literals_pb2.Binding(var="out", binding=_promise("gen", "out"))],
    )


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_malformed_spec_fails_its_node_and_nothing_else(tmp_path: Path, kind: str) -> None:
    gen = _task(f"gen_{kind}", kind)
    good = _task("good", "echo")

    async def main() -> None:
        config = EngineConfig(data_dir=tmp_path / "data", max_nodes=20, max_depth=4)
        engine = build_engine(config, task_runner=runner)
        await engine.start()
        try:
            bad_wf, good_wf = _workflow(gen), _workflow(good)
            await engine.registry.register(
                tasks=[gen, good, DEEP, ECHO], workflows=[bad_wf, good_wf]
            )
            inputs = literals_pb2.LiteralMap()
            inputs.literals["n"].scalar.primitive.integer = 3
            bad = await engine.executions.create(workflow_id=bad_wf.id, inputs=inputs)
            ok = await engine.executions.create(workflow_id=good_wf.id, inputs=inputs)
            final_bad = await engine.executions.wait(bad, timeout=30)
            final_ok = await engine.executions.wait(ok, timeout=30)
            assert final_bad.phase == EP.EXECUTION_PHASE_FAILED
            err = errors_pb2.ExecutionError.FromString(final_bad.error)
            assert err.code == "InvalidDynamicSpec"
            assert err.kind == errors_pb2.ExecutionError.KIND_USER and not err.recoverable
            assert KINDS[kind] in err.message + err.details
            # max_depth=4: four nested specs run, the fifth is refused.
            failed_node = "gen/again/again/again/again" if kind == "too_deep" else "gen"
            assert err.node_id == failed_node
            assert f"node {failed_node!r}" in err.message
            node = await engine.store.get_node(final_bad.eid, failed_node)
            assert node is not None and node.attempt == 1  # not retried despite retries=3
            assert node.phase == EP.NODE_PHASE_FAILED
            # The other execution was not disturbed.
            assert final_ok.phase == EP.EXECUTION_PHASE_SUCCEEDED
            # And the engine still takes new work.
            again = await engine.executions.create(workflow_id=good_wf.id, inputs=inputs)
            assert (
                await engine.executions.wait(again, timeout=30)
            ).phase == EP.EXECUTION_PHASE_SUCCEEDED
        finally:
            await engine.stop()

    asyncio.run(main())
