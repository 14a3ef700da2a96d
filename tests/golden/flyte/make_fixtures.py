"""Write the flyteidl fixtures of the plait.flyte golden tests, with flytekit (run once).

Run with the Python that has flytekit (``make flyte-env``)::

    .venv-flyte/bin/python tests/golden/flyte/make_fixtures.py
    PLAIT_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_flyte_golden.py

It packages ``examples/flyte`` with ``pyflyte package`` (``examples.tgz``) and runs some of its
tasks with flytekit's own entry point to capture what flytekit writes: dynamic job specs
(``*.futures.pb``), outputs (``*.outputs.pb``) and error documents (``*.error.pb``); the
inputs of one task as flytekit encodes them (``*.inputs.pb``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from flyteidl.admin import task_pb2
from flyteidl.core import literals_pb2

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parents[2] / "examples" / "flyte"
BIN = Path(sys.executable).parent


def _package() -> dict[str, task_pb2.TaskSpec]:
    out = HERE / "examples.tgz"
    subprocess.run(
        [
            str(BIN / "pyflyte"),
            *("--pkgs", "flyte_examples", "package", "--image", "localimage:1"),
            *("-o", str(out), "-f"),
        ],
        cwd=EXAMPLES,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    tasks = {}
    with tarfile.open(out) as tar:
        for m in tar.getmembers():
            if m.name.endswith("_1.pb"):
                spec = task_pb2.TaskSpec.FromString(tar.extractfile(m).read())  # type: ignore[union-attr]
                tasks[spec.template.id.name] = spec
    return tasks


def _inputs(values: dict[str, object], hints: dict[str, object]) -> literals_pb2.LiteralMap:
    """Values as flytekit encodes them."""
    from flytekit.core.context_manager import FlyteContextManager
    from flytekit.core.type_engine import TypeEngine

    ctx = FlyteContextManager.current_context()
    return TypeEngine.dict_to_literal_map(ctx, values, hints).to_flyte_idl()  # type: ignore[no-any-return]


def _run(spec: task_pb2.TaskSpec, inputs: literals_pb2.LiteralMap, attempt: int = 0) -> Path:
    """Run one task with pyflyte-execute; returns its output folder."""
    work = Path(tempfile.mkdtemp(prefix="plait-fixture-"))
    (work / "inputs.pb").write_bytes(inputs.SerializeToString())
    values = {
        "{{.input}}": str(work / "inputs.pb"),
        "{{.outputPrefix}}": str(work / "out"),
        "{{.rawOutputDataPrefix}}": str(work / "raw"),
        "{{.checkpointOutputPrefix}}": str(work / "checkpoint"),
        "{{.prevCheckpointPrefix}}": '""',
    }
    args = [values.get(a, a) for a in spec.template.container.args]
    env = dict(os.environ, PYTHONPATH=str(EXAMPLES))
    env.update({kv.key: kv.value for kv in spec.template.container.env})
    env.update(
        FLYTE_INTERNAL_EXECUTION_PROJECT="default",
        FLYTE_INTERNAL_EXECUTION_DOMAIN="development",
        FLYTE_INTERNAL_EXECUTION_ID="fixture",
        FLYTE_INTERNAL_TASK_VERSION="v1",
        FLYTE_ATTEMPT_NUMBER=str(attempt),
    )
    subprocess.run([BIN / args[0], *args[1:]], env=env, cwd=work, check=True, capture_output=True)
    return work / "out"


def main() -> None:
    tasks = _package()
    ms = "flyte_examples.merge_sort.merge_sort_remotely"
    out = _run(
        tasks[ms],
        _inputs(
            {"numbers": [5, 3, 9, 1, 7, 2, 8], "run_local_at_count": 3},
            {"numbers": list[int], "run_local_at_count": int},
        ),
    )
    (HERE / f"{ms}.futures.pb").write_bytes((out / "futures.pb").read_bytes())
    cc = "flyte_examples.dynamic_workflow.count_characters"
    out = _run(tasks[cc], _inputs({"s1": "Ab", "s2": "b"}, {"s1": str, "s2": str}))
    (HERE / f"{cc}.futures.pb").write_bytes((out / "futures.pb").read_bytes())
    from flyte_examples.kinds import Color  # type: ignore[import-not-found]

    mp = "flyte_examples.kinds.make_point"
    out = _run(
        tasks[mp],
        _inputs(
            {"name": "p", "n": 4, "color": Color.GREEN}, {"name": str, "n": int, "color": Color}
        ),
    )
    (HERE / f"{mp}.outputs.pb").write_bytes((out / "outputs.pb").read_bytes())
    total = "flyte_examples.kinds.total"
    lm = _inputs(
        {"xs": [1, None, 3], "weights": {"a": 1.5}, "u": "text"},
        {"xs": list[int | None], "weights": dict[str, float], "u": int | str},
    )
    (HERE / f"{total}.inputs.pb").write_bytes(lm.SerializeToString())
    fail = tasks["flyte_examples.kinds.fail"]
    out = _run(fail, _inputs({"message": "boom"}, {"message": str}))
    (HERE / "value_error.error.pb").write_bytes(next(out.glob("error*.pb")).read_bytes())
    out = _run(
        tasks["flyte_examples.kinds.flaky"], _inputs({"fail_attempts": 1}, {"fail_attempts": int})
    )
    (HERE / "recoverable.error.pb").write_bytes(next(out.glob("error*.pb")).read_bytes())


if __name__ == "__main__":
    sys.path.insert(0, str(EXAMPLES))
    main()
