"""System tests: `plait serve` and `plait worker` as real processes, killed and restarted."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from plait import Client
from plait_engine.store.event_rows import row_events
from plaitidl.core.v1 import events_pb2, execution_pb2

from tests.support.servers import (
    ROOT,
    EngineProcess,
    plait_command,
    start_engine,
    start_worker,
)
from tests.workflows import slow_fan_out

MERGE_SORT_INPUT = json.dumps([1813, 3105, 3260, 2634, 383, 7037, 3291, 2403, 315, 7164, 9, -4])
SEEDS = [
    ("examples/dynamic_workflow.py", "dynamic_wf", ["--s1", "Pear", "--s2", "Earth"]),
    ("examples/merge_sort.py", "merge_sort",
     ["--numbers", MERGE_SORT_INPUT, "--numbers_count", "12"]),
    ("examples/generate_others.py", "fan_out", ["--tasks_count", "300"]),
]  # fmt: skip


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[EngineProcess, list[subprocess.Popen[bytes]]]]:
    engine = start_engine(tmp_path)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        yield engine, workers
    finally:
        for w in workers:
            w.kill()
            w.wait(10)
        engine.kill()


def _run(*args: str, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(
        plait_command("run", *args), cwd=ROOT, capture_output=True, text=True, timeout=180,
        env={**os.environ, **(env or {})}, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_seed_examples_remote_match_embedded(
    tmp_path: Path, stack: tuple[EngineProcess, list[subprocess.Popen[bytes]]]
) -> None:
    engine, workers = stack
    for i in range(2):
        workers.append(start_worker(engine.address, *(f for f, _, _ in SEEDS),
                                    log=tmp_path / f"worker{i}.log"))  # fmt: skip
    for file, wf, args in SEEDS:
        remote = _run("--remote", engine.address, file, wf, *args)
        local = _run("--local", file, wf, *args, env={"PLAIT_DATA_DIR": str(tmp_path / "local")})
        assert remote == local
        assert remote.strip()
    assert _run("--remote", engine.address, *SEEDS[0][:2], *SEEDS[0][2]).strip() == "3"
    # Both workers took part: node events name the worker that ran each attempt.
    db = sqlite3.connect(engine.data_dir / "plait.db")
    try:
        rows = list(db.execute("SELECT seq, body FROM events"))
    finally:
        db.close()
    bodies = [ev for seq, body in rows for _, ev in row_events(seq, body)]
    workers_seen = set()
    for body in bodies:
        event = events_pb2.ExecutionEvent.FromString(body)
        if event.HasField("node") and event.node.worker_id:
            workers_seen.add(event.node.worker_id)
    assert len(workers_seen) == 2, workers_seen


def _markers(folder: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for p in folder.iterdir():
        key = p.name.split(".", 1)[0]
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_engine_sigkill_during_a_1000_task_fan_out_then_restart(
    tmp_path: Path,
    stack: tuple[EngineProcess, list[subprocess.Popen[bytes]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine, workers = stack
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv("PLAIT_TEST_MARKERS", str(markers))
    for i in range(2):
        workers.append(start_worker(engine.address, "tests.workflows.slow_fan_out",
                                    extra_args=("--slots", "4"),
                                    log=tmp_path / f"worker{i}.log"))  # fmt: skip
    n = 1000
    with Client(engine.address) as client:
        client.execute(slow_fan_out.slow_wf, {"n": n}, name="fan-1000")
    deadline = time.monotonic() + 120
    while sum(_markers(markers).values()) < 250:
        assert time.monotonic() < deadline, "the fan-out did not get going"
        time.sleep(0.02)
    engine.kill()

    db = sqlite3.connect(engine.data_dir / "plait.db")
    try:
        rows = db.execute(
            "SELECT n.node_id FROM nodes n JOIN executions e ON n.eid = e.eid "
            "WHERE e.name = 'fan-1000' AND n.phase = ?",
            (execution_pb2.NODE_PHASE_SUCCEEDED,),
        ).fetchall()
    finally:
        db.close()
    finished = {int(r[0].rsplit("/n", 1)[1]) for r in rows if r[0].startswith("n0/n")}
    assert 0 < len(finished) < n, "the kill should land in the middle"

    engine = engine.restart()
    with Client(engine.address) as client:
        outputs = client.wait("fan-1000", timeout=180)
        assert outputs == [2 * i for i in range(n)]
        execution = client.get("fan-1000")
        assert execution.nodes.succeeded == n + 1  # the generator and its n children
    counts = _markers(markers)
    assert counts["generator"] == 1, "the generator's stored spec must be reused"
    for i in range(n):
        runs = counts.get(f"task-{i}", 0)
        if i in finished:
            assert runs == 1, f"task {i} had finished before the kill but ran {runs} times"
        else:
            assert runs >= 1
