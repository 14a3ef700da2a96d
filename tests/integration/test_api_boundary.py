"""The API boundary against a real `plait serve`: requests that do not parse, errors too large
for trailers, and the health service's Check and Watch."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_status import rpc_status
from plait_engine.api.interceptors import MAX_STATUS_MESSAGE_BYTES
from plait_engine.compiler.limits import MAX_VIOLATIONS
from plaitidl.core.v1 import identifier_pb2, interface_pb2, workflow_pb2
from plaitidl.service.v1 import execution_service_pb2, registry_service_pb2, worker_service_pb2
from plaitidl.service.v1 import registry_service_pb2 as rs

from tests.support.servers import EngineProcess, start_engine

SERVICES: list[ServiceDescriptor] = [
    registry_service_pb2.DESCRIPTOR.services_by_name["RegistryService"],
    execution_service_pb2.DESCRIPTOR.services_by_name["ExecutionService"],
    worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"],
    health_pb2.DESCRIPTOR.services_by_name["Health"],
    reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"],
]


def _garbage(message: type[Message], rng: random.Random) -> list[bytes]:
    """Byte strings that are not a valid `message`: a bad tag, and random bytes that fail."""
    found = [b"\x07"]
    while len(found) < 3:
        data = rng.randbytes(rng.randint(1, 64))
        try:
            message.FromString(data)
        except DecodeError:
            found.append(data)
    return found


def _call(channel: grpc.Channel, path: str, method: MethodDescriptor, data: bytes) -> grpc.RpcError:
    """Send raw bytes as the request (no serializers: they go out as they are)."""
    rpc: Any
    if method.client_streaming and method.server_streaming:
        rpc = channel.stream_stream(path, None, None)
    elif method.client_streaming:
        rpc = channel.stream_unary(path, None, None)
    elif method.server_streaming:
        rpc = channel.unary_stream(path, None, None)
    else:
        rpc = channel.unary_unary(path, None, None)
    request: object = iter([data]) if method.client_streaming else data
    with pytest.raises(grpc.RpcError) as err:
        reply = rpc(request, timeout=10)
        if method.server_streaming:
            list(reply)
    return err.value


def test_unparseable_requests_are_invalid_argument_for_every_method(
    engine: EngineProcess,
) -> None:
    rng = random.Random(7)
    with grpc.insecure_channel(engine.address) as channel:
        for service in SERVICES:
            for method in service.methods:
                path = f"/{service.full_name}/{method.name}"
                message = GetMessageClass(method.input_type)
                for data in _garbage(message, rng):
                    err = _call(channel, path, method, data)
                    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (path, err)
                    assert err.details() == f"request is not a valid {method.input_type.full_name}"
        # The engine keeps serving, and said nothing about it in its log.
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    log = engine.output()
    assert "Traceback" not in log and "DecodeError" not in log, log


# -- health ---------------------------------------------------------------------------------


def test_health_check_and_watch_until_graceful_shutdown(
    tmp_path: Path, engine_factory: list[EngineProcess]
) -> None:
    proc = start_engine(tmp_path)
    engine_factory.append(proc)
    seen: list[int] = []
    ended: list[grpc.RpcError | None] = []
    with grpc.insecure_channel(proc.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        check = stub.Check(
            health_pb2.HealthCheckRequest(service="plaitidl.service.v1.ExecutionService"),
            timeout=5,
        )
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as unknown:
            stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND

        def watch() -> None:
            try:
                for reply in stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30):
                    seen.append(reply.status)
                ended.append(None)
            except grpc.RpcError as exc:
                ended.append(exc)

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
        assert seen == [health_pb2.HealthCheckResponse.SERVING]
        assert proc.stop() == 0
        thread.join(15)
    assert seen == [
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    ]
    assert ended, "the watch stream did not end with the server"
    assert "Traceback" not in proc.output()


# -- errors too large for trailers ------------------------------------------------------------


@pytest.fixture(scope="module")
def roomy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    """An engine with the default message size: ValidateTemplates answers 10,000 problems."""
    proc = start_engine(tmp_path_factory.mktemp("roomy"))
    try:
        yield proc
    finally:
        proc.stop()


def _missing_tasks(
    name: str, nodes: int, task_name: str = "no.such.task"
) -> workflow_pb2.WorkflowTemplate:
    wf = workflow_pb2.WorkflowTemplate(
        id=identifier_pb2.Identifier(name=name, version="v1"),
        interface=interface_pb2.TypedInterface(),
    )
    for i in range(nodes):
        node = wf.nodes.add(id=f"n{i}")
        node.task_node.task_id.CopyFrom(
            identifier_pb2.Identifier(name=f"{task_name}.{i}", version="v1")
        )
    return wf


def _refusal(channel: grpc.Channel, request: rs.RegisterRequest) -> grpc.RpcError:
    register = channel.unary_unary(
        "/plaitidl.service.v1.RegistryService/Register",
        request_serializer=rs.RegisterRequest.SerializeToString,
        response_deserializer=rs.RegisterResponse.FromString,
    )
    with pytest.raises(grpc.RpcError) as err:
        register(request, timeout=120)
    return err.value


def _violations(err: grpc.RpcError) -> list[tuple[str, str]]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    return [(v.field, v.description) for v in bad.field_violations]


def _trailer_bytes(err: grpc.RpcError) -> int:
    """What the trailers took on the wire: binary values travel base64-encoded, the message
    percent-encoded."""
    total = len(quote((err.details() or "").encode(), safe=" "))
    trailers: Any = err.trailing_metadata()
    for key, value in trailers or ():
        size = len(value)
        total += len(key) + (size * 4 + 2) // 3 if key.endswith("-bin") else len(key) + size
    return total


def test_ten_thousand_problems_and_a_long_name_fit_the_trailers(roomy: EngineProcess) -> None:
    options = [("grpc.max_receive_message_length", 64 << 20)]
    with grpc.insecure_channel(roomy.address, options=options) as channel:
        request = rs.RegisterRequest(workflows=[_missing_tasks("w" * 10_000, 10_000)])
        err = _refusal(channel, request)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
        assert "metadata" not in (err.details() or "")
        assert len((err.details() or "").encode()) <= MAX_STATUS_MESSAGE_BYTES
        shown = _violations(err)
        assert 1 < len(shown) < 100
        fields = [f for f, _ in shown]
        assert "workflows[0].id.name" in fields  # the long name is itself a problem
        assert any(f.startswith("workflows[0].nodes[0].") for f in fields), fields
        more = shown[-1][1]
        assert "RegistryService.ValidateTemplates" in more
        assert _trailer_bytes(err) < 6 * 1024
        validate = channel.unary_unary(
            "/plaitidl.service.v1.RegistryService/ValidateTemplates",
            request_serializer=rs.ValidateTemplatesRequest.SerializeToString,
            response_deserializer=rs.ValidateTemplatesResponse.FromString,
        )
        everything = validate(rs.ValidateTemplatesRequest(workflows=request.workflows), timeout=120)
        # ValidateTemplates returns what the trailer left out (the compiler reports at most
        # `MAX_VIOLATIONS`, the last saying how many more there are).
        listed = [(v.field, v.description) for v in everything.violations]
        assert listed[: len(shown) - 1] == shown[:-1]
        assert more.startswith(f"{len(listed) - (len(shown) - 1)} more violation(s)")
        assert len(listed) == MAX_VIOLATIONS and "9902 more violations" in listed[-1][1]

        # One problem whose text holds a 10,000-character name.
        long_ref = _refusal(
            channel, rs.RegisterRequest(workflows=[_missing_tasks("w", 1, "t" * 10_000)])
        )
        assert long_ref.code() == grpc.StatusCode.INVALID_ARGUMENT, long_ref
        assert len((long_ref.details() or "").encode()) <= MAX_STATUS_MESSAGE_BYTES
        ((field, description),) = _violations(long_ref)
        assert field.startswith("workflows[0].nodes[0]") and len(description) < 1000
        assert _trailer_bytes(long_ref) < 8192
    assert "Traceback" not in roomy.output()
