"""plait: typed, dynamic workflows whose contract is Protobuf and gRPC.

Decorate functions with `task`, `workflow` and `dynamic`; branch with `conditional`; fan out
with `map_task`; name launch configurations with `LaunchPlan`.
"""

from __future__ import annotations

from plait._conditional import conditional
from plait._dynamic import dynamic
from plait._errors import NonRetryableError, PlaitError
from plait._files import Directory, File
from plait._launch_plan import LaunchPlan
from plait._map import map_task
from plait._task import task
from plait._workflow import workflow

__all__ = [
    "task",
    "workflow",
    "dynamic",
    "conditional",
    "map_task",
    "LaunchPlan",
    "File",
    "Directory",
    "PlaitError",
    "NonRetryableError",
]
