"""The everyday commands on the local data dir, as a new user runs them: the CLI as a
subprocess, no server anywhere."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PLAIT = [sys.executable, "-m", "plait._cli"]
CHATTY = "tests/workflows/chatty.py"


def plait(
    *args: str, data_dir: Path, check: bool = False, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PLAIT_ENGINE", "PLAIT_CONFIG")}
    return subprocess.run(
        [*PLAIT, *args],
        cwd=cwd,
        env={**env, "PLAIT_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )


def started_name(stderr: str) -> str:
    found = re.search(r"execution (\S+) started", stderr)
    assert found is not None, stderr
    return found.group(1)


def spawn(*args: str, data_dir: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PLAIT_ENGINE", "PLAIT_CONFIG")}
    return subprocess.Popen(
        [*PLAIT, *args],
        cwd=ROOT,
        env={**env, "PLAIT_DATA_DIR": str(data_dir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def test_task_output_stays_off_stdout_and_lands_in_the_logs(tmp_path: Path) -> None:
    run = plait("run", CHATTY, "talk_wf", "--word", "hello", data_dir=tmp_path)
    assert run.returncode == 0, run.stderr
    name = started_name(run.stderr)
    # stdout is only the output; the task knew its execution, node and task.
    assert run.stdout == f"default/development/{name}|n0|tests.workflows.chatty.talk\n"
    assert "stdout hello" not in run.stderr and "logging hello" not in run.stderr

    logs = plait("logs", name, data_dir=tmp_path)
    assert logs.returncode == 0, logs.stderr
    lines = logs.stdout.splitlines()
    assert "n0#1 | stdout hello attempt 1" in lines
    assert "n0#1 | [stderr] stderr hello" in lines
    assert "n0#1 | WARNING chatty: logging hello" in lines
    assert "n0#1 | INFO plait.task: context logger hello at n0" in lines
    assert "n0#1 | [stderr] ValueError: first attempt of hello fails" in lines
    assert "n0#2 | stdout hello attempt 2" in lines

    second = plait("logs", name, "n0", "--attempt", "2", data_dir=tmp_path)
    assert second.stdout.splitlines()[0] == "stdout hello attempt 2"
    assert "attempt 1" not in second.stdout

    as_json = plait("executions", "logs", name, "n0", "-o", "json", data_dir=tmp_path)
    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert {r["stream"] for r in records} == {"stdout", "stderr", "logger"}
    assert {r["attempt"] for r in records} == {1, 2}


def test_a_failed_task_names_its_node_and_its_logs_show_why(tmp_path: Path) -> None:
    run = plait("run", CHATTY, "doomed_wf", "--reason", "the disk is full", data_dir=tmp_path)
    assert run.returncode == 1
    assert run.stdout == ""
    name = started_name(run.stderr)
    assert "error at node n0 (doomed): NonRetryableError: the disk is full" in run.stderr
    hint = re.search(r"its output: plait logs (\S+) (\S+)", run.stderr)
    assert hint is not None and hint.groups() == (name, "n0")

    logs = plait("logs", name, "n0", data_dir=tmp_path)
    assert logs.stdout.splitlines()[0] == "about to fail"
    assert "[stderr] Traceback (most recent call last):" in logs.stdout
    assert "[stderr] plait._errors.NonRetryableError: the disk is full" in logs.stdout

    get = plait("executions", "get", name, data_dir=tmp_path)
    assert "phase:     FAILED" in get.stdout
    assert "error:     NonRetryableError at node n0 (doomed): the disk is full" in get.stdout
    result = plait("executions", "result", name, data_dir=tmp_path)
    assert result.returncode == 1 and "FAILED at node n0" in result.stderr


def test_executions_commands_work_without_a_server(tmp_path: Path) -> None:
    run = plait("run", "examples/merge_sort.py", "merge_sort", "--numbers", "[5, 3, 9, 1]",
                "--numbers_count", "4", "--run_local_at_count", "2", data_dir=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout == "[1, 3, 5, 9]\n"
    name = started_name(run.stderr)

    listed = plait("executions", "list", data_dir=tmp_path)
    assert listed.returncode == 0 and name in listed.stdout and "SUCCEEDED" in listed.stdout
    rows = json.loads(plait("executions", "list", "-o", "json", data_dir=tmp_path).stdout)
    assert [r["id"]["name"] for r in rows] == [name]
    assert rows[0]["phase"] == "EXECUTION_PHASE_SUCCEEDED"

    got = json.loads(plait("executions", "get", name, "-o", "json", data_dir=tmp_path).stdout)
    assert got["workflow_id"]["name"] == "merge_sort.merge_sort"

    nodes = json.loads(plait("executions", "nodes", name, "-o", "json", data_dir=tmp_path).stdout)
    names = {n["id"]["node_id"]: n.get("name", "") for n in nodes}
    assert names["n0"] == "terminal_case"  # the conditional, by its name
    assert "merge_sort_remotely" in names.values() and "split" in names.values()
    table = plait("executions", "nodes", name, data_dir=tmp_path).stdout
    assert re.search(r"^n0\s+terminal_case\s+SUCCEEDED", table, re.M), table

    assert plait("executions", "result", name, data_dir=tmp_path).stdout == "[1, 3, 5, 9]\n"
    result = json.loads(plait("executions", "result", name, "-o", "json", data_dir=tmp_path).stdout)
    assert result == {"o0": [1, 3, 5, 9]}

    watch = plait("executions", "watch", name, data_dir=tmp_path)
    assert watch.returncode == 0
    assert "execution -> SUCCEEDED" in watch.stdout.splitlines()[-1]
    assert "node n0 (terminal_case) -> " in watch.stdout

    ended = plait("executions", "terminate", name, data_dir=tmp_path)
    assert ended.returncode == 0 and "SUCCEEDED" in ended.stdout  # it had ended: a no-op
    deleted = plait("executions", "delete", name, data_dir=tmp_path)
    assert deleted.returncode == 0, deleted.stderr
    gone = plait("executions", "get", name, data_dir=tmp_path)
    assert gone.returncode == 1 and "NOT_FOUND" in gone.stderr and "Traceback" not in gone.stderr


def test_help_version_limits_and_exit_codes(tmp_path: Path) -> None:
    helped = plait("run", CHATTY, "sleepy_wf", "--help", data_dir=tmp_path)
    assert helped.returncode == 0
    assert "--n INT" in helped.stdout and "--seconds FLOAT" in helped.stdout
    version = plait("--version", data_dir=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("plait ")

    fan = ("run", CHATTY, "sleepy_wf", "--n", "12", "--seconds", "0")
    too_many = plait(*fan, "--max-nodes", "5", data_dir=tmp_path)
    assert too_many.returncode == 1
    assert "12 nodes is over the limit of 5" in too_many.stderr
    enough = plait(*fan, "--max-nodes", "20", data_dir=tmp_path)
    assert enough.returncode == 0 and json.loads(enough.stdout) == [0.0] * 12

    bad = plait("run", CHATTY, "shout_wf", "--n", "twelve", data_dir=tmp_path)
    assert bad.returncode == 2 and "n" in bad.stderr and "Traceback" not in bad.stderr
    unknown = plait("run", CHATTY, "shout_wf", "--m", "1", "--n", "1", data_dir=tmp_path)
    assert unknown.returncode == 2 and "--m" in unknown.stderr


def test_register_and_run_by_name_on_the_data_dir(tmp_path: Path) -> None:
    reg = plait("register", CHATTY, data_dir=tmp_path)
    assert reg.returncode == 0, reg.stderr
    assert re.search(
        r"^created\s+workflow\s+default/development/tests.workflows.chatty.talk_wf@",
        reg.stdout,
        re.M,
    )
    again = plait("register", CHATTY, data_dir=tmp_path)
    assert "created" not in again.stdout and "unchanged" in again.stdout

    listed = plait("workflows", "list", data_dir=tmp_path)
    assert re.search(
        r"^tests.workflows.chatty.talk_wf\s+\w{16}\s+default/development\s+word$",
        listed.stdout,
        re.M,
    )
    tasks = json.loads(plait("tasks", "list", "-o", "json", data_dir=tmp_path).stdout)
    talk = next(t for t in tasks if t["id"]["name"] == "tests.workflows.chatty.talk")
    assert len(talk["metadata"]["code_digest"]) == 16
    shown = plait("tasks", "get", "tests.workflows.chatty.talk", data_dir=tmp_path)
    assert (
        "handler tests.workflows.chatty:talk" in shown.stdout
        and "input:    word: str" in shown.stdout
    )

    helped = plait("run", "tests.workflows.chatty.shout_wf", "--help", data_dir=tmp_path)
    assert helped.returncode == 0 and "--n INT" in helped.stdout
    # The embedded engine imports the tasks by module name (tests.workflows.chatty): from the
    # folder their top package lives in.
    run = plait(
        "run", "default/development/tests.workflows.chatty.shout_wf", "--n", "3", data_dir=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == [0, 1, 2]
    missing = plait("run", "tests.workflows.chatty.nothing", "--n", "3", data_dir=tmp_path)
    assert (
        missing.returncode == 2
        and "no workflow or launch plan 'tests.workflows.chatty.nothing'" in (missing.stderr)
    )


def test_ctrl_c_keeps_the_run_and_resume_reports_every_node(tmp_path: Path) -> None:
    proc = spawn("run", CHATTY, "sleepy_wf", "--n", "12", "--seconds", "1", data_dir=tmp_path)
    try:
        assert proc.stderr is not None
        name = started_name(proc.stderr.readline())
        time.sleep(1.5)  # some sleepers have finished, others run
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        stop(proc)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert f"resume it with: plait run --resume {name}" in err
    assert out == ""
    state = json.loads(plait("executions", "get", name, "-o", "json", data_dir=tmp_path).stdout)
    assert state["phase"] == "EXECUTION_PHASE_RUNNING"

    resumed = plait("run", "--resume", name, data_dir=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == [1.0] * 12
    assert "(13 nodes: 13 succeeded" in resumed.stderr


def test_terminate_from_another_process(tmp_path: Path) -> None:
    # A run in progress: its process applies the request.
    proc = spawn("run", CHATTY, "sleepy_wf", "--n", "40", "--seconds", "1", data_dir=tmp_path)
    try:
        assert proc.stderr is not None
        name = started_name(proc.stderr.readline())
        stopped = plait("executions", "terminate", name, "--reason", "enough", data_dir=tmp_path)
        assert stopped.returncode == 0, stopped.stderr
        _, err = proc.communicate(timeout=30)
    finally:
        stop(proc)
    assert proc.returncode == 1 and "ABORTED" in err and "enough" in err

    # An interrupted run nobody drives: aborted by the command itself.
    proc = spawn("run", CHATTY, "sleepy_wf", "--n", "40", "--seconds", "1", data_dir=tmp_path)
    try:
        assert proc.stderr is not None
        orphan = started_name(proc.stderr.readline())
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        stop(proc)
    aborted = plait("executions", "terminate", orphan, data_dir=tmp_path)
    assert aborted.returncode == 0 and "ABORTED" in aborted.stdout, aborted.stderr
    assert plait("executions", "delete", orphan, data_dir=tmp_path).returncode == 0


def test_progress_bar_shows_building_and_fits_a_narrow_terminal(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("PLAIT_ENGINE", "PLAIT_CONFIG")}
    proc = subprocess.Popen(
        [*PLAIT, "run", CHATTY, "slow_build_wf", "--n", "50"],
        cwd=ROOT,
        env={**env, "PLAIT_DATA_DIR": str(tmp_path), "COLUMNS": "120"},
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    seen = b""
    try:
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        out, _ = proc.communicate(timeout=60)
    finally:
        os.close(leader)
        stop(proc)
    assert proc.returncode == 0 and json.loads(out) == [0.0] * 50
    frames = [f for f in seen.decode(errors="replace").replace("\n", "\r").split("\r") if f]
    bars = [f for f in frames if "nodes done" in f]
    assert any("building the graph of slow_build..." in f for f in bars), bars
    assert bars[-1].startswith("[####################] 51/51 nodes done, 0 running, 0 queued")
    assert all(len(f) <= 119 for f in bars)
