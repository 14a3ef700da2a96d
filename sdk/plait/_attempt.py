"""Who the running task attempt is: `current_context()` and what a task runner hands over.

A task runner (the embedded engine's in-process executor, or a worker) calls
`plait._runtime.execute(template, inputs, attempt)` with an `Attempt`-shaped object: the
embedded engine passes its `AttemptContext`, a worker builds an `Attempt` from its assignment.
While the task runs, that object is in a `ContextVar` of the task's thread, and
`current_context()` reads it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

from plaitidl.core.v1 import identifier_pb2

from plait import _capture
from plait._errors import PlaitError


class AttemptLike(Protocol):
    """What `_runtime.execute` reads from its `context` argument."""

    @property
    def execution(self) -> str: ...

    @property
    def node_id(self) -> str: ...

    @property
    def attempt(self) -> int: ...

    @property
    def task(self) -> identifier_pb2.Identifier: ...

    @property
    def log(self) -> Callable[[int, str], None] | None: ...


@dataclass(frozen=True)
class Attempt:
    """One attempt of a task, as a worker describes it to the runtime.

    The same fields as the engine's `AttemptContext`, so that either can be passed.

    Attributes:
        execution: ``project/domain/name`` of the execution.
        node_id: The node's path (``n0/n3/n1``).
        attempt: 1-based attempt number.
        task: The task's identifier.
        log: Receives the attempt's output, ``(LogStream value, line)``; None: not captured.
    """

    execution: str
    node_id: str
    attempt: int
    task: identifier_pb2.Identifier
    log: Callable[[int, str], None] | None = None

    @classmethod
    def of(
        cls, ids: identifier_pb2.TaskExecutionIdentifier, log: Callable[[int, str], None] | None
    ) -> Attempt:
        """The attempt an `Assignment.task_execution_id` names."""
        e = ids.node_execution_id.execution_id
        return cls(
            f"{e.project}/{e.domain}/{e.name}", ids.node_execution_id.node_id, ids.attempt,
            ids.task_id, log,
        )  # fmt: skip


@dataclass(frozen=True)
class TaskContext:
    """Where a running task is: returned by `plait.current_context()`.

    Attributes:
        execution: The execution's name.
        project: The execution's project.
        domain: The execution's domain.
        node_id: The node's path in the execution (``n0/n3/n1``; ``n2/7`` for a map element).
        attempt: 1-based attempt number (2 on the first retry).
        task: The task's identifier (project, domain, name, version).
    """

    execution: str
    project: str
    domain: str
    node_id: str
    attempt: int
    task: identifier_pb2.Identifier

    @property
    def logger(self) -> logging.Logger:
        """A logger (level INFO) whose lines land in this attempt's log, on stream LOGGER.

        ``plait logs EXECUTION NODE`` shows them; they do not reach the worker's own log.
        """
        return _capture.task_logger()


_current: ContextVar[AttemptLike | None] = ContextVar("plait_attempt", default=None)


def current_context() -> TaskContext:
    """The context of the task attempt running in this thread.

    Works in a task (or a dynamic's body) run by ``plait run``, a workflow called from Python,
    or a worker. Threads the task starts itself do not inherit it.

    Returns:
        The execution, node, attempt and task, and a logger writing to the attempt's log.

    Raises:
        PlaitError: No task attempt runs in this thread (e.g. a task called as a plain
            function, or code at import time).
    """
    attempt = _current.get()
    if attempt is None:
        raise PlaitError(
            "current_context() is only available while a task runs on an engine (plait run, "
            "a workflow called from Python, or a worker); here no task attempt is running"
        )
    project, domain, name = ["", "", *attempt.execution.split("/")][-3:]
    return TaskContext(
        execution=name,
        project=project,
        domain=domain,
        node_id=attempt.node_id,
        attempt=attempt.attempt,
        task=attempt.task,
    )


# What runs now in this process, by thread: (task's short name, whether it is a dynamic's
# generator). The embedded engine's progress bar shows it.
_active: dict[int, tuple[str, bool]] = {}


def active() -> list[tuple[str, bool]]:
    """(task name, is a dynamic) of every attempt running in this process now."""
    return list(_active.values())


def enter(attempt: AttemptLike, dynamic: bool = False) -> Callable[[], None]:
    """Make `attempt` current in this thread (and capture its output when it has a `log`);
    returns the function that undoes it."""
    token = _current.set(attempt)
    thread = threading.get_ident()
    _active[thread] = (attempt.task.name.rsplit(".", 1)[-1], dynamic)
    log = attempt.log
    handle = _capture.start(log) if log is not None else None

    def leave() -> None:
        if handle is not None:
            _capture.stop(handle)
        _active.pop(thread, None)
        _current.reset(token)

    return leave


__all__ = ["Attempt", "AttemptLike", "TaskContext", "active", "current_context", "enter"]
