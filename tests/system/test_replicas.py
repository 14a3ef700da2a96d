"""Several `plait serve` replicas on one store: workers connected to one replica run the
executions another owns, and a replica that dies has its executions adopted."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from plait import Client

from tests.support.servers import ROOT, EngineProcess, _spawn, start_worker

_load = __import__("plait._loader", fromlist=["load_path"]).load_path
merge_sort = _load(str(ROOT / "examples" / "merge_sort.py"))
generate_others = _load(str(ROOT / "examples" / "generate_others.py"))


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[list[EngineProcess]]:
    data = tmp_path / "shared"
    started: list[EngineProcess] = []
    try:
        for i in range(2):
            started.append(
                _spawn(data, "127.0.0.1:0", ("--cluster", "true"), tmp_path / f"replica{i}.log")
            )
        yield started
    finally:
        for r in started:
            r.kill()


def test_a_worker_on_one_replica_runs_what_another_owns(
    tmp_path: Path, replicas: list[EngineProcess]
) -> None:
    a, b = replicas
    worker: subprocess.Popen[bytes] = start_worker(
        b.address, "examples/merge_sort.py", "examples/generate_others.py",
        log=tmp_path / "worker.log",
    )  # fmt: skip
    try:
        with Client(a.address) as client:
            numbers = [5, 3, 9, 1, 7, 2, 8]
            sort = client.execute(merge_sort.merge_sort, {"numbers": numbers, "numbers_count": 7})
            fan = client.execute(generate_others.fan_out, {"tasks_count": 30})
            assert client.wait(sort, timeout=60) == sorted(numbers)
            assert client.wait(fan, timeout=60) == [i * i for i in range(30)]
        # Watching works from the other replica too.
        with Client(b.address) as client:
            assert client.outputs(fan.name) == [i * i for i in range(30)]
    finally:
        worker.kill()
        worker.wait()


def test_a_killed_replica_s_executions_are_adopted(
    tmp_path: Path, replicas: list[EngineProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = replicas
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv("PLAIT_TEST_MARKERS", str(markers))
    worker = start_worker(b.address, "tests/workflows/slow_fan_out.py", log=tmp_path / "w.log")
    try:
        with Client(a.address) as client:
            from tests.workflows import slow_fan_out

            run = client.execute(slow_fan_out.slow_wf, {"n": 40})
        a.kill()  # the owner dies; b adopts (same host: at once)
        with Client(b.address) as client:
            assert client.wait(run.name, timeout=90) == [2 * i for i in range(40)]
    finally:
        worker.kill()
        worker.wait()
