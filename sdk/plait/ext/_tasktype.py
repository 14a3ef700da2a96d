"""`TaskType`: the Python side of a task type plugin, and `PluginTask`, a task of such a type.

A plugin is found by the engine and the Python worker through an entry point of the group
``plait.task_types`` naming its `TaskType` subclass. Hosts call two methods (the contract in
``plait_engine.plugins``): `TaskType.validate` at registration, `TaskType.execute` for each
attempt. A subclass only declares its configuration (a dataclass) and implements `run`.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from plaitidl.core.v1 import (
    dynamic_job_pb2,
    errors_pb2,
    identifier_pb2,
    literals_pb2,
    tasks_pb2,
)

from plait import _types
from plait._attempt import enter
from plait._capture import STDERR
from plait._errors import NonRetryableError, PlaitError, PlaitTypeError
from plait.ext._config import InvalidConfigError, Problem, from_struct

C = TypeVar("C")
Outcome = literals_pb2.LiteralMap | dynamic_job_pb2.DynamicJobSpec | errors_pb2.ExecutionError
_USER = errors_pb2.ExecutionError.KIND_USER


class HostContext(Protocol):
    """What the host (the engine, or a worker) gives one attempt of a plugin task.

    Attributes:
        execution: ``project/domain/name`` of the execution.
        node_id: The node's path.
        attempt: 1-based attempt number.
        task: The task's identifier.
        log: Records a line of the attempt's output, ``(stream, text)``; None: not kept.
        deadline: Unix time the attempt must end by, or None.
        cancelled: Set when the engine no longer wants the attempt (terminated, timed out).
    """

    @property
    def execution(self) -> str: ...

    @property
    def node_id(self) -> str: ...

    @property
    def attempt(self) -> int: ...

    @property
    def task(self) -> identifier_pb2.Identifier: ...

    @property
    def log(self) -> Any: ...

    @property
    def deadline(self) -> float | None: ...

    @property
    def cancelled(self) -> threading.Event: ...

    def secret(self, name: str) -> str:
        """The value of a secret the task names (``metadata.secrets``); LookupError if none."""

    def output_dir(self) -> Path:
        """A fresh folder for files the attempt produces."""


class TaskFailedError(PlaitError):
    """Raise from `TaskType.run` to fail the attempt with your own error code.

    Args:
        code: The error's code, e.g. ``"HTTP503"``.
        message: What went wrong (never a secret: values handed out are scrubbed anyway).
        recoverable: Whether a retry may succeed (it uses the task's retry budget).
    """

    def __init__(self, code: str, message: str, *, recoverable: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.recoverable = recoverable


class SecretError(NonRetryableError):
    """The task asked for a secret it does not name, or that the host does not have."""


class TaskType(Generic[C]):
    """A task type: a name, a configuration dataclass, and how one attempt runs.

    Subclass it, set `name` and `config`, implement `run`, and declare the class as an entry
    point of the group ``plait.task_types`` named like `name`. Tasks of the type are
    `PluginTask`s (or your own `Task` subclass) whose template carries the configuration in
    `custom`.

    Example:
        ```python
        @dataclasses.dataclass
        class ShoutConfig:
            suffix: str = "!"

        class Shout(TaskType[ShoutConfig]):
            name = "shout"
            config = ShoutConfig

            def run(self, config, inputs, context):
                return inputs["text"].upper() + config.suffix
        ```

    Attributes:
        name: The task type (`TaskTemplate.type`).
        config: The dataclass `custom` holds.
    """

    name: ClassVar[str] = ""
    config: ClassVar[type[Any]]

    @property
    def task_type(self) -> str:
        """The task type this plugin serves (`name`)."""
        return type(self).name

    # -- what subclasses implement ----------------------------------------------------------
    def check(self, config: C, template: tasks_pb2.TaskTemplate) -> list[Problem]:
        """Problems beyond the fields' types (e.g. a placeholder naming no input), as
        ``(field path, message)`` pairs with paths like ``custom.url``."""
        return []

    def run(self, config: C, inputs: dict[str, Any], context: RunContext) -> Any:
        """Run one attempt; return the output value (a dict by name, or a tuple, for several
        outputs). Raise `TaskFailedError` or `plait.NonRetryableError` to fail; any other exception
        is a recoverable error."""
        raise NotImplementedError

    def read_inputs(
        self, template: tasks_pb2.TaskTemplate, inputs: literals_pb2.LiteralMap
    ) -> dict[str, Any]:
        """The inputs as Python values, by the interface's types (records as dicts)."""
        out: dict[str, Any] = {}
        for v in template.interface.inputs.variables:
            if v.name in inputs.literals:
                out[v.name] = _types.to_python_by_type(inputs.literals[v.name], v.type, var=v.name)
        return out

    def write_outputs(
        self, template: tasks_pb2.TaskTemplate, result: Any
    ) -> literals_pb2.LiteralMap:
        """The value `run` returned as outputs, by the interface's types."""
        variables = list(template.interface.outputs.variables)
        out = literals_pb2.LiteralMap()
        if not variables:
            return out
        if len(variables) == 1:
            values = {variables[0].name: result}
        elif isinstance(result, Mapping):
            values = dict(result)
        elif isinstance(result, tuple) and len(result) == len(variables):
            values = {v.name: r for v, r in zip(variables, result, strict=True)}
        else:
            raise PlaitTypeError(
                f"returned {type(result).__name__}, but the task declares {len(variables)} "
                "outputs: return a dict by name or a tuple"
            )
        for v in variables:
            if v.name not in values:
                raise PlaitTypeError(f"output {v.name!r} is missing")
            out.literals[v.name].CopyFrom(
                _types.to_literal_by_type(values[v.name], v.type, var=v.name)
            )
        return out

    # -- what hosts call ---------------------------------------------------------------------
    def parse(self, template: tasks_pb2.TaskTemplate) -> C:
        """The template's configuration.

        Raises:
            InvalidConfigError: It does not fit `config`, or `check` finds problems.
        """
        config: C = from_struct(type(self).config, template.custom)
        problems = self.check(config, template)
        if problems:
            raise InvalidConfigError(problems)
        return config

    def validate(self, template: tasks_pb2.TaskTemplate) -> Sequence[Problem]:
        """Problems of the template's configuration (none: it can run)."""
        try:
            self.parse(template)
        except InvalidConfigError as exc:
            return exc.problems
        return []

    def execute(
        self,
        template: tasks_pb2.TaskTemplate,
        inputs: literals_pb2.LiteralMap,
        context: HostContext,
    ) -> Outcome:
        """Run one attempt: never raises for the task's own failures (an error outcome)."""
        try:
            config = self.parse(template)
        except InvalidConfigError as exc:
            return failure("InvalidTaskConfig", f"task type {self.task_type!r}: {exc}", False)
        leave = enter(context)  # what the attempt prints and logs goes to its log
        try:
            return self._attempt(config, template, inputs, context)
        finally:
            leave()

    def _attempt(
        self,
        config: C,
        template: tasks_pb2.TaskTemplate,
        inputs: literals_pb2.LiteralMap,
        context: HostContext,
    ) -> Outcome:
        try:
            values = self.read_inputs(template, inputs)
        except PlaitError as exc:
            return failure(type(exc).__name__, str(exc), False)
        try:
            result = self.run(config, values, RunContext(context, template))
        except Exception as exc:
            return _failed(exc, context)
        try:
            return self.write_outputs(template, result)
        except Exception as exc:
            return failure(type(exc).__name__, f"output: {exc}", False)


class RunContext:
    """One attempt of a plugin task, as `TaskType.run` sees it.

    Attributes:
        template: The task's template (its interface, configuration, worker target).
        execution: ``project/domain/name`` of the execution.
        node_id: The node's path.
        attempt: 1-based attempt number.
        deadline: Unix time the attempt must end by, or None.
        cancelled: Set when the engine no longer wants the attempt (the execution was
            terminated, or the attempt timed out): stop the work and return.
    """

    def __init__(self, host: HostContext, template: tasks_pb2.TaskTemplate) -> None:
        self._host = host
        self.template = template
        self.execution = host.execution
        self.node_id = host.node_id
        self.attempt = host.attempt
        self.deadline = host.deadline
        self.cancelled = host.cancelled

    def secret(self, name: str) -> str:
        """The value of a secret the task names (``metadata.secrets``).

        Raises:
            SecretError: The task does not name it, or the host does not have it (the attempt
                fails without a retry).
        """
        try:
            return self._host.secret(name)
        except LookupError as exc:
            raise SecretError(str(exc).strip("'\"")) from None

    def output_dir(self) -> Path:
        """A fresh folder for files the attempt produces (what the task returns as `File`)."""
        return self._host.output_dir()

    def remaining(self, default: float) -> float:
        """Seconds until the deadline, at most `default` (at least 0.1)."""
        if self.deadline is None:
            return default
        return max(0.1, min(default, self.deadline - time.time()))


def failure(
    code: str, message: str, recoverable: bool, details: str = ""
) -> errors_pb2.ExecutionError:
    """A user error of an attempt."""
    return errors_pb2.ExecutionError(
        code=code, message=message or code, kind=_USER, recoverable=recoverable, details=details
    )


def _failed(exc: Exception, context: HostContext) -> errors_pb2.ExecutionError:
    details = "".join(traceback.format_exception(exc))
    log = context.log
    if log is not None:
        for line in details.rstrip("\n").split("\n"):
            log(STDERR, line)
    if isinstance(exc, TaskFailedError):
        return failure(exc.code, str(exc), exc.recoverable, details)
    recoverable = not isinstance(exc, NonRetryableError | PlaitTypeError)
    return failure(type(exc).__name__, str(exc), recoverable, details)


__all__ = ["HostContext", "RunContext", "SecretError", "TaskFailedError", "TaskType", "failure"]
