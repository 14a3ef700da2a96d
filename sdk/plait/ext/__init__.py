"""Task types as plugins: write your own, or use plait's (`plait.ext.ray`, `plait.ext.sql`,
`plait.ext.http`).

A task type is a name (`TaskTemplate.type`), a configuration dataclass carried in
`TaskTemplate.custom`, and how one attempt runs: a `TaskType` subclass. Declare it as an entry
point of the group ``plait.task_types`` (named like the type) in your distribution; the engine
and ``plait worker`` load the installed ones when they start (never at ``import plait``). Its
tasks are `PluginTask`s, called in workflows and dynamics like any task.

Nothing here is imported by ``import plait``.
"""

from __future__ import annotations

from plait.ext._config import InvalidConfigError
from plait.ext._task import PluginTask
from plait.ext._tasktype import RunContext, SecretError, TaskFailedError, TaskType

__all__ = [
    "TaskType",
    "PluginTask",
    "RunContext",
    "TaskFailedError",
    "SecretError",
    "InvalidConfigError",
]
