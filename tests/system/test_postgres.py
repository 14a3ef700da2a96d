"""`plait serve --store postgresql://...` as a real process with real workers, on a private
PostgreSQL server: the seed examples run, and an engine SIGKILLed in the middle of a fan-out
resumes from the database when restarted."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from plait import Client
from plaitidl.core.v1 import execution_pb2

from tests.support.servers import (
    ROOT,
    EngineProcess,
    plait_command,
    start_engine,
    start_worker,
)
from tests.workflows import slow_fan_out

Stack = tuple[EngineProcess, list[subprocess.Popen[bytes]]]


@pytest.fixture
def pg_stack(tmp_path: Path, postgres_url: str) -> Iterator[Stack]:
    engine = start_engine(tmp_path, "--store", postgres_url)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        yield engine, workers
    finally:
        for w in workers:
            w.kill()
            w.wait(10)
        engine.kill()


def _run(*args: str) -> str:
    out = subprocess.run(
        plait_command("run", *args), cwd=ROOT, capture_output=True, text=True, timeout=180,
        check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_seed_examples_on_postgres(tmp_path: Path, pg_stack: Stack, postgres_url: str) -> None:
    engine, workers = pg_stack
    files = ("examples/dynamic_workflow.py", "examples/merge_sort.py")
    workers.append(start_worker(engine.address, *files, log=tmp_path / "worker.log"))
    numbers = [1813, 3105, 3260, 2634, 383, 7037, 3291, 2403, 315, 7164, 9, -4]
    assert _run("--remote", engine.address, files[0], "dynamic_wf", "--s1", "Pear",
                "--s2", "Earth") == "3"  # fmt: skip
    sorted_out = _run("--remote", engine.address, files[1], "merge_sort",
                      "--numbers", json.dumps(numbers), "--numbers_count", "12")  # fmt: skip
    assert json.loads(sorted_out) == sorted(numbers)
    # The state is in PostgreSQL, not in a SQLite file of the data dir.
    assert not (engine.data_dir / "plait.db").exists()
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE phase = %s) FROM executions",
            (execution_pb2.EXECUTION_PHASE_SUCCEEDED,),
        ).fetchone()
    assert row == (2, 2)


def _markers(folder: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for p in folder.iterdir():
        key = p.name.split(".", 1)[0]
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_engine_sigkill_mid_fan_out_resumes_from_postgres(
    tmp_path: Path, pg_stack: Stack, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, workers = pg_stack
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv("PLAIT_TEST_MARKERS", str(markers))
    worker = start_worker(
        engine.address, "tests.workflows.slow_fan_out", extra_args=("--slots", "8"),
        log=tmp_path / "worker.log",
    )  # fmt: skip
    workers.append(worker)
    n = 400
    with Client(engine.address) as client:
        client.execute(slow_fan_out.slow_wf, {"n": n}, name="fan-pg")
    deadline = time.monotonic() + 120
    while sum(_markers(markers).values()) < 100:
        assert time.monotonic() < deadline, "the fan-out did not get going"
        time.sleep(0.02)
    engine.kill()
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute(
            "SELECT n.node_id FROM nodes n JOIN executions e USING (eid) "
            "WHERE e.name = 'fan-pg' AND n.phase = %s",
            (execution_pb2.NODE_PHASE_SUCCEEDED,),
        ).fetchall()
    finished = {int(r[0].rsplit("/n", 1)[1]) for r in rows if r[0].startswith("n0/n")}
    assert 0 < len(finished) < n, "the kill should land in the middle"

    engine = engine.restart()  # same --store: it adopts the execution from the database
    with Client(engine.address) as client:
        assert client.wait("fan-pg", timeout=180) == [2 * i for i in range(n)]
        assert client.get("fan-pg").nodes.succeeded == n + 1
    counts = _markers(markers)
    assert counts["generator"] == 1, "the generator's stored spec must be reused"
    for i in finished:
        assert counts[f"task-{i}"] == 1, f"task {i} had finished before the kill but ran again"


def test_a_bad_store_is_a_clear_error(tmp_path: Path) -> None:
    def serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            plait_command("serve", "--address", "127.0.0.1:0", "--data-dir",
                          str(tmp_path / "d"), *args),
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, **env},
        )  # fmt: skip

    bad = serve({"PLAIT_STORE": "mysql://x@y/z"})
    assert bad.returncode == 2 and "store must be empty" in bad.stderr
    down = serve({}, "--store", "postgresql://plait:pw@127.0.0.1:1/nodb")
    assert down.returncode == 2, down.stderr
    assert "cannot connect to PostgreSQL at plait@127.0.0.1:1/nodb" in down.stderr
    assert "pw" not in down.stderr
