"""plait: typed, dynamic workflows whose contract is Protobuf and gRPC.

Decorate functions with `task`, `workflow` and `dynamic`; branch with `conditional`; fan out
with `map_task`; name launch configurations with `LaunchPlan`. Inside a running task,
`current_context()` tells its execution, node and attempt and gives it a logger. `Client` talks
to a remote engine (``plait serve``) and hands out `RemoteExecution`s. Everything the SDK
raises on purpose is a `PlaitError`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from plait._attempt import TaskContext, current_context
    from plait._client import Client, RemoteExecution
    from plait._conditional import conditional
    from plait._dynamic import dynamic
    from plait._errors import (
        AlreadyExistsError,
        ExecutionFailedError,
        InvalidArgumentError,
        NonRetryableError,
        NotFoundError,
        PlaitError,
        PlaitTypeError,
        PlaitValueError,
        RpcError,
        UnauthenticatedError,
        UnavailableError,
        WorkerError,
    )
    from plait._files import Directory, File
    from plait._launch_plan import LaunchPlan
    from plait._map import map_task
    from plait._process import ProcessTask
    from plait._task import task
    from plait._workflow import workflow

__all__ = [
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

# Every public name is loaded on first use (PEP 562), so `import plait` costs next to nothing
# and a program pays only for what it uses: `Client` alone pulls in grpc (~0.1 s), the
# decorators pull in protobuf.
_LAZY = {
    "task": "plait._task",
    "workflow": "plait._workflow",
    "dynamic": "plait._dynamic",
    "conditional": "plait._conditional",
    "map_task": "plait._map",
    "current_context": "plait._attempt",
    "TaskContext": "plait._attempt",
    "LaunchPlan": "plait._launch_plan",
    "ProcessTask": "plait._process",
    "File": "plait._files",
    "Directory": "plait._files",
    "Client": "plait._client",
    "RemoteExecution": "plait._client",
    **dict.fromkeys(
        (
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
        ),
        "plait._errors",
    ),
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'plait' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
