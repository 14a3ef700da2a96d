"""Flyte projects on plait, end to end, with the real flytekit.

``pyflyte package`` packages ``examples/flyte`` inside the test; ``plait flyte import``
registers it (embedded engine, and a ``plait serve``); ``plait flyte run`` runs it, each task
a process running flytekit's own ``pyflyte-execute`` behind the shim, in the Python that plays
the tasks' image: ``.venv-flyte`` (``make flyte-env``) or ``$PLAIT_FLYTE_PYTHON``. That Python
has flytekit; the engine's does not need it. Never skipped: without it these tests fail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.servers import EngineProcess, start_engine

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "flyte"
NUMBERS = [1813, 3105, 3260, 2634, 383, 7037, 3291, 2403, 315, 7164, 42, 999]


def flyte_python() -> Path:
    python = Path(os.environ.get("PLAIT_FLYTE_PYTHON") or ROOT / ".venv-flyte" / "bin" / "python")
    assert python.exists(), (
        f"{python} is missing: run `make flyte-env` (a venv with flytekit and plait[flyte]) "
        "or set PLAIT_FLYTE_PYTHON"
    )
    return python


@dataclass
class Done:
    code: int
    out: str
    err: str


def cli(*args: str | Path, timeout: float = 600) -> Done:
    """Run ``plait`` (this checkout) and stop it, and every process it started, by group."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "plait._cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        cwd=ROOT,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return Done(proc.returncode, out, err)


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pyflyte package`` of examples/flyte, as a Flyte user would run it."""
    out = tmp_path_factory.mktemp("pkg") / "flyte-package.tgz"
    pyflyte = flyte_python().parent / "pyflyte"
    subprocess.run(
        [
            str(pyflyte),
            *("--pkgs", "flyte_examples", "package", "--image", "localimage:1"),
            *("-o", str(out), "-f"),
        ],
        cwd=EXAMPLES,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


@pytest.fixture(scope="module")
def data_dir(package: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An embedded engine's data dir with the package imported."""
    data = tmp_path_factory.mktemp("data")
    done = cli(
        "flyte", "import", package, "--data-dir", data, "--env", flyte_python(),
        "--source", EXAMPLES,
    )  # fmt: skip
    assert done.code == 0, done.err
    assert "created   launch plan default/development/flyte_examples.merge_sort.merge_sort@" in (
        done.out
    )
    return data


def run(data: Path, lp: str, *inputs: str) -> Done:
    return cli("flyte", "run", "--data-dir", data, lp, *inputs)


def logs(data: Path, done: Done) -> str:
    """What the run's tasks printed and logged (`plait logs`): flytekit's own lines included."""
    summary = [line for line in done.err.splitlines() if line.startswith("execution ")][-1]
    name = summary.split()[1].rstrip(":")
    shown = cli("logs", name, "--data-dir", data)
    assert shown.code == 0, shown.err
    return shown.out


def cached(done: Done) -> int:
    summary = [line for line in done.err.splitlines() if line.startswith("execution ")][-1]
    return int(summary.split(" succeeded, ")[1].split(" cached")[0])


def test_merge_sort_runs_and_a_second_run_hits_the_cache(data_dir: Path) -> None:
    args = ("--numbers", json.dumps(NUMBERS), "--numbers_count", str(len(NUMBERS)))
    first = run(data_dir, "flyte_examples.merge_sort.merge_sort", *args)
    assert first.code == 0, first.err
    assert json.loads(first.out) == sorted(NUMBERS)
    assert cached(first) == 0
    second = run(data_dir, "flyte_examples.merge_sort.merge_sort", *args)
    assert second.code == 0, second.err
    assert json.loads(second.out) == sorted(NUMBERS)
    assert cached(second) >= 1  # the dynamic's outputs come from the cache: nothing expands


def test_count_characters_runs_and_a_second_run_hits_the_cache(data_dir: Path) -> None:
    first = run(
        data_dir, "flyte_examples.dynamic_workflow.dynamic_wf", "--s1", "Pear", "--s2", "Earth"
    )
    assert first.code == 0, first.err
    assert first.out.strip() == "3"
    second = run(
        data_dir, "flyte_examples.dynamic_workflow.dynamic_wf", "--s1", "Pear", "--s2", "Earth"
    )
    assert (second.code, second.out.strip()) == (0, "3")
    assert cached(second) >= 1


def test_dataclasses_files_folders_map_tasks_and_retries(data_dir: Path) -> None:
    done = run(data_dir, "kinds_lp", "--color", "red")
    assert done.code == 0, done.err
    outputs = {k: json.loads(v) for k, v in (line.split(": ", 1) for line in done.out.splitlines())}
    point = outputs["o0"]
    assert point["name"] == "fixed"  # a fixed input of the launch plan
    assert point["inner"] == {"x": 3, "tags": ["a", "b"]}  # the plan's default n=3
    assert (point["color"], point["extra"], point["maybe"]) == ("red", {"k": 3}, None)
    assert Path(point["note"]).read_text() == "note of fixed"  # a FlyteFile inside a dataclass
    assert outputs["o1"] == "fixed|3|red|['a', 'b']|{'k': 3}|None|note of fixed"
    assert outputs["o2"] == ["a.txt", "b.txt"]  # a FlyteDirectory written, then listed
    assert outputs["o3"] == [2, None, 10]  # the map task's failed element is tolerated
    assert outputs["o4"] == 21.0
    assert outputs["o5"] == 1  # a FlyteRecoverableException on attempt 0, retried
    assert "cannot square -2" in logs(data_dir, done)  # flytekit's own logs are the task's


def test_a_user_error_fails_the_run_without_retries(data_dir: Path) -> None:
    done = run(data_dir, "flyte_examples.kinds.failing_wf", "--message", "boom")
    assert done.code == 1
    assert "error at node n0: USER:RuntimeError: ValueError: boom" in done.err
    # Flyte retries only recoverable errors: `fail` has retries=2, yet one attempt ran.
    assert logs(data_dir, done).count("Begin User Error Captured by Flyte") == 1


def test_strict_import_refuses_what_is_only_ignored(package: Path, tmp_path: Path) -> None:
    import tarfile

    from flyteidl.admin import task_pb2

    # A package whose task asks for resources: imported with a notice, refused with --strict.
    with tarfile.open(package) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("merge_sort.split_1.pb"))
        spec = task_pb2.TaskSpec.FromString(tar.extractfile(member).read())  # type: ignore[union-attr]
    spec.template.container.resources.requests.add(name=1, value="2")
    pkg = tmp_path / "res.tgz"
    body = tmp_path / member.name
    body.write_bytes(spec.SerializeToString())
    with tarfile.open(pkg, "w:gz") as tar:
        tar.add(body, arcname=member.name)
    data = tmp_path / "data"
    done = cli("flyte", "import", pkg, "--data-dir", data, "--env", flyte_python())
    assert done.code == 0, done.err
    assert "ignored: task 'flyte_examples.merge_sort.split': template.container.resources" in (
        done.err
    )
    strict = cli("flyte", "import", pkg, "--data-dir", tmp_path / "other", "--strict")
    assert strict.code == 1
    assert "refused: task 'flyte_examples.merge_sort.split': template.container.resources" in (
        strict.err
    )
    assert not (tmp_path / "other").exists()  # refused before anything was registered


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EngineProcess]:
    # Imported Flyte tasks are process targets running the Flyte env's programs.
    engine = start_engine(tmp_path, "--allow-process", f"{flyte_python().parent}/*")
    try:
        yield engine
    finally:
        engine.stop()


def test_import_and_run_on_a_server(package: Path, server: EngineProcess) -> None:
    done = cli(
        "flyte", "import", package, "--remote", server.address, "--env", flyte_python(),
        "--source", EXAMPLES, "--version", "r1",
    )  # fmt: skip
    assert done.code == 0, done.err
    assert "created   task        default/development/flyte_examples.merge_sort.split@r1" in (
        done.out
    )
    again = cli("flyte", "import", package, "--remote", server.address, "--env", flyte_python(),
                "--source", EXAMPLES, "--version", "r1")  # fmt: skip
    assert "unchanged task        default/development/flyte_examples.merge_sort.split@r1" in (
        again.out
    )
    # Four numbers: the branch sorts them in one task, run by the server's process executor.
    ran = cli(
        "flyte", "run", "--remote", server.address, "flyte_examples.merge_sort.merge_sort",
        "--numbers", "[4, 2, 3, 1]", "--numbers_count", "4",
    )  # fmt: skip
    assert ran.code == 0, ran.err
    assert json.loads(ran.out) == [1, 2, 3, 4]
