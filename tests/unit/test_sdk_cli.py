"""The CLI's layout: one module per command group, all registered, runnable with python -m."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
from plait import _cli

SHARED = {"common", "__main__", "oplog", "run_remote"}
EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "dynamic_workflow.py")


def test_every_command_module_is_registered() -> None:
    modules = {m.name for m in pkgutil.iter_modules(_cli.__path__)} - SHARED
    assert modules == {
        "run",
        "logs",
        "executions",
        "templates",
        "schedules",
        "register",
        "serve",
        "worker",
        "flyte",
        "console",
    }
    assert {c.__name__.rsplit(".", 1)[-1] for c in _cli.COMMANDS} == modules
    for command in _cli.COMMANDS:
        assert callable(command.add_parser)


def test_python_dash_m_runs_the_cli() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "plait._cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    commands = (
        "{run,logs,executions,tasks,workflows,launchplans,schedules,register,serve,worker,flyte,"
        "console}"
    )
    assert commands in out.stdout


def test_only_run_takes_arguments_of_its_own(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        _cli.main(["register", "x.py", "--bogus"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    # `run` hands what follows the workflow to the workflow's own input parser.
    with pytest.raises(SystemExit) as exit_:
        _cli.main(["run", EXAMPLE, "dynamic_wf", "--local", "--bogus", "1"])
    assert exit_.value.code == 2
    assert f"plait run {EXAMPLE} dynamic_wf: error:" in capsys.readouterr().err


def test_errors_are_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PLAIT_ENGINE", raising=False)
    code = _cli.main(["executions", "get", "--data-dir", str(tmp_path), "nope"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("plait: NOT_FOUND: execution default/development/nope does not exist")
    assert len(err.splitlines()) == 1


def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PLAIT_ENGINE", raising=False)
    assert _cli.main(["worker", "x.py"]) == 2  # no engine address anywhere
    assert capsys.readouterr().err.startswith("plait: no engine address: pass --engine")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        _cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("plait 0.1.0 (Python 3.")
