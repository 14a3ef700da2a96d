"""The remote CLI: `plait register`, `plait executions ...`, `plait run --remote` with a worker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from plait import _cli

from tests.support.servers import ROOT, EngineProcess, plait_command, start_worker

EXAMPLE = str(ROOT / "examples/dynamic_workflow.py")


def test_register_then_executions_commands(
    engine: EngineProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli.main(["register", "--engine", engine.address, EXAMPLE]) == 0
    out = capsys.readouterr().out
    assert "workflow" in out and "dynamic_workflow.dynamic_wf@" in out
    assert "task" in out and "dynamic_workflow.count_characters@" in out

    # Executions of the registered workflow wait for a worker: stop one from the CLI.
    from plait import Client, _loader

    module = _loader.load_path(EXAMPLE)
    with Client(engine.address) as client:
        handle = client.execute(module.dynamic_wf, {"s1": "a", "s2": "b"}, name="cli-stop-me")
    assert _cli.main(["executions", "list", "--engine", engine.address]) == 0
    assert "cli-stop-me" in capsys.readouterr().out
    assert _cli.main(["executions", "get", "--engine", engine.address, handle.name]) == 0
    assert "phase:" in capsys.readouterr().out
    assert _cli.main(["executions", "terminate", "--engine", engine.address, handle.name]) == 0
    assert "ABORTED" in capsys.readouterr().out
    assert _cli.main(["executions", "watch", "--engine", engine.address, handle.name]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert "execution -> QUEUED" in lines[0] and "execution -> ABORTED" in lines[-1]

    assert _cli.main(["executions", "get", "--engine", engine.address, "nope"]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err


def test_run_remote_with_a_worker(engine: EngineProcess, tmp_path: Path) -> None:
    worker = start_worker(engine.address, EXAMPLE, log=tmp_path / "worker.log")
    try:
        run = subprocess.run(
            plait_command(
                "run",
                "--remote",
                engine.address,
                EXAMPLE,
                "dynamic_wf",
                "--s1",
                "Pear",
                "--s2",
                "Earth",
            ),
            check=False,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr + (tmp_path / "worker.log").read_text()
        assert run.stdout == "3\n"
        assert "SUCCEEDED" in run.stderr

        bad = subprocess.run(
            plait_command("run", "--remote", engine.address, EXAMPLE, "dynamic_wf", "--s1", "x"),
            check=False,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert bad.returncode != 0 and "--s2" in bad.stderr
    finally:
        worker.terminate()
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    assert sys.executable  # the worker ran under this interpreter
