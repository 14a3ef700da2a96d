"""`plait.ProcessTask`: process targets (here a bash generator) used from Python workflows."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from plait import PlaitError, ProcessTask, _embedded, _serialize, workflow
from plaitidl.core.v1 import tasks_pb2

from tests.integration.conftest import ALLOW_BASH_AND_CP
from tests.support.servers import ROOT, plait_command, start_engine

SHELL = "examples/process/shell_workflow.py"


def _load() -> object:
    from plait import _loader

    return _loader.load_path(str(ROOT / SHELL))


def test_template_has_a_process_target_and_named_outputs() -> None:
    module = _load()
    task = module.fan_out  # type: ignore[attr-defined]
    tpl: tasks_pb2.TaskTemplate = task.template
    assert tpl.WhichOneof("target") == "process"
    assert tpl.type == "dynamic"
    assert tpl.process.command[0] == "bash" and tpl.process.command[2:] == [
        "{{.input}}",
        "{{.outputPrefix}}",
    ]
    assert [v.name for v in tpl.interface.inputs.variables] == ["n"]
    assert [v.name for v in tpl.interface.outputs.variables] == ["out"]
    assert tpl.id.name == "examples.process.fan_out" and len(tpl.id.version) == 16


def test_misuse_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(PlaitError, match="command must be a non-empty list"):
        ProcessTask("t", "echo hi")
    with pytest.raises(PlaitError, match="not a valid variable name"):
        ProcessTask("t", ["true"], inputs={"not valid": int})
    echo = ProcessTask("t.echo", ["cp", "{{.input}}", "{{.outputPrefix}}/outputs.pb"],
                       inputs={"x": int}, outputs={"x": int})  # fmt: skip
    with pytest.raises(PlaitError, match="runs its command on an engine"):
        echo(x=1)

    @workflow
    def uses_echo(x: int) -> int:
        return echo(x=x).x  # type: ignore[no-any-return]

    # A plain process task (not a generator) runs on the embedded engine too.
    result = _embedded.run(uses_echo, _embedded.inputs_to_literals(uses_echo, {"x": 41}), tmp_path)
    assert _serialize.outputs_to_python(uses_echo, result.outputs) == 41


def test_bash_generator_from_a_python_workflow(tmp_path: Path) -> None:
    module = _load()
    wf = module.shell_sum  # type: ignore[attr-defined]
    result = _embedded.run(wf, _embedded.inputs_to_literals(wf, {"n": 100}), tmp_path)
    assert result.phase == "SUCCEEDED", result.error
    assert _serialize.outputs_to_python(wf, result.outputs) == 4950


def test_remote_engine_runs_process_targets_without_any_worker(tmp_path: Path) -> None:
    engine = start_engine(tmp_path, *ALLOW_BASH_AND_CP)
    try:
        out = subprocess.run(
            plait_command("run", "--remote", engine.address, SHELL, "shell_fan_out", "--n", "6"),
            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "[0, 1, 2, 3, 4, 5]"
    finally:
        engine.kill()


NOISY = """
from plait import ProcessTask, workflow

noisy = ProcessTask(
    "noisy.copy",
    ["sh", "-c", "echo copying; echo 'careful' >&2; printf 'no newline'; "
     "cp {{.input}} {{.outputPrefix}}/outputs.pb"],
    inputs={"x": int},
    outputs={"x": int},
)


@workflow
def noisy_wf(x: int) -> int:
    return noisy(x=x).x
"""


def test_a_process_target_s_output_is_its_attempt_s_log(tmp_path: Path) -> None:
    flow = tmp_path / "noisy_flow.py"
    flow.write_text(NOISY)
    env = {"PLAIT_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
    run = subprocess.run(
        plait_command("run", str(flow), "noisy_wf", "--x", "7"),
        capture_output=True, text=True, timeout=120, check=False, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout == "7\n"  # only the outputs; the program's output is not mixed in
    assert "copying" not in run.stderr
    name = run.stderr.split("execution ", 1)[1].split()[0]
    logs = subprocess.run(
        plait_command("logs", name, "n0"),
        capture_output=True, text=True, timeout=120, check=False, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert logs.returncode == 0, logs.stderr
    lines = logs.stdout.splitlines()
    assert any(line.endswith("copying") for line in lines), logs.stdout
    assert any(line.endswith("careful") for line in lines), logs.stdout
    assert any(line.endswith("no newline") for line in lines), logs.stdout
