"""`plait schedules` against a real `plait serve`: a launch plan registered with a schedule
ticks, shows up in `list`, stops starting executions while paused and starts again once
resumed; the same commands read a local data dir."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from plait import Client

from tests.support.servers import ROOT, EngineProcess, plait_command, start_engine

SCHEDULED = "tests/workflows/scheduled.py"
LP = "scheduled.every_second"


def plait(*args: str, data_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PLAIT_ENGINE", "PLAIT_DATA_DIR")}
    if data_dir is not None:
        env["PLAIT_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        plait_command(*args),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineProcess]:
    proc = start_engine(tmp_path)
    try:
        yield proc
    finally:
        proc.kill()


def _ticked(address: str) -> int:
    with Client(address) as client:
        runs = client.list_executions(limit=1000)
    return sum(1 for e in runs if e.labels.get("plait.schedule") == LP)


def test_list_pause_and_resume_a_schedule(engine: EngineProcess, tmp_path: Path) -> None:
    remote = ("--remote", engine.address)
    reg = plait("register", *remote, SCHEDULED)
    assert reg.returncode == 0, reg.stderr

    listed = plait("schedules", "list", *remote)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split()[:3] == ["LAUNCH", "PLAN", "SCHEDULE"]
    assert row.split()[:5] == [LP, "every", "1s", "active", "all"]

    deadline = time.monotonic() + 20
    while _ticked(engine.address) < 2:
        assert time.monotonic() < deadline, "the schedule never ticked"
        time.sleep(0.2)

    paused = plait("schedules", "pause", *remote, LP, "-o", "json")
    assert paused.returncode == 0, paused.stderr
    state = json.loads(paused.stdout)
    assert state["paused"] is True and state["launch_plan_id"]["name"] == LP
    time.sleep(1.5)  # a tick that was already being started may still land
    before = _ticked(engine.address)
    time.sleep(2.5)
    assert _ticked(engine.address) == before  # nothing while paused
    shown = json.loads(plait("schedules", "list", *remote, "-o", "json").stdout)
    assert [s["paused"] for s in shown] == [True]
    assert shown[0]["last_execution"]["name"]  # the execution of the last tick

    resumed = plait("schedules", "resume", *remote, LP)
    assert resumed.returncode == 0 and "active" in resumed.stdout
    deadline = time.monotonic() + 20
    while _ticked(engine.address) <= before:
        assert time.monotonic() < deadline, "the resumed schedule never ticked"
        time.sleep(0.2)

    unknown = plait("schedules", "pause", *remote, "no.such.plan")
    assert unknown.returncode == 1 and "no.such.plan" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_schedules_of_a_local_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert plait("register", SCHEDULED, data_dir=data).returncode == 0
    paused = plait("schedules", "pause", LP, data_dir=data)
    assert paused.returncode == 0, paused.stderr
    listed = plait("schedules", "list", "-o", "json", data_dir=data)
    assert [(s["launch_plan_id"]["name"], s["paused"]) for s in json.loads(listed.stdout)] == [
        (LP, True)
    ]
