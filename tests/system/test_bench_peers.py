"""The peer bench as a user runs it, offline: a peer whose venv cannot be made is reported and
the bench goes on; a run past its timeout is stopped with everything it started; a wrong
result is caught; Ray (the main venv's, pinned by the dev extra) runs and leaves nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from benchmarks._peers import PEERS
from benchmarks._peers._run import PeerOptions, measured, outcome, run_peers

ROOT = Path(__file__).resolve().parents[2]


def _carrying(token: str) -> list[int]:
    """PIDs of live processes whose environment holds `token` (what a run started)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if token.encode() in (proc / "environ").read_bytes():
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_a_peer_that_cannot_be_installed_is_reported_and_the_bench_goes_on(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    # No index and no wheels: pip answers at once that the pinned version is not to be had.
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(empty)}
    cmd = [sys.executable, "-m", "benchmarks", "--no-startup", "--modes", "embedded",
           "--workloads", "fanout-20", "--peers", "ray",
           "--peer-pin", "ray=plait-no-such-peer==0.0.0",
           "--peer-cache", str(tmp_path / "cache")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
                          check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    plait = [ln for ln in lines if "| fanout-20" in ln and "| embedded" in ln]
    assert plait and "| ok" in plait[0], proc.stdout
    ray = [ln for ln in lines if "| fanout-20" in ln and "| ray" in ln]
    assert ray, proc.stdout
    assert "not installed: pip install plait-no-such-peer==0.0.0:" in ray[0]
    assert "no matching distribution" in ray[0].lower()
    # Nothing is left that looks installed: the next run tries again.
    assert not (tmp_path / "cache" / "ray" / "installed.txt").exists()


def test_a_run_past_its_timeout_is_stopped_with_all_it_started(tmp_path: Path) -> None:
    token = f"plait-bench-test-{uuid.uuid4().hex}"
    # A runner that starts a detached grandchild (its own session, as a server would) and
    # never answers.
    script = textwrap.dedent("""
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                         start_new_session=True)
        time.sleep(600)
    """)
    env = {**os.environ, "PLAIT_BENCH_TEST_TOKEN": token}
    try:
        tree = measured([sys.executable, "-c", script], timeout=2, env=env, cwd=tmp_path)
        row = outcome("fanout-5", tree, 2)
        assert tree["timed_out"] is True
        assert tree["processes"] >= 2  # the grandchild was seen in the tree
        assert row["status"] == "> 2 s (timeout)" and not row["ok"]
        assert _carrying(token) == []
    finally:
        for pid in _carrying(token):
            os.kill(pid, 9)


def test_a_wrong_result_is_caught_even_from_a_run_that_says_it_finished(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import json
        out = {"workload": "fanout-10", "wall_s": 0.01, "pre_cpu_s": 0.0, "start_s": None,
               "result": [i + 1 for i in range(10)][:-1] + [99]}
        print("BENCH-JSON " + json.dumps(out))
    """)
    tree = measured([sys.executable, "-c", script], timeout=60, env=dict(os.environ),
                    cwd=tmp_path)  # fmt: skip
    assert tree["returncode"] == 0 and tree["child"]["result"][-1] == 99
    row = outcome("fanout-10", tree, 60)
    assert row["status"] == "wrong result" and not row["ok"]


def test_ray_runs_as_a_peer_and_leaves_no_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = f"plait-bench-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("PLAIT_BENCH_TEST_TOKEN", token)  # inherited by the run's whole tree
    # Where a Ray cluster started without a token of its own writes one (~/.ray/auth_token),
    # for every later `ray start` on the machine to adopt: the bench must leave none.
    monkeypatch.setenv("HOME", str(tmp_path))
    logs: list[str] = []
    try:
        opts = PeerOptions(pythons={"ray": sys.executable}, timeout=240, startup_runs=1,
                           log=logs.append)  # fmt: skip
        rows = run_peers(["ray"], ["fanout-30", "chain-5", "mergesort-50"], opts)
        by = {r["workload"]: r for r in rows}
        for wl in ("fanout-30", "chain-5"):
            r = by[wl]
            assert r["status"] == "ok", (r, logs)
            assert r["engine"].startswith("ray ") and r["durable"] is False
            assert r["wall_s"] > 0 and r["cpu_s"] > 0 and r["start_s"] is not None
            # Ray's cluster is several processes (GCS, raylet, workers), all measured.
            assert r["tree"]["processes"] >= 3 and r["peak_rss_bytes"] > 50 * 1024 * 1024
        assert by["mergesort-50"]["status"] == "n/a"
        assert _carrying(token) == []
        assert not (tmp_path / ".ray" / "auth_token").exists()
    finally:
        for pid in _carrying(token):
            os.kill(pid, 9)
    assert PEERS["ray"].durable is False
