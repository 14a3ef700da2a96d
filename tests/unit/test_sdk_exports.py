"""The SDK's public surface is deliberate: this test pins it."""

from __future__ import annotations

import ast
import builtins
import inspect
import json
import subprocess
import sys
from pathlib import Path

import plait
from plait import _errors

SDK = Path(plait.__file__).parent

# Exceptions raised inside the SDK that never reach user code: each is caught at a boundary
# and turned into a public error (or an attempt's error), as its comment says.
INTERNAL_ERRORS = {
    "UnsupportedError",  # _types: formatted into PlaitTypeError by _types/__init__
    "MismatchError",  # _types: formatted into PlaitTypeError by _types/__init__
    "HandlerNotFoundError",  # _loader: the runtime reports it as code HandlerNotFound
    "_ConversionError",  # _runtime: reported as the attempt's non-retryable error
    "ShimUsageError",  # flyte/_exec: the shim's own command line, reported as exit code 2
    "UsageError",  # _cli: a wrong command line, reported by `plait` as exit code 2
}


def test_all_is_pinned() -> None:
    assert plait.__all__ == [
        "task",
        "workflow",
        "dynamic",
        "conditional",
        "map_task",
        "current_context",
        "TaskContext",
        "LaunchPlan",
        "ProcessTask",
        "File",
        "Directory",
        "Client",
        "RemoteExecution",
        "PlaitError",
        "PlaitTypeError",
        "PlaitValueError",
        "NonRetryableError",
        "ExecutionFailedError",
        "WorkerError",
        "RpcError",
        "InvalidArgumentError",
        "NotFoundError",
        "AlreadyExistsError",
        "UnauthenticatedError",
        "UnavailableError",
    ]
    for name in plait.__all__:
        assert getattr(plait, name) is not None
    assert set(plait.__all__) <= set(dir(plait))
    assert plait.RemoteExecution.__module__ == "plait._client"


def test_every_public_error_is_exported_and_rooted_in_plait_error() -> None:
    public = {
        name
        for name, obj in vars(_errors).items()
        if inspect.isclass(obj) and issubclass(obj, Exception) and name not in INTERNAL_ERRORS
    }
    assert public <= set(plait.__all__)
    for name in public:
        assert issubclass(getattr(plait, name), plait.PlaitError), name


def _raised_names() -> dict[str, list[str]]:
    """Names of the classes a `raise Name(...)` in the SDK raises, with where."""
    found: dict[str, list[str]] = {}
    for path in sorted(SDK.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                func = node.exc.func
                name = func.id if isinstance(func, ast.Name) else ""
                if name[:1].isupper() or (name.startswith("_") and name[1:2].isupper()):
                    where = f"{path.relative_to(SDK)}:{node.lineno}"
                    found.setdefault(name, []).append(where)
    return found


def test_every_error_the_sdk_raises_is_exported_builtin_or_internal() -> None:
    raised = _raised_names()
    assert "PlaitTypeError" in raised and "WorkerError" in raised  # the walk sees them
    import plait.flyte

    for name, where in raised.items():
        if name in INTERNAL_ERRORS or isinstance(getattr(builtins, name, None), type):
            continue
        if all(w.startswith("flyte/") for w in where):
            # The optional Flyte boundary exports its own errors.
            assert name in plait.flyte.__all__, f"{name} raised at {where} is not exported"
            continue
        if all(w.startswith("ext/") for w in where):
            # The task type plugins' API (plait.ext) exports its own errors.
            import plait.ext

            exported = name in plait.__all__ or name in plait.ext.__all__
            assert exported, f"{name} raised at {where} is not exported"
            continue
        assert name in plait.__all__, f"{name} raised at {where} is not exported"


def test_import_plait_loads_no_grpc_and_no_network_stack() -> None:
    code = (
        "import json, sys, plait\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('grpc', 'grpc_status', 'plait_engine', 'http', 'email', 'ssl', 'urllib')"
        " and m not in ('urllib', 'urllib.parse'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout) == []
    lazy = "import sys, plait; plait.Client; print('grpc' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", lazy], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "True"


def test_current_context_is_exported_and_refuses_outside_a_task() -> None:
    import pytest

    assert plait.current_context.__module__ == "plait._attempt"
    with pytest.raises(plait.PlaitError, match="only available while a task runs"):
        plait.current_context()
