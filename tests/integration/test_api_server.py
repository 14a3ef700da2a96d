"""The engine as a gRPC server: a real `plait serve` subprocess, a real SQLite file."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from plait import Client, InvalidArgumentError, NotFoundError, RpcError
from plait._errors import AlreadyExistsError, UnauthenticatedError
from plaitidl.core.v1 import (
    execution_pb2,
    identifier_pb2,
    interface_pb2,
    literals_pb2,
    tasks_pb2,
    types_pb2,
    workflow_pb2,
)
from plaitidl.service.v1 import execution_service_pb2 as es
from plaitidl.service.v1 import registry_service_pb2 as rs

from tests.support.servers import EngineProcess, start_engine

ROOT = Path(__file__).resolve().parents[2]
INT = types_pb2.LiteralType(simple=types_pb2.SIMPLE_TYPE_INTEGER)
INT_LIST = types_pb2.LiteralType(collection_type=INT)
EP = execution_pb2


def _iface(
    inputs: dict[str, types_pb2.LiteralType], outputs: dict[str, types_pb2.LiteralType]
) -> interface_pb2.TypedInterface:
    def vmap(d: dict[str, types_pb2.LiteralType]) -> interface_pb2.VariableMap:
        return interface_pb2.VariableMap(
            variables=[interface_pb2.Variable(name=k, type=v) for k, v in d.items()]
        )

    return interface_pb2.TypedInterface(inputs=vmap(inputs), outputs=vmap(outputs))


def _promise(node: str, var: str) -> literals_pb2.BindingData:
    return literals_pb2.BindingData(promise=literals_pb2.OutputReference(node_id=node, var=var))


def _fan_out(version: str = "v1") -> tuple[tasks_pb2.TaskTemplate, workflow_pb2.WorkflowTemplate]:
    """A bash dynamic generator (process target) and a one-node workflow around it."""
    task = tasks_pb2.TaskTemplate(
        id=identifier_pb2.Identifier(name="api.fan_out", version=version),
        type="dynamic",
        interface=_iface({"n": INT}, {"out": INT_LIST}),
        process=tasks_pb2.ProcessTarget(
            command=[
                "bash",
                str(ROOT / "examples/process/fan_out.sh"),
                "{{.input}}",
                "{{.outputPrefix}}",
            ]
        ),
    )
    return task, _wrap(task, "api.fan_out.wf")


def _wrap(
    task: tasks_pb2.TaskTemplate, name: str, source: str = "start-node"
) -> workflow_pb2.WorkflowTemplate:
    node = workflow_pb2.Node(
        id="gen",
        task_node=workflow_pb2.TaskNode(task_id=task.id),
        inputs=[literals_pb2.Binding(var="n", binding=_promise(source, "n"))],
    )
    return workflow_pb2.WorkflowTemplate(
        id=identifier_pb2.Identifier(name=name, version=task.id.version),
        interface=_iface({"n": INT}, {"out": INT_LIST}),
        nodes=[node],
        outputs=[literals_pb2.Binding(var="out", binding=_promise("gen", "out"))],
    )


def _ints(n: int) -> literals_pb2.LiteralMap:
    m = literals_pb2.LiteralMap()
    m.literals["n"].scalar.primitive.integer = n
    return m


# -- health, reflection ---------------------------------------------------------------------


def test_health_and_reflection(engine: EngineProcess) -> None:
    with grpc.insecure_channel(engine.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "plaitidl.service.v1.ExecutionService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING

        # Only grpc_reflection's own messages: no plait generated code is needed.
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(
                file_containing_symbol="plaitidl.service.v1.ExecutionService"
            ),
        ]
        listed, files = list(stub.ServerReflectionInfo(iter(requests), timeout=5))
        names = {s.name for s in listed.list_services_response.service}
        assert {
            "plaitidl.service.v1.RegistryService",
            "plaitidl.service.v1.ExecutionService",
            "plaitidl.service.v1.WorkerService",
            "grpc.health.v1.Health",
        } <= names
        protos = [
            descriptor_pb2.FileDescriptorProto.FromString(b)
            for b in files.file_descriptor_response.file_descriptor_proto
        ]
        svc = next(p for p in protos if p.name.endswith("execution_service.proto"))
        assert "CreateExecution" in {m.name for m in svc.service[0].method}


# -- registry -------------------------------------------------------------------------------


def test_register_get_list_and_page(engine: EngineProcess) -> None:
    with Client(engine.address) as client:
        tasks = [
            tasks_pb2.TaskTemplate(
                id=identifier_pb2.Identifier(project="paging", name=f"t{i}", version="v1"),
                interface=_iface({"n": INT}, {"out": INT_LIST}),
                worker=tasks_pb2.WorkerTarget(queue="q", handler=f"m:t{i}"),
            )
            for i in range(5)
        ]
        first = client.register_templates(rs.RegisterRequest(tasks=tasks))
        assert len(first.created) == 5 and not first.unchanged
        again = client.register_templates(rs.RegisterRequest(tasks=tasks))
        assert not again.created and len(again.unchanged) == 5

        got = client._call(
            client.registry.GetTask,
            rs.GetTaskRequest(id=identifier_pb2.Identifier(project="paging", name="t3")),
        )
        assert got.task.worker.handler == "m:t3" and got.task.id.domain == "development"

        seen: list[str] = []
        token = ""
        pages = 0
        while True:
            request = rs.ListTasksRequest(project="paging", page_size=2, page_token=token)
            reply = client._call(client.registry.ListTasks, request)
            seen += [t.id.name for t in reply.tasks]
            pages += 1
            token = reply.next_page_token
            if not token:
                break
        assert pages == 3 and sorted(seen) == [f"t{i}" for i in range(5)]

        with pytest.raises(InvalidArgumentError) as bad_token:
            client._call(client.registry.ListTasks, rs.ListTasksRequest(page_token="not-a-token"))
        assert bad_token.value.violations[0][0] == "page_token"

        changed = tasks_pb2.TaskTemplate()
        changed.CopyFrom(tasks[0])
        changed.worker.handler = "m:other"
        with pytest.raises(AlreadyExistsError):
            client.register_templates(rs.RegisterRequest(tasks=[changed]))

        with pytest.raises(NotFoundError):
            client._call(
                client.registry.GetWorkflow,
                rs.GetWorkflowRequest(id=identifier_pb2.Identifier(name="nope")),
            )
        with pytest.raises(InvalidArgumentError) as no_name:
            client._call(client.registry.GetTask, rs.GetTaskRequest())
        assert no_name.value.violations[0][0] == "id"


def test_malformed_workflow_names_the_node(engine: EngineProcess) -> None:
    task, _ = _fan_out("dangling")
    wf = _wrap(task, "api.dangling", source="missing-node")
    with Client(engine.address) as client, pytest.raises(InvalidArgumentError) as err:
        client.register_templates(rs.RegisterRequest(tasks=[task], workflows=[wf]))
    assert err.value.code == "INVALID_ARGUMENT"
    fields = [f for f, _ in err.value.violations]
    assert any(f.startswith("workflows[0].") and "nodes" in f for f in fields), fields
    assert "missing-node" in str(err.value.violations)


def test_oversize_message_is_refused(engine: EngineProcess) -> None:
    task, _ = _fan_out("huge")
    task.custom.update({"blob": "x" * (2 << 20)})
    with Client(engine.address) as client, pytest.raises(RpcError) as err:
        client.register_templates(rs.RegisterRequest(tasks=[task]))
    assert err.value.code == "RESOURCE_EXHAUSTED"


# -- executions -------------------------------------------------------------------------------


def test_create_execution_validates_and_is_idempotent(engine: EngineProcess) -> None:
    task, wf = _fan_out("create")
    with Client(engine.address) as client:
        client.register_templates(rs.RegisterRequest(tasks=[task], workflows=[wf]))
        a = client.execute(wf.id, {"n": 0}, request_id="same-key")
        b = client.execute(wf.id, {"n": 0}, request_id="same-key")
        assert a.name == b.name

        with pytest.raises(NotFoundError):
            client.execute(identifier_pb2.Identifier(name="no.such.wf"), literals_pb2.LiteralMap())

        wrong = literals_pb2.LiteralMap()
        wrong.literals["n"].scalar.primitive.string_value = "three"
        with pytest.raises(InvalidArgumentError) as err:
            client.execute(wf.id, wrong)
        assert [f for f, _ in err.value.violations] == ["inputs.n"]

        with pytest.raises(InvalidArgumentError) as no_target:
            client._call(client.executions.CreateExecution, es.CreateExecutionRequest())
        assert no_target.value.violations[0][0] == "target"
        with pytest.raises(InvalidArgumentError) as no_name:
            client.get(es.Execution().id)
        assert no_name.value.violations[0][0] == "id.name"
        with pytest.raises(NotFoundError):
            client.get("no-such-execution")
        assert client.wait(a, timeout=30) == []


def test_dynamic_run_watch_resume_nodes_and_spec(engine: EngineProcess) -> None:
    task, wf = _fan_out("run")
    with Client(engine.address) as client:
        client.register_templates(rs.RegisterRequest(tasks=[task], workflows=[wf]))
        handle = client.execute(wf.id, {"n": 3}, labels={"team": "api"})
        assert client.wait(handle, timeout=30) == [0, 1, 2]

        events = [e for batch in client.watch(handle) for e in batch.events]
        seqs = [e.sequence for e in events]
        assert seqs == list(range(1, len(seqs) + 1))
        assert events[-1].execution.phase == EP.EXECUTION_PHASE_SUCCEEDED
        middle = seqs[len(seqs) // 2]
        rest = [e.sequence for b in client.watch(handle, after_sequence=middle) for e in b.events]
        assert rest == seqs[seqs.index(middle) + 1 :]

        state = client.get(handle)
        assert state.phase == EP.EXECUTION_PHASE_SUCCEEDED
        assert state.labels["team"] == "api" and state.last_sequence == seqs[-1]
        assert state.nodes.succeeded == state.nodes.total >= 4
        assert state.workflow_id.name == "api.fan_out.wf" and state.workflow_id.version == "run"

        nodes = client.node_executions(handle)
        by_id = {n.id.node_id: n for n in nodes}
        assert by_id["gen"].is_dynamic and by_id["gen"].task_id.name == "api.fan_out"
        children = client.node_executions(handle, parent_node_id="gen")
        assert len(children) == 3 and all(n.parent_node_id == "gen" for n in children)

        spec = client.dynamic_spec(handle, "gen")
        assert len(spec.spec.nodes) == 3 and spec.generator.id.name == "api.fan_out"
        with pytest.raises(NotFoundError):
            client.dynamic_spec(handle, children[0].id.node_id)

        request = es.GetNodeExecutionDataRequest()
        request.id.node_id = "gen"
        request.id.execution_id.CopyFrom(state.id)
        data = client._call(client.executions.GetNodeExecutionData, request)
        assert data.inputs.literals["n"].scalar.primitive.integer == 3
        assert len(data.outputs.literals["out"].collection.literals) == 3

        listed = client.list_executions(limit=1000)
        assert handle.name in {e.id.name for e in listed}


def test_terminate_execution_waiting_for_a_worker(engine: EngineProcess) -> None:
    task = tasks_pb2.TaskTemplate(
        id=identifier_pb2.Identifier(name="api.nobody", version="v1"),
        interface=_iface({"n": INT}, {"out": INT_LIST}),
        worker=tasks_pb2.WorkerTarget(queue="no-worker-serves-this", handler="m:f"),
    )
    wf = _wrap(task, "api.nobody.wf")
    with Client(engine.address) as client:
        client.register_templates(rs.RegisterRequest(tasks=[task], workflows=[wf]))
        handle = client.execute(wf.id, {"n": 1})
        state = client.terminate(handle, reason="no worker will come")
        assert state.phase == EP.EXECUTION_PHASE_ABORTED
        assert client.terminate(handle).phase == EP.EXECUTION_PHASE_ABORTED  # no-op now


# -- auth and shutdown --------------------------------------------------------------------------


def test_token_auth_then_sigterm_exits_zero(
    tmp_path: Path, engine_factory: list[EngineProcess]
) -> None:
    proc = start_engine(tmp_path, "--token", "s3cret")
    engine_factory.append(proc)
    for token in (None, "wrong"):
        with Client(proc.address, token=token) as client, pytest.raises(UnauthenticatedError):
            client.list_executions()
        with Client(proc.address, token=token) as client, pytest.raises(UnauthenticatedError):
            list(client.watch("x"))
    with Client(proc.address, token="s3cret") as client:
        assert client.list_executions() == []
        with pytest.raises(NotFoundError):
            list(client.watch("x"))
    started = time.monotonic()
    assert proc.stop() == 0
    assert time.monotonic() - started < 8
