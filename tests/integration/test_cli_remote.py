"""The CLI against `plait serve` and `plait worker` subprocesses, as a new user runs it:
code-aware versions, running by name, Ctrl-C and reattaching, context on a worker, and what
operators see in the logs."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.servers import ROOT, EngineProcess, plait_command, start_engine, start_worker

CHATTY = str(ROOT / "tests" / "workflows" / "chatty.py")
VERSIONED = """
from plait import task, workflow


def _prefix() -> str:
    return "PREFIX"


@task
def greet(name: str) -> str:
    return _prefix() + " hello " + name


@workflow
def greet_wf(name: str) -> str:
    return greet(name=name)
"""


def plait(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PLAIT_ENGINE", "PLAIT_DATA_DIR")}
    return subprocess.run(
        plait_command(*args),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextmanager
def worker(address: str, *paths: str, log: Path, args: tuple[str, ...] = ()) -> Iterator[None]:
    proc = start_worker(address, *paths, extra_args=args, log=log)
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _created(output: str, kind: str, name: str) -> str:
    found = re.search(rf"^created\s+{kind}\s+default/development/{name}@(\w+)$", output, re.M)
    assert found is not None, output
    return found.group(1)


def test_editing_a_task_gives_a_new_version_that_runs(
    engine: EngineProcess, tmp_path: Path
) -> None:
    module = f"versioned_{os.getpid()}_{time.monotonic_ns()}"
    path = tmp_path / f"{module}.py"
    path.write_text(VERSIONED.replace("PREFIX", "v1"))
    first = plait("register", "--remote", engine.address, str(path))
    assert first.returncode == 0, first.stderr
    v1 = _created(first.stdout, "task", f"{module}.greet")
    unchanged = plait("register", "--remote", engine.address, str(path))
    assert "created" not in unchanged.stdout

    with worker(engine.address, str(path), log=tmp_path / "w1.log"):
        # `--name` is run's own option (the execution's name): after `--`, it is the input.
        by_name = plait(
            "run", "--remote", engine.address, f"{module}.greet_wf", "--", "--name", "ann"
        )  # fmt: skip
        assert by_name.returncode == 0, by_name.stderr
        assert by_name.stdout == "v1 hello ann\n"

    # Edit what the task uses (a helper of its module): a new version, registered as created.
    path.write_text(VERSIONED.replace("PREFIX", "v2"))
    second = plait("register", "--remote", engine.address, str(path))
    v2 = _created(second.stdout, "task", f"{module}.greet")
    assert v2 != v1
    _created(second.stdout, "workflow", f"{module}.greet_wf")

    with worker(engine.address, str(path), log=tmp_path / "w2.log"):
        from_file = plait(
            "run", "--remote", engine.address, str(path), "greet_wf", "--", "--name", "bo"
        )  # fmt: skip
        assert from_file.returncode == 0, from_file.stderr
        assert from_file.stdout == "v2 hello bo\n"
        newest = plait("run", "--remote", engine.address, f"default/development/{module}.greet_wf",
                       "--", "--name", "cy")  # fmt: skip
        assert newest.stdout == "v2 hello cy\n"
    shown = json.loads(plait("tasks", "get", "--remote", engine.address,
                             f"{module}.greet@{v1}", "-o", "json").stdout)  # fmt: skip
    assert shown["id"]["version"] == v1


def test_run_by_name_help_and_bad_input(engine: EngineProcess) -> None:
    assert plait("register", "--remote", engine.address, CHATTY).returncode == 0
    helped = plait("run", "--remote", engine.address, "tests.workflows.chatty.sleepy_wf", "--help")
    assert helped.returncode == 0
    assert "--n INT" in helped.stdout and "--seconds FLOAT" in helped.stdout
    bad = plait(
        "run",
        "--remote",
        engine.address,
        "tests.workflows.chatty.sleepy_wf",
        "--n",
        "x",
        "--seconds",
        "1",
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    unknown = plait("run", "--remote", engine.address, "tests.workflows.chatty.nope")
    assert (
        unknown.returncode == 2
        and "no workflow or launch plan 'tests.workflows.chatty.nope'" in unknown.stderr
    )
    limits = plait(
        "run", "--remote", engine.address, "tests.workflows.chatty.sleepy_wf", "--max-nodes", "5"
    )
    assert limits.returncode == 2 and "plait serve" in limits.stderr
    workflows = json.loads(plait("workflows", "list", "--remote", engine.address, "-o",
                                 "json").stdout)  # fmt: skip
    assert "tests.workflows.chatty.sleepy_wf" in {w["id"]["name"] for w in workflows}


def test_ctrl_c_leaves_the_execution_running_and_watch_reattaches(
    engine: EngineProcess, tmp_path: Path
) -> None:
    with worker(engine.address, CHATTY, log=tmp_path / "worker.log"):
        env = {k: v for k, v in os.environ.items() if k != "PLAIT_ENGINE"}
        command = ("run", "--remote", engine.address, CHATTY, "sleepy_wf", "--n", "3")
        proc = subprocess.Popen(
            plait_command(*command, "--seconds", "2"),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stderr is not None
            first = proc.stderr.readline()  # the name comes first, before it ends
            found = re.match(rf"execution (\S+) started on {engine.address}", first)
            assert found is not None, first
            name = found.group(1)
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
        assert proc.returncode == 130
        assert "Traceback" not in err
        assert f"reattach with: plait executions watch --remote {engine.address} {name}" in err

        watch = plait("executions", "watch", "--remote", engine.address, name)
        assert watch.returncode == 0, watch.stderr
        assert "node n0 (sleepy_fan) -> " in watch.stdout
        assert watch.stdout.splitlines()[-1].endswith("execution -> SUCCEEDED")
    result = plait("executions", "result", "--remote", engine.address, name, "-o", "json")
    assert json.loads(result.stdout) == {"o0": [2.0, 2.0, 2.0]}
    nodes = json.loads(plait("executions", "nodes", "--remote", engine.address, name, "-o",
                             "json").stdout)  # fmt: skip
    assert sorted(n.get("name", "") for n in nodes) == ["sleepy", "sleepy", "sleepy", "sleepy_fan"]
    assert plait("executions", "delete", "--remote", engine.address, name).returncode == 0
    gone = plait("executions", "get", "--remote", engine.address, name)
    assert gone.returncode == 1 and "NOT_FOUND" in gone.stderr


def test_context_on_a_worker(engine: EngineProcess, tmp_path: Path) -> None:
    with worker(engine.address, CHATTY, log=tmp_path / "worker.log"):
        run = plait("run", "--remote", engine.address, CHATTY, "talk_wf", "--word", "w")
    assert run.returncode == 0, run.stderr
    name = re.search(r"execution (\S+) started", run.stderr)
    assert name is not None
    assert run.stdout == f"default/development/{name.group(1)}|n0|tests.workflows.chatty.talk\n"


def test_operators_see_sessions_registrations_and_executions(tmp_path: Path) -> None:
    server = start_engine(tmp_path, "--log-format", "json")
    try:
        with worker(server.address, CHATTY, log=tmp_path / "worker.log",
                    args=("--log-format", "json")):  # fmt: skip
            run = plait("run", "--remote", server.address, CHATTY, "sleepy_wf", "--n", "2",
                        "--seconds", "0")  # fmt: skip
            assert run.returncode == 0, run.stderr
    finally:
        server.stop()
    records = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    messages = [r["message"] for r in records]
    assert all(r["level"] in ("debug", "info", "warning", "error") for r in records)
    assert any(re.match(r"worker \S+ connected", m) for m in messages), messages
    assert any(m.startswith("registered ") for m in messages), messages
    assert any(re.match(r"execution default/development/\S+ started", m) for m in messages)
    assert any(re.match(r"execution default/development/\S+ ended: SUCCEEDED", m) for m in messages)
    worker_lines = (tmp_path / "worker.log").read_text().splitlines()
    worker_messages = [json.loads(line)["message"] for line in worker_lines if line.startswith("{")]
    assert any("connected to" in m for m in worker_messages), worker_lines


def test_a_worker_says_when_the_engine_is_unreachable(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    log = tmp_path / "worker.log"
    address = f"127.0.0.1:{port}"
    with worker(address, CHATTY, log=log):
        deadline = time.monotonic() + 30
        text = ""
        while f"cannot reach the engine at {address}" not in text:
            assert time.monotonic() < deadline, text
            time.sleep(0.1)
            text = log.read_text()
    assert "retrying every 5 s" in text
