"""Two `plait serve` replicas with data dirs of their own share only the store (the SQLite file,
or PostgreSQL) and an S3 bucket (moto's S3 server) for blobs. A worker connected to one of them
runs executions whose values live in the bucket: payloads over 256 KiB behind pointers, and
values over the inline limit offloaded and read through DataService. The replica owning the
executions is killed mid-run; the other adopts them, reading their payloads from the bucket,
and every output is correct. The worker has no S3 credentials: it only talks to the engine."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from plait import Client

from tests.support.s3 import S3Server
from tests.support.servers import ROOT, EngineProcess, _spawn, plait_command
from tests.workflows import blob_payloads as wf

LEASE = 3.0


class Replicas:
    """Replicas on one store with their own data dirs, a worker; all stopped at the end."""

    def __init__(self, tmp_path: Path, args: tuple[str, ...]) -> None:
        self.tmp = tmp_path
        self.args = args
        self.replicas: list[EngineProcess] = []
        self.worker: subprocess.Popen[bytes] | None = None
        self.markers = tmp_path / "markers"
        self.markers.mkdir()

    def replica(self, shared_db: Path | None) -> EngineProcess:
        data = self.tmp / f"replica{len(self.replicas)}"
        data.mkdir()
        if shared_db is not None:  # the one SQLite file, seen from this replica's data dir
            (data / "plait.db").symlink_to(shared_db)
        r = _spawn(data, "127.0.0.1:0", self.args, self.tmp / f"{data.name}.log")
        self.replicas.append(r)
        return r

    def start_worker(self, replica: EngineProcess) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AWS_", "PLAIT_ENGINE", "PLAIT_TOKEN"))
        }
        env.update(
            PYTHONUNBUFFERED="1",
            PLAIT_TEST_MARKERS=str(self.markers),
            PLAIT_TEST_BLOB_PAUSE="1.0",
        )
        with open(self.tmp / "worker.log", "ab") as out:
            self.worker = subprocess.Popen(
                plait_command(
                    "worker", "--engine", replica.address, "tests/workflows/blob_payloads.py"
                ),
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def close(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.kill()
            self.worker.wait(10)
        for r in self.replicas:
            r.kill()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[list[str], Path | None]:
    if request.param == "postgres":
        return ["--store", request.getfixturevalue("postgres_url")], None
    shared = tmp_path / "shared" / "plait.db"
    shared.parent.mkdir()
    shared.touch()
    return [], shared


@pytest.fixture
def replicas(
    tmp_path: Path, store: tuple[list[str], Path | None], s3_bucket: str
) -> Iterator[tuple[Replicas, Path | None]]:
    args = ("--cluster", "true", "--execution-lease", str(LEASE), "--blob-url", s3_bucket)
    r = Replicas(tmp_path, (*args, *store[0]))
    try:
        yield r, store[1]
    finally:
        r.close()


def _bucket_keys(server: S3Server, url: str) -> list[str]:
    import boto3

    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    pages = boto3.client("s3", endpoint_url=server.endpoint).get_paginator("list_objects_v2")
    return [
        o["Key"][len(prefix) + 1 :]
        for page in pages.paginate(Bucket=bucket, Prefix=prefix + "/")
        for o in page.get("Contents", [])
    ]


def test_replicas_with_own_data_dirs_share_blobs_in_s3(
    replicas: tuple[Replicas, Path | None], s3_server: S3Server, s3_bucket: str
) -> None:
    cluster, shared_db = replicas
    a = cluster.replica(shared_db)
    b = cluster.replica(shared_db)
    cluster.start_worker(b)
    with Client(a.address, timeout=30) as client:
        runs = [client.execute(wf.blobs_wf, {"seed": seed, "copies": 3}) for seed in (1, 2)]
    deadline = time.monotonic() + 60
    while not any(cluster.markers.glob("blob.*")):  # the checks started: payloads are stored
        assert time.monotonic() < deadline, (cluster.tmp / "worker.log").read_text()[-3000:]
        time.sleep(0.05)
    a.kill()  # b adopts: it reads what a stored from the bucket, not from a's data dir
    with Client(b.address, timeout=60) as client:
        for seed, run in zip((1, 2), runs, strict=True):
            out = client.wait(run, timeout=120)
            assert isinstance(out, tuple)
            text, data, first, rest = out
            assert text == wf.text_of(seed) and data == wf.data_of(seed)
            assert first == wf.digest_of(seed) and rest == [wf.text_digest_of(seed)] * 3
        raw = client.data(runs[0].name, resolve=False)
        ref = raw.outputs.literals["o1"].offloaded
        assert ref.uri.startswith("plait-data://") and ref.size_bytes > wf.DATA_BYTES

    log = b.output()
    for run in runs:  # both were a's: b loaded them, payloads included, from the bucket
        assert f"recovering execution default/development/{run.name}" in log, log[-3000:]
    keys = _bucket_keys(s3_server, s3_bucket)
    for run in runs:
        mine = [k for k in keys if f"/{run.name}/" in k]
        assert any(k.startswith("payloads/executions/") for k in mine), keys
        assert any("/+data/" in k for k in mine), keys
    assert ref.sha256 in {k.rsplit("/", 1)[1] for k in keys}
    for r in cluster.replicas:  # nothing went to a replica's own disk
        assert [p for p in r.data_dir.rglob("*") if p.is_file() and "blobs" in p.parts] == []
        assert not any((r.data_dir / "staging").rglob("*"))
    assert cluster.worker is not None and cluster.worker.poll() is None
    os.kill(cluster.worker.pid, signal.SIGTERM)
    cluster.worker.wait(15)
