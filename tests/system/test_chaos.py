"""Chaos: the engine is SIGKILLed again and again while a mix of executions runs; every
execution still finishes with the answer plain Python gives, none is lost, stuck or run twice.
And the crash window: after a SIGKILL, only tasks that finished in the last moments (or were
running) run again."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from plait import Client, RemoteExecution
from plaitidl.core.v1 import execution_pb2

from tests.support.engines import read_store
from tests.support.servers import ROOT, EngineProcess, start_engine, start_worker
from tests.workflows import behaviours as b

EP = execution_pb2
_load = __import__("plait._loader", fromlist=["load_path"]).load_path
merge_sort = _load(str(ROOT / "examples" / "merge_sort.py"))
generate_others = _load(str(ROOT / "examples" / "generate_others.py"))
dynamic_workflow = _load(str(ROOT / "examples" / "dynamic_workflow.py"))


def _mix(rng: random.Random) -> list[tuple[Any, dict[str, Any], Any]]:
    """Executions and the answer Python gives for each."""
    out: list[tuple[Any, dict[str, Any], Any]] = []
    for i in range(12):
        numbers = [rng.randint(-1000, 1000) for _ in range(rng.randint(2, 40))]
        out.append(
            (
                merge_sort.merge_sort,
                {"numbers": numbers, "numbers_count": len(numbers)},
                sorted(numbers),
            )
        )
        k = rng.randint(1, 60)
        out.append((generate_others.fan_out, {"tasks_count": k}, [j * j for j in range(k)]))
        x = rng.randint(-50, 50)
        out.append((b.branch_wf, {"x": x}, x * x if x > 0 else -x))
        out.append((b.cached_wf, {"x": i % 4}, (i % 4) * 10))
    out.append(
        (dynamic_workflow.dynamic_wf, {"s1": "Pear", "s2": "Earth"}, 3),
    )
    return out


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[EngineProcess, list[subprocess.Popen[bytes]]]]:
    engine = start_engine(tmp_path)
    workers = [
        start_worker(
            engine.address,
            "examples/merge_sort.py",
            "examples/generate_others.py",
            "examples/dynamic_workflow.py",
            "tests/workflows/behaviours.py",
            log=tmp_path / f"worker{i}.log",
        )
        for i in range(2)
    ]
    try:
        yield engine, workers
    finally:
        for w in workers:
            w.kill()
            w.wait(10)
        engine.kill()


def test_engine_sigkilled_repeatedly_loses_nothing(
    cluster: tuple[EngineProcess, list[subprocess.Popen[bytes]]],
) -> None:
    engine, _ = cluster
    rng = random.Random(int(os.environ.get("PLAIT_CHAOS_SEED", "20261130")))
    mix = _mix(rng)
    started: list[tuple[RemoteExecution, Any]] = []
    kills = 0
    with Client(engine.address, timeout=30) as client:
        for i, (entity, inputs, want) in enumerate(mix):
            # Retried after a kill: the same request id returns the same execution.
            for _ in range(60):
                try:
                    run = client.execute(entity, inputs, request_id=f"chaos-{i}")
                    break
                except Exception:
                    time.sleep(0.25)
            else:
                raise AssertionError(f"could not start execution {i}")
            started.append((run, want))
            if i % 10 == 9:
                time.sleep(rng.uniform(0.05, 0.6))
                engine.kill()
                engine = engine.restart()
                kills += 1
        for _ in range(3):
            time.sleep(rng.uniform(0.2, 1.0))
            engine.kill()
            engine = engine.restart()
            kills += 1
    with Client(engine.address, timeout=30) as client:
        for run, want in started:
            assert client.wait(run, timeout=120) == want, run.name
        listed = client.list_executions(limit=10_000)
    names = [e.id.name for e in listed]
    assert len(names) == len(set(names)) == len(mix)  # none duplicated, none lost
    assert all(e.phase == EP.EXECUTION_PHASE_SUCCEEDED for e in listed)  # none stuck
    assert kills >= 7
    print(f"chaos: {len(mix)} executions, {kills} engine SIGKILLs, lost 0, stuck 0, wrong 0")


def _crash_once(tmp_path: Path, n: int, kill_after_markers: int) -> tuple[int, int]:
    markers = tmp_path / "markers"
    markers.mkdir()
    data = tmp_path / "data"
    env = {**os.environ, "PLAIT_DATA_DIR": str(data), "PLAIT_TEST_MARKERS": str(markers)}
    cmd = [sys.executable, "-m", "plait._cli", "run", "tests/workflows/slow_fan_out.py"]
    proc = subprocess.Popen(
        [*cmd, "slow_wf", "--n", str(n)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        name = proc.stderr.readline().decode().split()[1]
        deadline = time.monotonic() + 120
        while sum(1 for p in markers.iterdir() if p.name.startswith("task-")) < kill_after_markers:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finished = {p.name.split(".")[0] for p in markers.iterdir() if p.name.startswith("task-")}

    async def state(store: Any) -> list[Any]:
        rec = await store.get_execution("default", "development", name)
        return list(await store.node_records(rec.eid))

    recorded = {
        f"task-{r.node_id.rsplit('/n', 1)[1]}"
        for r in read_store(data / "plait.db", state)
        if r.phase == EP.NODE_PHASE_SUCCEEDED and r.node_id.startswith("n0/")
    }
    return len(finished), len(finished - recorded)


@pytest.mark.parametrize("moment", [100, 400, 900])
def test_a_sigkill_reruns_only_the_last_moments_tasks(tmp_path: Path, moment: int) -> None:
    finished, rerun = _crash_once(tmp_path, 2000, moment)
    print(f"crash window: killed after {finished} finished tasks; {rerun} finished but unrecorded")
    assert finished >= moment
    # 8 task threads finish ~160 tasks a second: a result is committed within tens of ms.
    assert rerun <= 24, json.dumps({"finished": finished, "rerun": rerun})
