"""The object-store contract, run against every backend: a local folder, a real S3 API server
(moto's, through s3fs) and a GCS API server (gcp-storage-emulator, through gcsfs). Keys that
could leave the root are refused, checksums catch corrupted objects, and a writer killed
mid-write never leaves a readable object. Then the engine's users of the store on each
backend: payload pointers, DataService's chunked reads, process targets' checkpoints."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from plait_engine.blob import (
    BadKey,
    ChecksumMismatch,
    DataStore,
    LocalObjectStore,
    ObjectNotFound,
    ObjectStore,
    Payloads,
    open_object_store,
)
from plait_engine.blob.remote import FsspecObjectStore
from plait_engine.executors import Dispatch, Result
from plait_engine.executors.process import ProcessExecutor
from plait_engine.service.data import DataLoss, DataService
from plaitidl.core.v1 import errors_pb2, literals_pb2, tasks_pb2

from tests.support.gcs import GcsServer
from tests.support.s3 import S3Server


@dataclass
class Backend:
    """A store under test, and a way to reach its bytes behind its back."""

    url: str
    store: ObjectStore
    env: dict[str, str]
    raw_put: Callable[[str, bytes], None]  # store bytes without a recorded checksum
    corrupt: Callable[[str], None]  # flip a byte, keeping the recorded checksum
    everything: Callable[[], list[str]]  # every name the backend holds, root or not


def _local(tmp_path: Path) -> Backend:
    root = tmp_path / "blobs"
    store = LocalObjectStore(root)

    def raw_put(key: str, data: bytes) -> None:
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)

    def corrupt(key: str) -> None:
        raw = bytearray((root / key).read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        (root / key).write_bytes(bytes(raw))

    def everything() -> list[str]:
        return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())

    return Backend(store.url, store, {}, raw_put, corrupt, everything)


def _s3(server: S3Server) -> Backend:
    import boto3

    bucket = server.create_bucket()
    url = f"s3://{bucket}/root"
    store = open_object_store(url, data_dir=Path("/nonexistent"), endpoint=server.endpoint)
    client = boto3.client("s3", endpoint_url=server.endpoint)

    def raw_put(key: str, data: bytes) -> None:
        client.put_object(Bucket=bucket, Key=f"root/{key}", Body=data)

    def corrupt(key: str) -> None:
        got = client.get_object(Bucket=bucket, Key=f"root/{key}")
        raw = bytearray(got["Body"].read())
        raw[len(raw) // 2] ^= 0xFF
        client.put_object(
            Bucket=bucket, Key=f"root/{key}", Body=bytes(raw), Metadata=got["Metadata"]
        )

    def everything() -> list[str]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    return Backend(url, store, server.env, raw_put, corrupt, everything)


def _gcs(server: GcsServer) -> Backend:
    bucket = server.create_bucket()
    url = f"gs://{bucket}/root"
    store = open_object_store(url, data_dir=Path("/nonexistent"), endpoint=server.endpoint)
    assert isinstance(store, FsspecObjectStore)
    fs = store.fs

    def raw_put(key: str, data: bytes) -> None:
        fs.pipe_file(f"{bucket}/root/{key}", data)

    def corrupt(key: str) -> None:
        path = f"{bucket}/root/{key}"
        meta = fs.info(path).get("metadata") or {}
        raw = bytearray(fs.cat_file(path))
        raw[len(raw) // 2] ^= 0xFF
        fs.pipe_file(path, bytes(raw), metadata=meta)

    def everything() -> list[str]:
        return sorted(str(p) for p in fs.find(bucket))

    return Backend(url, store, server.env, raw_put, corrupt, everything)


@pytest.fixture(params=["local", "s3", "gcs"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        return _local(tmp_path)
    if request.param == "s3":
        return _s3(request.getfixturevalue("s3_server"))
    return _gcs(request.getfixturevalue("gcs_server"))


def test_put_get_exists_size_overwrite(backend: Backend) -> None:
    s = backend.store
    data = os.urandom(300_000)
    assert not s.exists("a/b/c")
    assert s.put("a/b/c", data) == hashlib.sha256(data).hexdigest()
    assert s.exists("a/b/c") and s.get("a/b/c") == data and s.size("a/b/c") == len(data)
    assert not s.exists("a/b")  # a folder is not an object
    s.put("a/b/c", b"second")
    assert s.get("a/b/c") == b"second" and s.size("a/b/c") == 6
    s.put("empty", b"")
    assert s.get("empty") == b"" and s.size("empty") == 0
    assert s.get("a/b/c", sha256=hashlib.sha256(b"second").hexdigest()) == b"second"


def test_missing_objects(backend: Backend) -> None:
    s = backend.store
    with pytest.raises(ObjectNotFound):
        s.get("nope/x")
    with pytest.raises(ObjectNotFound):
        s.open("nope/x")
    with pytest.raises(ObjectNotFound):
        s.size("nope/x")
    s.delete("nope/x")  # nothing to delete: no error
    s.delete_prefix("nope")
    assert s.list("nope") == []


def test_list_and_delete_prefix_stay_in_their_folder(backend: Backend) -> None:
    s = backend.store
    for key in ("e/n/x", "e/n/sub/y", "e/n2/z", "e/n.txt", "f/n/x"):
        s.put(key, key.encode())
    assert s.list("e/n") == ["e/n/sub/y", "e/n/x"]
    assert s.list("e") == ["e/n.txt", "e/n/sub/y", "e/n/x", "e/n2/z"]
    s.delete_prefix("e/n")
    assert s.list("e") == ["e/n.txt", "e/n2/z"] and s.get("f/n/x") == b"f/n/x"
    s.delete("e/n.txt")
    assert not s.exists("e/n.txt") and s.list("e") == ["e/n2/z"]


def test_writer_publishes_only_on_commit(backend: Backend) -> None:
    s = backend.store
    parts = [os.urandom(100_000) for _ in range(5)]
    data = b"".join(parts)
    w = s.writer("w/obj")
    for p in parts:
        w.write(p)
        assert not s.exists("w/obj")
    assert w.received == len(data)
    assert w.commit(hashlib.sha256(data).hexdigest()) == hashlib.sha256(data).hexdigest()
    assert s.get("w/obj") == data

    aborted = s.writer("w/aborted")
    aborted.write(b"half")
    aborted.abort()
    aborted.abort()  # idempotent
    wrong = s.writer("w/wrong")
    wrong.write(b"these bytes")
    with pytest.raises(ChecksumMismatch):
        wrong.commit(hashlib.sha256(b"other bytes").hexdigest())
    assert s.list("w") == ["w/obj"]


def test_put_file_and_chunked_reads(backend: Backend, tmp_path: Path) -> None:
    s = backend.store
    data = os.urandom(5 * 1024 * 1024 + 17)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    assert s.put_file("files/big", str(src)) == sha
    opened = s.open("files/big")
    try:
        assert (opened.size, opened.sha256) == (len(data), sha)
        chunks = []
        while chunk := opened.file.read(1 << 20):
            chunks.append(chunk)
    finally:
        opened.file.close()
    assert b"".join(chunks) == data and len(chunks) > 5


BAD_KEYS = [
    "",
    "/etc/passwd",
    "../outside",
    "a/../../outside",
    "a/./b",
    "a//b",
    "a/b/",
    "..",
    "a/b c",
    "a/~sha256",
    "a\\..\\b",
    "a/%2e%2e/b",
    "a/b?versionId=1",
    "x" * 5000,
]


def test_keys_that_could_escape_are_refused(backend: Backend, tmp_path: Path) -> None:
    s = backend.store
    before = backend.everything()
    calls: list[Callable[[str], object]] = [
        lambda k: s.put(k, b"x"),
        s.get,
        s.open,
        s.exists,
        s.size,
        s.list,
        s.delete,
        s.delete_prefix,
        s.uri,
        s.writer,
        lambda k: s.put_file(k, __file__),
    ]
    for key in BAD_KEYS:
        for call in calls:
            with pytest.raises(BadKey):
                call(key)
    assert backend.everything() == before


def test_a_symlink_cannot_lead_outside_the_root(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("engine state")
    store = LocalObjectStore(tmp_path / "blobs")
    (tmp_path / "blobs" / "attempt").mkdir()
    (tmp_path / "blobs" / "attempt" / "link").symlink_to(tmp_path)
    with pytest.raises(BadKey):
        store.get("attempt/link/secret")
    with pytest.raises(BadKey):
        store.put("attempt/link/secret", b"overwritten")
    assert secret.read_text() == "engine state"


def test_corruption_is_detected_on_read(backend: Backend) -> None:
    s = backend.store
    data = os.urandom(200_000)
    s.put("c/obj", data)
    backend.corrupt("c/obj")
    with pytest.raises(ChecksumMismatch, match="corrupt"):
        s.get("c/obj")
    opened = s.open("c/obj")  # chunked readers get the recorded sum to compare with
    try:
        assert opened.sha256 == hashlib.sha256(data).hexdigest()
        assert hashlib.sha256(opened.file.read()).hexdigest() != opened.sha256
    finally:
        opened.file.close()

    s.put("c/fine", b"fine")
    with pytest.raises(ChecksumMismatch, match="expected"):
        s.get("c/fine", sha256=hashlib.sha256(b"other").hexdigest())


def test_objects_without_a_recorded_checksum_need_one_to_be_read(backend: Backend) -> None:
    s = backend.store
    backend.raw_put("legacy/obj", b"written by someone else")
    with pytest.raises(ChecksumMismatch, match="no recorded SHA-256"):
        s.get("legacy/obj")
    sha = hashlib.sha256(b"written by someone else").hexdigest()
    assert s.get("legacy/obj", sha256=sha) == b"written by someone else"
    assert s.get("legacy/obj", sha256=sha[:32]) == b"written by someone else"
    with pytest.raises(ChecksumMismatch):
        s.get("legacy/obj", sha256=sha[:8])  # too short to trust


def test_concurrent_writers_of_one_key(backend: Backend) -> None:
    s = backend.store
    data = os.urandom(500_000)
    errors: list[BaseException] = []

    def put() -> None:
        try:
            for _ in range(5):
                s.put("same/key", data)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=put) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and s.get("same/key") == data and s.list("same") == ["same/key"]


_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from plait_engine.blob import open_object_store

    store = open_object_store(sys.argv[1], data_dir=Path(sys.argv[2]))
    if sys.argv[3] == "writer":
        w = store.writer("crash/streamed")
        w.write(os.urandom(1 << 20))
        print("wrote", flush=True)
        while True:
            w.write(os.urandom(1 << 16))
            time.sleep(0.01)
    else:
        i = 0
        while True:
            store.put(f"crash/put-{i}", os.urandom(8 << 20))
            print("put", i, flush=True)
            i += 1
    """
)


def _kill_writer(backend: Backend, tmp_path: Path, mode: str, lines: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, backend.url, str(tmp_path / "writer-data"), mode],
        stdout=subprocess.PIPE,
        env={**os.environ, **backend.env},
    )
    try:
        assert proc.stdout is not None
        for _ in range(lines):
            assert proc.stdout.readline(), "the writer exited early"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


def test_a_writer_killed_mid_write_leaves_no_readable_object(
    backend: Backend, tmp_path: Path
) -> None:
    s = backend.store
    _kill_writer(backend, tmp_path, "writer", 1)
    assert not s.exists("crash/streamed") and s.list("crash") == []
    with pytest.raises(ObjectNotFound):
        s.get("crash/streamed")

    _kill_writer(backend, tmp_path, "put", 3)  # killed during one of the later puts
    keys = s.list("crash")
    assert len(keys) >= 3
    for key in keys:  # every object there is whole: its checksum holds
        assert len(s.get(key)) == 8 << 20


def test_open_object_store_urls(tmp_path: Path, s3_server: S3Server) -> None:
    default = open_object_store("", data_dir=tmp_path)
    assert isinstance(default, LocalObjectStore) and default.root == tmp_path / "blobs"
    shared = open_object_store(f"file://{tmp_path}/shared", data_dir=tmp_path)
    assert isinstance(shared, LocalObjectStore) and shared.root == tmp_path / "shared"
    assert isinstance(open_object_store(str(tmp_path / "p"), data_dir=tmp_path), LocalObjectStore)
    bucket = s3_server.create_bucket()
    s3 = open_object_store(f"s3://{bucket}/a/b/", data_dir=tmp_path)
    assert isinstance(s3, FsspecObjectStore) and s3.url == f"s3://{bucket}/a/b"
    assert s3.uri("k/x") == f"s3://{bucket}/a/b/k/x"
    for bad, message in [
        ("ftp://host/x", "unknown scheme"),
        ("relative/folder", "absolute path"),
        ("file://host/x", "local path"),
        ("s3://", "bucket"),
        ("s3://bucket/../x", "invalid part"),
    ]:
        with pytest.raises(ValueError, match=message):
            open_object_store(bad, data_dir=tmp_path)


# -- the engine's users of the store, on every backend ---------------------------------------


def test_payload_pointers_are_keys_checked_on_read(backend: Backend) -> None:
    payloads = Payloads(backend.store, threshold=1000)
    small = b"s" * 1000
    assert payloads.pack_now(small, "executions", "p", "d", "n", "outputs") == small
    big = os.urandom(5000)
    stored = payloads.pack_now(big, "executions", "p", "d", "n", "outputs")
    sha = hashlib.sha256(big).hexdigest()
    assert stored == f"plait-blob:key:payloads/executions/p/d/n/outputs/{sha}".encode()
    assert payloads.unpack(stored) == big
    assert asyncio.run(payloads.load(stored)) == big
    backend.corrupt(f"payloads/executions/p/d/n/outputs/{sha}")
    with pytest.raises(ChecksumMismatch):
        payloads.unpack(stored)
    with pytest.raises(BadKey):
        payloads.pack(big, "executions", "..", "x")
    payloads.delete_execution("p", "d", "n")
    with pytest.raises(ObjectNotFound):
        payloads.unpack(stored)


def test_pointers_of_older_versions_are_read_from_the_folder(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "blobs")
    data = os.urandom(3000)
    sha32 = hashlib.sha256(data).hexdigest()[:32]
    old = tmp_path / "blobs" / "payloads" / "executions" / "p" / "d" / "n" / "inputs" / sha32
    old.parent.mkdir(parents=True)
    old.write_bytes(data)  # as written before checksums were recorded
    payloads = Payloads(store)
    assert payloads.unpack(b"plait-blob:" + old.as_uri().encode()) == data
    old.write_bytes(data[:-1] + b"!")
    with pytest.raises(ChecksumMismatch):
        payloads.unpack(b"plait-blob:" + old.as_uri().encode())
    outside = tmp_path / "elsewhere"
    outside.write_bytes(data)
    with pytest.raises(BadKey, match="outside the blob store"):
        payloads.unpack(b"plait-blob:" + outside.as_uri().encode())
    # The data dir moved (or its blobs were copied elsewhere): the key follows blobs/.
    old.write_bytes(data)
    moved = f"file:///old/data/blobs/payloads/executions/p/d/n/inputs/{sha32}"
    assert payloads.unpack(b"plait-blob:" + moved.encode()) == data
    with pytest.raises(BadKey):
        payloads.unpack(b"plait-blob:file:///old/data/blobs/payloads/../../etc/passwd")


def _read_all(service: DataService, uri: str, offset: int = 0) -> bytes:
    async def read() -> bytes:
        return b"".join([c.data async for c in service.read(uri, offset)])

    return asyncio.run(read())


def test_data_service_reads_in_chunks_and_reports_corruption(backend: Backend) -> None:
    service = DataService(DataStore(backend.store), inline_limit=100, chunk_bytes=64 * 1024)
    data = os.urandom(1_000_000)

    async def write() -> str:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(data), 300_000):
                yield data[i : i + 300_000]

        sha = hashlib.sha256(data).hexdigest()
        return (await service.write(("p", "d", "n"), len(data), sha, chunks())).uri

    uri = asyncio.run(write())
    assert _read_all(service, uri) == data
    assert _read_all(service, uri, offset=654_321) == data[654_321:]
    backend.corrupt(f"executions/p/d/n/+data/{uri.rsplit('/', 1)[1]}")
    with pytest.raises(DataLoss, match="corrupt"):
        _read_all(service, uri)
    with pytest.raises(DataLoss):
        _read_all(service, uri, offset=900_000)  # the part before the offset is checked too


def test_a_corrupt_checkpoint_is_a_system_error_of_the_attempt(backend: Backend) -> None:
    parts = ("executions", "p", "d", "n", "t")
    backend.store.put("executions/p/d/n/t/attempt-1/checkpoint/state", b"saved state")
    backend.corrupt("executions/p/d/n/t/attempt-1/checkpoint/state")
    task = tasks_pb2.TaskTemplate(process=tasks_pb2.ProcessTarget(command=["/bin/true"]))
    dispatch = Dispatch("a1", 2, task, "t", literals_pb2.LiteralMap(), None, "p/d/n", "t",
                        (*parts, "attempt-2"))  # fmt: skip
    results: list[Result] = []

    async def run() -> None:
        executor = ProcessExecutor(backend.store)
        executor.start(results.extend, asyncio.get_running_loop())
        executor.submit([dispatch])
        while not results:
            await asyncio.sleep(0.01)

    asyncio.run(run())
    (result,) = results
    assert isinstance(result.outcome, errors_pb2.ExecutionError)
    if backend.store.local_root is None:  # staged: the checkpoint is downloaded, and checked
        assert result.outcome.kind == errors_pb2.ExecutionError.KIND_SYSTEM
        assert "corrupt" in result.outcome.message
    else:  # in the folder, the program reads the checkpoint where it lies
        assert result.outcome.code == "BadProcessOutput"  # /bin/true wrote no outputs
