"""DataService against a real `plait serve`: chunked reads and writes of offloaded payloads,
resumed reads, checksums on both sides, and URIs that try to leave their folder."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from plait_engine.errors import InvalidArgument
from plait_engine.service.data import project_of_uri
from plaitidl.core.v1 import identifier_pb2, literals_pb2, types_pb2
from plaitidl.service.v1 import data_service_pb2 as ds
from plaitidl.service.v1 import data_service_pb2_grpc as ds_grpc
from plaitidl.service.v1 import execution_service_pb2 as es

from tests.integration.conftest import SHARED_MAX_MESSAGE_BYTES
from tests.support.servers import EngineProcess

EID = identifier_pb2.ExecutionIdentifier(project="default", domain="development", name="data1")


@pytest.fixture
def stub(engine: EngineProcess) -> Iterator[ds_grpc.DataServiceStub]:
    with grpc.insecure_channel(engine.address) as channel:
        yield ds_grpc.DataServiceStub(channel)


def _upload(
    stub: ds_grpc.DataServiceStub,
    data: bytes,
    *,
    eid: identifier_pb2.ExecutionIdentifier = EID,
    size: int | None = None,
    sha: str | None = None,
    chunk: int = 200_000,
) -> ds.WriteDataResponse:
    header = ds.WriteDataHeader(
        execution_id=eid,
        size_bytes=len(data) if size is None else size,
        sha256=hashlib.sha256(data).hexdigest() if sha is None else sha,
    )
    requests = [ds.WriteDataRequest(header=header)]
    requests += [ds.WriteDataRequest(chunk=data[i : i + chunk]) for i in range(0, len(data), chunk)]
    response: ds.WriteDataResponse = stub.WriteData(iter(requests), timeout=30)
    return response


def _read(stub: ds_grpc.DataServiceStub, uri: str, offset: int = 0) -> list[ds.ReadDataResponse]:
    return list(stub.ReadData(ds.ReadDataRequest(uri=uri, offset=offset), timeout=30))


def _code(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    """The status a call fails with (streams are read to the end)."""
    with pytest.raises(grpc.RpcError) as info:
        result = call()
        if isinstance(result, Iterator):
            list(result)
    err = info.value
    assert isinstance(err, grpc.Call)
    return err.code(), err.details() or ""


def test_write_then_read_in_chunks_resumable(
    engine: EngineProcess, stub: ds_grpc.DataServiceStub
) -> None:
    data = os.urandom(3 * SHARED_MAX_MESSAGE_BYTES + 12345)  # far above one message
    sha = hashlib.sha256(data).hexdigest()
    written = _upload(stub, data)
    assert written.uri == f"plait-data://default/development/data1/{sha}"
    assert (written.size_bytes, written.sha256) == (len(data), sha)
    stored = engine.data_dir / "blobs" / "executions" / "default" / "development" / "data1"
    assert (stored / "+data" / sha).read_bytes() == data  # under the execution's own prefix
    assert [p.name for p in (stored / "+data").iterdir()] == [sha]  # no temporary left

    chunks = _read(stub, written.uri)
    assert len(chunks) > 3 and all(len(c.chunk) < SHARED_MAX_MESSAGE_BYTES for c in chunks)
    assert (chunks[0].size_bytes, chunks[0].sha256) == (len(data), sha)
    assert b"".join(c.chunk for c in chunks) == data

    # An interrupted read resumes at the byte it stopped at, still checked as a whole.
    resumed = _read(stub, written.uri, offset=1_000_003)
    assert resumed[0].size_bytes == len(data)
    assert b"".join(c.chunk for c in resumed) == data[1_000_003:]
    (end,) = _read(stub, written.uri, offset=len(data))
    assert end.chunk == b"" and end.sha256 == sha
    past = ds.ReadDataRequest(uri=written.uri, offset=len(data) + 1)
    code, message = _code(lambda: stub.ReadData(past))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "past the end" in message

    # Uploading the same bytes again is harmless: content-addressed.
    assert _upload(stub, data).uri == written.uri


def test_a_corrupted_payload_is_data_loss(
    engine: EngineProcess, stub: ds_grpc.DataServiceStub
) -> None:
    data = b"precious" * 100_000
    uri = _upload(stub, data).uri
    path = (
        engine.data_dir / "blobs" / "executions" / "default" / "development" / "data1" / "+data"
    ) / uri.rsplit("/", 1)[1]
    raw = bytearray(path.read_bytes())
    raw[123_456] ^= 0xFF
    path.write_bytes(bytes(raw))
    code, message = _code(lambda: stub.ReadData(ds.ReadDataRequest(uri=uri)))
    assert code == grpc.StatusCode.DATA_LOSS and "corrupt" in message
    code, _ = _code(lambda: stub.ReadData(ds.ReadDataRequest(uri=uri, offset=500_000)))
    assert code == grpc.StatusCode.DATA_LOSS  # the prefix is checked too


def test_uploads_are_checked_and_atomic(
    engine: EngineProcess, stub: ds_grpc.DataServiceStub
) -> None:
    data = os.urandom(700_000)
    folder = engine.data_dir / "blobs" / "executions" / "default" / "development" / "checks"
    eid = identifier_pb2.ExecutionIdentifier(name="checks")
    cases = [
        ({"sha": hashlib.sha256(b"other").hexdigest()}, "SHA-256"),
        ({"size": len(data) + 1}, "received"),
        ({"size": len(data) - 1}, "more bytes than header.size_bytes"),
        ({"sha": "not-hex"}, "not a lowercase hex SHA-256"),
    ]
    for kwargs, message in cases:
        code, details = _code(lambda kw=kwargs: _upload(stub, data, eid=eid, **kw))  # type: ignore[misc]
        assert code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert message in details, details
    # Nothing half-written stays behind, and nothing is readable under the announced sums.
    assert not folder.exists() or list((folder / "+data").iterdir()) == []

    bad_names = [
        identifier_pb2.ExecutionIdentifier(name=".."),
        identifier_pb2.ExecutionIdentifier(name=""),
        identifier_pb2.ExecutionIdentifier(project="../etc", name="x"),
        identifier_pb2.ExecutionIdentifier(name="a/b"),
    ]
    for bad in bad_names:
        code, details = _code(lambda b=bad: _upload(stub, b"x", eid=b))  # type: ignore[misc]
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (bad, details)
    code, details = _code(lambda: stub.WriteData(iter([ds.WriteDataRequest(chunk=b"x")])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "header" in details
    header = ds.WriteDataRequest(header=ds.WriteDataHeader(execution_id=eid, size_bytes=1))
    code, _ = _code(lambda: stub.WriteData(iter([header, header])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    huge = ds.WriteDataRequest(
        header=ds.WriteDataHeader(
            execution_id=eid, size_bytes=1 << 40, sha256=hashlib.sha256(b"").hexdigest()
        )
    )
    code, details = _code(lambda: stub.WriteData(iter([huge])))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "data limit" in details


def test_uris_never_leave_their_folder(
    engine: EngineProcess, stub: ds_grpc.DataServiceStub
) -> None:
    # Bytes the engine stores elsewhere under the blob root, named like a payload.
    secret = b"engine state"
    sha = hashlib.sha256(secret).hexdigest()
    other = engine.data_dir / "blobs" / "payloads" / sha
    other.parent.mkdir(parents=True, exist_ok=True)
    other.write_bytes(secret)
    (engine.data_dir / "blobs" / sha).write_bytes(secret)
    invalid = [
        f"file://{other}",
        f"plait-data://../../payloads/{sha}",
        f"plait-data://default/development/../{sha}",
        f"plait-data://default/development/data1/../../{sha}",
        f"plait-data://default/development/data1/sub/{sha}",
        f"plait-data://default/development/{sha}",
        f"plait-data://default/development/%2e%2e/{sha}",
        "plait-data://default/development/data1/not-a-sha",
        f"plait-data://default/development/data1/{sha.upper()}",
        f"plait-data://default/development/data1/{sha}?x=1",
        "",
    ]
    for uri in invalid:
        code, details = _code(lambda u=uri: stub.ReadData(ds.ReadDataRequest(uri=u)))  # type: ignore[misc]
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (uri, details)
    missing = ds.ReadDataRequest(uri=f"plait-data://default/development/data1/{sha}")
    code, details = _code(lambda: stub.ReadData(missing))
    assert code == grpc.StatusCode.NOT_FOUND and "never written" in details


def test_the_project_of_a_uri_is_one_function_for_scope_checks() -> None:
    sha = "0" * 64
    assert project_of_uri(f"plait-data://team-a/prod/x1/{sha}") == "team-a"
    with pytest.raises(InvalidArgument) as info:
        project_of_uri(f"plait-data://../prod/x1/{sha}")
    assert info.value.violations[0].field == "uri"


def test_data_service_is_listed_by_reflection(engine: EngineProcess) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(engine.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (answer,) = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    names = {s.name for s in answer.list_services_response.service}
    assert "plaitidl.service.v1.DataService" in names


SIZE_MODULE = """
from plait import task, workflow


@task
def size(data: bytes) -> int:
    return len(data)


@workflow
def wf(data: bytes) -> int:
    return size(data=data)
"""


def test_execution_inputs_may_reference_only_their_own_uploads(
    engine: EngineProcess, tmp_path: Path
) -> None:
    from plait import Client, _loader, _serialize
    from plait._client import map_rpc_error
    from plait._data import DataClient

    path = tmp_path / "sizes.py"
    path.write_text(SIZE_MODULE)
    wf = _loader.load_path(str(path)).wf
    blob = os.urandom(2 * SHARED_MAX_MESSAGE_BYTES)
    literal = literals_pb2.Literal()
    literal.scalar.binary.value = blob
    with Client(engine.address) as client, grpc.insecure_channel(engine.address) as channel:
        client.register(wf)
        data = DataClient(channel)
        mine = identifier_pb2.ExecutionIdentifier(name="mine")
        ref = data.offload(
            mine, literal, types_pb2.LiteralType(simple=types_pb2.SIMPLE_TYPE_BINARY)
        )
        missing = literals_pb2.Literal()
        missing.CopyFrom(ref)
        missing.offloaded.sha256 = "0" * 64
        missing.offloaded.uri = ref.offloaded.uri.rsplit("/", 1)[0] + "/" + "0" * 64

        def create(name: str, value: literals_pb2.Literal) -> es.CreateExecutionResponse:
            request = es.CreateExecutionRequest(workflow_id=_serialize.collect(wf).root, name=name)
            request.inputs.literals["data"].CopyFrom(value)
            response: es.CreateExecutionResponse = client.executions.CreateExecution(
                request, timeout=30
            )
            return response

        for name, value, field, text in [
            ("theirs", ref, "inputs.data", "belongs to another execution"),
            ("", ref, "name", "set the execution's name"),
            ("mine", missing, "inputs.data", "upload it with WriteData first"),
        ]:
            with pytest.raises(grpc.RpcError) as info:
                create(name, value)
            err = map_rpc_error(info.value)
            assert err.code == "INVALID_ARGUMENT", err
            ((got_field, description),) = err.violations
            assert got_field == field and text in description, err.violations
        created = create("mine", ref)
        assert created.execution.id.name == "mine"
        stored = client.data(created.execution.id, resolve=False).inputs.literals["data"]
        assert stored.offloaded.uri == ref.offloaded.uri
        assert client.data(created.execution.id).inputs.literals["data"] == literal
