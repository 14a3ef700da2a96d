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

from plait._attempt import TaskContext, current_context
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

if TYPE_CHECKING:
    from plait._client import Client, RemoteExecution

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

# Names whose module imports grpc (~0.3 s): only programs that talk to a remote engine pay.
_LAZY = {"Client": "plait._client", "RemoteExecution": "plait._client"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'plait' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
