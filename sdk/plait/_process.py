"""`ProcessTask`: a task the engine runs as a local process. Any program, no worker."""

from __future__ import annotations

import functools
import inspect
import sys
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from plaitidl.core.v1 import tasks_pb2

from plait._constants import TASK_TYPE_DYNAMIC, TASK_TYPE_PROCESS
from plait._errors import PlaitError, PlaitValueError
from plait._interface import digest
from plait._task import Task, TaskOptions, Timeout


def _signature_function(
    name: str,
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Any],
    module: str,
    what: str = "process task",
    single: Any = None,
) -> Any:
    """A stand-in function whose signature declares the task's interface: named `outputs`, or
    one unnamed output of type `single`."""

    def process_task(**kwargs: Any) -> Any:
        does = "runs its command" if what == "process task" else "runs"
        raise PlaitError(
            f"{what} '{name}' {does} on an engine: call it in a workflow or a dynamic and run "
            "that (plait run / plait run --remote)"
        )

    for key in (*inputs, *outputs):
        if not key.isidentifier():
            raise PlaitValueError(f"{what} '{name}': {key!r} is not a valid variable name")
    params = [
        inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=t)
        for n, t in inputs.items()
    ]
    # Named outputs are a NamedTuple: a call returns promises you read by name (`.out`).
    ret: Any = (
        typing.NamedTuple(f"{name.rsplit('.', 1)[-1]}_outputs", list(outputs.items()))
        if outputs
        else None
    )
    if single is not None:
        ret = single  # one unnamed output: a call returns its promise
    process_task.__signature__ = inspect.Signature(params, return_annotation=ret)  # type: ignore[attr-defined]
    process_task.__annotations__ = {**dict(inputs), "return": ret}
    process_task.__module__ = module
    process_task.__qualname__ = name.rsplit(".", 1)[-1]
    process_task.__doc__ = f"Runs {what} {name}."
    return process_task


class ProcessTask(Task[..., Any]):
    """A task the engine runs as a local process: any program, in any language.

    The engine writes the inputs as a binary `LiteralMap` to the file ``{{.input}}``, creates the
    folder ``{{.outputPrefix}}``, substitutes both placeholders in `command`, `args` and `env`,
    runs the command, and reads back exactly one of ``outputs.pb`` (a `LiteralMap`),
    ``futures.pb`` (a `DynamicJobSpec`: the task is a generator) or ``error.pb`` (an
    `ExecutionError`). A non-zero exit without ``error.pb`` is a system error.

    Example:
        ```python
        fan_out = ProcessTask(
            "examples.process.fan_out",
            ["bash", "fan_out.sh", "{{.input}}", "{{.outputPrefix}}"],
            inputs={"n": int},
            outputs={"out": list[int]},
            generator=True,
        )

        @workflow
        def wf(n: int) -> list[int]:
            return fan_out(n=n).out
        ```

    Args:
        name: The registered name.
        command: The program and its arguments (placeholders allowed).
        inputs: Input names and their type hints, in order.
        outputs: Output names and their type hints, in order.
        args: Further arguments.
        env: Extra environment variables.
        image: A container image, for executors that run containers.
        generator: Whether the process writes a ``futures.pb`` (a dynamic generator).
        retries: Extra attempts after recoverable failures.
        timeout: Limit per attempt (`timedelta` or seconds).
        cache: Whether outputs are cached by inputs.
        cache_version: Part of the cache key.
        cache_serialize: Whether identical concurrent runs wait for one.
    """

    # A public constructor of keyword-only options (mirroring TaskMetadata and ProcessTarget):
    # the documented exception to the argument-count rule (RUF100: see @task).
    def __init__(  # noqa: PLR0913, RUF100
        self,
        name: str,
        command: Sequence[str],
        *,
        inputs: Mapping[str, Any] | None = None,
        outputs: Mapping[str, Any] | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        image: str = "",
        generator: bool = False,
        retries: int = 0,
        timeout: Timeout = None,
        cache: bool = False,
        cache_version: str = "",
        cache_serialize: bool = False,
    ) -> None:
        if not name:
            raise PlaitValueError("a ProcessTask needs a name")
        if isinstance(command, str) or not command:
            raise PlaitValueError(
                f"process task '{name}': command must be a non-empty list of strings"
            )
        caller = sys._getframe(1).f_globals.get("__name__", "__main__")
        fn = _signature_function(name, dict(inputs or {}), dict(outputs or {}), caller)
        super().__init__(
            fn,
            task_type=TASK_TYPE_DYNAMIC if generator else TASK_TYPE_PROCESS,
            options=TaskOptions(
                retries=retries,
                timeout=timeout,
                cache=cache,
                cache_version=cache_version,
                cache_serialize=cache_serialize,
                name=name,
            ),
        )
        self._target = tasks_pb2.ProcessTarget(
            command=list(command), args=list(args), env=dict(env or {}), image=image
        )

    def _code_digest(self) -> str:
        return ""  # the command is the code, and it is in the template

    @functools.cached_property
    def template(self) -> tasks_pb2.TaskTemplate:
        """The `TaskTemplate` with a process target; its version is a digest of its content."""
        tpl = tasks_pb2.TaskTemplate()
        tpl.CopyFrom(Task.template.func(self))  # type: ignore[attr-defined]
        tpl.process.CopyFrom(self._target)  # replaces the worker target (a oneof)
        tpl.id.version = ""
        tpl.id.version = digest(tpl.SerializeToString(deterministic=True))
        return tpl
