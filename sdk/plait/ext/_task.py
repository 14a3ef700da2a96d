"""`PluginTask`: a task of a plugin's type, declared by its configuration and interface."""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from plaitidl.core.v1 import tasks_pb2

from plait._constants import DEFAULT_QUEUE
from plait._errors import PlaitValueError
from plait._interface import digest
from plait._process import _signature_function
from plait._task import Task, TaskOptions, Timeout
from plait.ext._config import to_struct
from plait.ext._tasktype import TaskType


def with_plugin(
    base: tasks_pb2.TaskTemplate,
    config: object,
    secrets: Sequence[str],
    handler: str | None = None,
) -> tasks_pb2.TaskTemplate:
    """`base` with the configuration in `custom`, the secrets it names, and a new version."""
    tpl = tasks_pb2.TaskTemplate()
    tpl.CopyFrom(base)
    tpl.custom.CopyFrom(to_struct(config))
    for name in secrets:
        tpl.metadata.secrets.add(name=name)
    if handler is not None:
        tpl.worker.handler = handler
    tpl.id.version = ""
    tpl.id.version = digest(tpl.SerializeToString(deterministic=True))
    return tpl


def check_template(plugin: TaskType[Any], tpl: tasks_pb2.TaskTemplate, where: str) -> None:
    """Raise what the plugin would refuse at registration, now.

    Raises:
        PlaitValueError: Naming each field (``custom.url: ...``).
    """
    problems = plugin.validate(tpl)
    if problems:
        raise PlaitValueError(f"{where}: " + "; ".join(f"{f}: {m}" for f, m in problems))


def _caller_module() -> str:
    """The module that declares the task: the first caller outside plait's own code."""
    frame = sys._getframe(1)
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith("plait."):
        frame = frame.f_back
    return str(frame.f_globals.get("__name__", "__main__"))


class PluginTask(Task[..., Any]):
    """A task of a plugin's type: its configuration, inputs and outputs, and nothing to run
    here. The engine (or a worker serving the type) runs it with the type's plugin.

    Called in a workflow or a dynamic like any task (keyword arguments; a single `output` is
    returned as a promise, named `outputs` as a NamedTuple of promises).

    Args:
        task_type: The `TaskType` subclass, or just its name (for a type only workers know;
            then nothing checks `config` here).
        name: The registered name.
        config: The type's configuration (a dataclass instance).
        inputs: Input names and their type hints, in order.
        output: The type of the one unnamed output (``o0``).
        outputs: Named outputs and their types, instead of `output`.
        secrets: Names of the secrets the task needs at run time.
        retries: Extra attempts after recoverable failures.
        timeout: Limit per attempt (`timedelta` or seconds).
        cache: Whether outputs are cached by inputs.
        cache_version: Part of the cache key.
        queue: The worker queue, for workers that serve the type.

    Raises:
        PlaitValueError: The plugin refuses the configuration (naming the field).
    """

    # A public constructor of keyword-only options (mirroring TaskMetadata): the documented
    # exception to the argument-count rule, as for @task and ProcessTask.
    def __init__(  # noqa: PLR0913
        self,
        task_type: type[TaskType[Any]] | str,
        name: str,
        config: object,
        *,
        inputs: Mapping[str, Any] | None = None,
        output: Any = None,
        outputs: Mapping[str, Any] | None = None,
        secrets: Sequence[str] = (),
        retries: int = 0,
        timeout: Timeout = None,
        cache: bool = False,
        cache_version: str = "",
        queue: str = DEFAULT_QUEUE,
    ) -> None:
        type_name = task_type if isinstance(task_type, str) else task_type.name
        if not name or not type_name:
            raise PlaitValueError("a PluginTask needs a name and a task type")
        if output is not None and outputs:
            raise PlaitValueError(f"task '{name}': give output or outputs, not both")
        caller = _caller_module()
        named = dict(outputs or {}) if output is None else {"o0": output}
        fn = _signature_function(
            name, dict(inputs or {}), named, caller, f"{type_name} task", single=output
        )
        super().__init__(
            fn,
            task_type=type_name,
            options=TaskOptions(
                retries=retries,
                timeout=timeout,
                cache=cache,
                cache_version=cache_version,
                queue=queue,
                name=name,
            ),
        )
        self.config = config
        self._secrets = tuple(secrets)
        if not isinstance(task_type, str):
            check_template(task_type(), self.template, f"task '{name}'")

    def _code_digest(self) -> str:
        return ""  # the configuration is the code, and it is in the template

    @functools.cached_property
    def template(self) -> tasks_pb2.TaskTemplate:
        """The `TaskTemplate`: the type, its configuration in `custom`, the secrets."""
        base = Task.template.func(self)  # type: ignore[attr-defined]
        return with_plugin(base, self.config, self._secrets, handler=self.task_type)


__all__ = ["PluginTask", "check_template", "with_plugin"]
