"""plait: typed, dynamic workflows whose contract is Protobuf and gRPC.

Decorate functions with `task`, `workflow` and `dynamic`; branch with `conditional`; fan out
with `map_task`; name launch configurations with `LaunchPlan`. `Client` talks to a remote
engine (``plait serve``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plait._conditional import conditional
from plait._dynamic import dynamic
from plait._errors import (
    ExecutionFailedError,
    InvalidArgumentError,
    NonRetryableError,
    NotFoundError,
    PlaitError,
    RpcError,
)
from plait._files import Directory, File
from plait._launch_plan import LaunchPlan
from plait._map import map_task
from plait._process import ProcessTask
from plait._task import task
from plait._workflow import workflow

if TYPE_CHECKING:
    from plait._client import Client

__all__ = [
    "task",
    "workflow",
    "dynamic",
    "conditional",
    "map_task",
    "LaunchPlan",
    "ProcessTask",
    "File",
    "Directory",
    "PlaitError",
    "NonRetryableError",
    "Client",
    "ExecutionFailedError",
    "RpcError",
    "NotFoundError",
    "InvalidArgumentError",
]


def __getattr__(name: str) -> object:
    # `Client` pulls in grpc (~0.3 s): only programs that talk to a remote engine pay for it.
    if name == "Client":
        from plait._client import Client

        return Client
    raise AttributeError(f"module 'plait' has no attribute {name!r}")
