"""Each failure an outside caller found (issue 10), tried again against a real server: a clear
refusal, or it works. (Others live next to their feature: the door's compiler checks in
tests/golden/compiler, trust and trailers in test_auth.py / test_api_boundary.py, the crash
window and chaos in tests/system, DataService and worker-protocol tests with the data plane.)"""

from __future__ import annotations

import grpc
import pytest
from plait import Client, _serialize
from plaitidl.core.v1 import identifier_pb2, types_pb2
from plaitidl.service.v1 import execution_service_pb2 as es
from plaitidl.service.v1 import execution_service_pb2_grpc as es_grpc
from plaitidl.service.v1 import registry_service_pb2_grpc as rs_grpc

from tests.support.servers import EngineProcess
from tests.workflows import behaviours as b


def _code(call: object) -> tuple[grpc.StatusCode, str]:
    try:
        call()  # type: ignore[operator]
    except grpc.RpcError as err:
        assert isinstance(err, grpc.Call)
        return err.code(), err.details() or ""
    return grpc.StatusCode.OK, ""


@pytest.fixture
def stubs(
    engine: EngineProcess,
) -> tuple[rs_grpc.RegistryServiceStub, es_grpc.ExecutionServiceStub]:
    channel = grpc.insecure_channel(engine.address)
    return rs_grpc.RegistryServiceStub(channel), es_grpc.ExecutionServiceStub(channel)


def _registered(engine: EngineProcess) -> identifier_pb2.Identifier:
    bundle = _serialize.collect(b.branch_wf)
    with Client(engine.address) as client:
        client.register_templates(bundle.register_request())
    return bundle.root


def test_huge_labels_are_refused_and_listing_keeps_working(
    engine: EngineProcess, stubs: tuple[object, es_grpc.ExecutionServiceStub]
) -> None:
    _, executions = stubs
    root = _registered(engine)
    request = es.CreateExecutionRequest(workflow_id=root, labels={"big": "x" * ((8 << 20) // 16)})
    request.inputs.literals["x"].scalar.primitive.integer = 1
    code, details = _code(lambda: executions.CreateExecution(request, timeout=30))
    assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert "labels" in details
    many = es.CreateExecutionRequest(workflow_id=root)
    many.inputs.literals["x"].scalar.primitive.integer = 1
    for i in range(80):
        many.labels[f"k{i}"] = "v"
    code, details = _code(lambda: executions.CreateExecution(many, timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "over the limit of 64" in details
    listed = executions.ListExecutions(es.ListExecutionsRequest(page_size=1000), timeout=30)
    assert listed is not None


@pytest.mark.parametrize("name", ["..", "/", "a/b", ".", "x" * 100, "nul\0"])
def test_execution_names_that_are_not_path_safe_are_refused(
    engine: EngineProcess, stubs: tuple[object, es_grpc.ExecutionServiceStub], name: str
) -> None:
    _, executions = stubs
    request = es.CreateExecutionRequest(workflow_id=_registered(engine), name=name)
    request.inputs.literals["x"].scalar.primitive.integer = 1
    code, details = _code(lambda: executions.CreateExecution(request, timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "execution name" in details


def test_oversized_inputs_are_refused_with_resource_exhausted(
    engine: EngineProcess, stubs: tuple[object, es_grpc.ExecutionServiceStub]
) -> None:
    from tests.integration.conftest import SHARED_MAX_MESSAGE_BYTES

    _, executions = stubs
    request = es.CreateExecutionRequest(workflow_id=_registered(engine))
    request.inputs.literals["x"].scalar.primitive.string_value = "s" * (
        SHARED_MAX_MESSAGE_BYTES + 10
    )
    code, _ = _code(lambda: executions.CreateExecution(request, timeout=30))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED  # above the message limit itself


def test_a_type_nested_95_deep_is_refused_at_registration(
    stubs: tuple[rs_grpc.RegistryServiceStub, object],
) -> None:
    registry, _ = stubs
    bundle = _serialize.collect(b.branch_wf)
    request = bundle.register_request()
    task = request.tasks[0]
    deep = types_pb2.LiteralType(simple=types_pb2.SIMPLE_TYPE_INTEGER)
    for _ in range(30):  # parseable, but deeper than the engine can always send back
        deep = types_pb2.LiteralType(collection_type=deep)
    task.interface.inputs.variables[0].type.CopyFrom(deep)
    task.id.version = "deep"
    code, details = _code(lambda: registry.Register(request, timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "nest" in details


def test_identifiers_with_nul_or_paths_are_refused(
    stubs: tuple[rs_grpc.RegistryServiceStub, object],
) -> None:
    registry, _ = stubs
    for bad in ("../../etc/passwd", "nul\0", "p" * 10_000):
        request = _serialize.collect(b.branch_wf).register_request()
        request.tasks[0].id.project = bad
        code, _ = _code(lambda request=request: registry.Register(request, timeout=30))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, bad
