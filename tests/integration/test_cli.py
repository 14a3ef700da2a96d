"""`plait run` as a user runs it: a real process, a real data dir."""

from __future__ import annotations

import json
import os
import pty
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from plait_engine.store import ExecutionFilter
from plaitidl.core.v1 import execution_pb2

from tests.support.engines import read_store

ROOT = Path(__file__).resolve().parents[2]
PLAIT = [sys.executable, "-m", "plait._cli"]


def plait(
    *args: str, data_dir: Path, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PLAIT, *args],
        cwd=ROOT,
        env={**os.environ, "PLAIT_DATA_DIR": str(data_dir), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )


def test_count_common_characters_prints_3(tmp_path: Path) -> None:
    out = plait(
        "run",
        "examples/dynamic_workflow.py",
        "dynamic_wf",
        "--s1",
        "Pear",
        "--s2",
        "Earth",
        data_dir=tmp_path,
    )
    assert out.stdout.strip() == "3"
    assert "SUCCEEDED" in out.stderr


def test_merge_sort_of_1000_random_ints(tmp_path: Path) -> None:
    numbers = random.Random(7).sample(range(-(10**6), 10**6), 1000)
    out = plait(
        "run",
        "examples/merge_sort.py",
        "merge_sort",
        "--numbers",
        json.dumps(numbers),
        "--numbers_count",
        "1000",
        "--run_local_at_count",
        "5",
        data_dir=tmp_path,
    )
    assert json.loads(out.stdout) == sorted(numbers)

    # Recursion: eight levels of dynamic specs below the top one for 1,000 numbers and 5.
    async def specs(store: Any) -> list[Any]:
        (rec,) = await store.list_executions(ExecutionFilter(), 10)
        return list(await store.dynamic_specs(rec.eid))

    depths = [s.depth for s in read_store(tmp_path / "plait.db", specs)]
    assert max(depths) >= 8
    assert len(depths) == 255  # one generator per internal node of the recursion tree


def test_fan_out_of_1000_returns_outputs_in_order(tmp_path: Path) -> None:
    out = plait(
        "run", "examples/generate_others.py", "fan_out", "--tasks_count", "1000", data_dir=tmp_path
    )
    values = json.loads(out.stdout)
    assert len(values) == 1000
    from examples.generate_others import other_task

    assert values == [other_task(index=i) for i in range(1000)]


def test_errors_are_clear_and_exit_non_zero(tmp_path: Path) -> None:
    missing = plait(
        "run",
        "examples/dynamic_workflow.py",
        "dynamic_wf",
        "--s1",
        "Pear",
        data_dir=tmp_path,
        check=False,
    )
    assert missing.returncode == 2 and "--s2" in missing.stderr
    unknown = plait("run", "examples/dynamic_workflow.py", "nope", data_dir=tmp_path, check=False)
    assert unknown.returncode == 2 and "no workflow, task or launch plan named 'nope'" in (
        unknown.stderr
    )
    bad_value = plait(
        "run",
        "examples/merge_sort.py",
        "merge_sort",
        "--numbers",
        "[1, x]",
        "--numbers_count",
        "2",
        data_dir=tmp_path,
        check=False,
    )
    # A value that does not parse is a usage error, as a missing one is.
    assert bad_value.returncode == 2 and "numbers" in bad_value.stderr
    assert "Traceback" not in bad_value.stderr
    failing = plait(
        "run",
        "tests/workflows/behaviours.py",
        "broken_wf",
        "--key",
        "k",
        data_dir=tmp_path,
        check=False,
    )
    assert failing.returncode == 1
    assert "NonRetryableError: bad input, retrying cannot help" in failing.stderr
    assert "n0" in failing.stderr


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [*PLAIT, "run", "examples/generate_others.py", "fan_out", "--tasks_count", "3000"],
        cwd=ROOT,
        env={**os.environ, "PLAIT_DATA_DIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    proc.wait(timeout=120)
    os.close(leader)
    assert proc.returncode == 0
    text = seen.decode(errors="replace")
    assert "nodes done" in text and "running" in text and "failed" in text
    # The final frame counts every node: the generator and its 3,000 children.
    assert "3001/3001 nodes done" in text


def _markers(folder: Path, prefix: str) -> int:
    return sum(1 for p in folder.iterdir() if p.name.startswith(prefix + "."))


def test_sigkill_in_the_middle_then_resume(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    data = tmp_path / "data"
    env = {**os.environ, "PLAIT_DATA_DIR": str(data), "PLAIT_TEST_MARKERS": str(markers)}
    n = 120
    proc = subprocess.Popen(
        [
            *PLAIT,
            "run",
            "tests/workflows/slow_fan_out.py",
            "slow_wf",
            "--n",
            str(n),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # The run says first what it is called and how to resume it, as a user would read it.
    assert proc.stderr is not None
    announce = proc.stderr.readline().decode()
    found = re.match(
        r"execution (\S+) started \(resume it with: plait run --resume (\S+)\)", announce
    )
    assert found is not None and found.group(1) == found.group(2), announce
    name = found.group(1)
    deadline = time.monotonic() + 60
    while sum(1 for _ in markers.iterdir()) < 30:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    async def state(store: Any) -> tuple[Any, list[Any]]:
        rec = await store.get_execution("default", "development", name)
        return rec, (await store.node_records(rec.eid) if rec is not None else [])

    rec, rows = read_store(data / "plait.db", state)
    assert rec is not None and rec.phase == execution_pb2.EXECUTION_PHASE_RUNNING
    done = {r.node_id for r in rows if r.phase == execution_pb2.NODE_PHASE_SUCCEEDED}
    finished_tasks = {int(p.rsplit("/n", 1)[1]) for p in done if p.startswith("n0/n")}
    assert 0 < len(finished_tasks) < n, "the kill should land in the middle"

    resumed = subprocess.run(
        [*PLAIT, "run", "--resume", name],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == [2 * i for i in range(n)]
    # The generator yielded once; its stored spec was reused.
    assert _markers(markers, "generator") == 1
    # No node that had finished ran again; every node ran at least once.
    for i in range(n):
        runs = _markers(markers, f"task-{i}")
        if i in finished_tasks:
            assert runs == 1, f"task {i} had finished before the kill but ran {runs} times"
        else:
            assert runs >= 1
