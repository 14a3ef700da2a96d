"""Executors run task attempts: the contract the scheduler hands dispatches to.

An executor receives `Dispatch`es after the scheduler has committed them and reports exactly one
`Outcome` per dispatch through the callback it was started with. Results may arrive late or
twice; the scheduler fences them by assignment id and attempt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from plaitidl.core.v1 import dynamic_job_pb2, errors_pb2, identifier_pb2, literals_pb2, tasks_pb2

Outcome = literals_pb2.LiteralMap | dynamic_job_pb2.DynamicJobSpec | errors_pb2.ExecutionError


@dataclass
class Dispatch:
    """One attempt of one task node, ready to run.

    Attributes:
        assignment_id: Unique id of the attempt (results carry it back).
        attempt: 1-based attempt number.
        task: The task template.
        task_key: ``project/domain/name/version`` of the task.
        inputs: The resolved inputs.
        deadline: Unix time the attempt must end by, None for no limit.
        execution: ``project/domain/name`` of the execution.
        node_id: The node's path in the execution.
        blob_parts: Where the attempt may write files (process targets), as blob key parts.
    """

    assignment_id: str
    attempt: int
    task: tasks_pb2.TaskTemplate
    task_key: str
    inputs: literals_pb2.LiteralMap
    deadline: float | None
    execution: str
    node_id: str
    blob_parts: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Result:
    """The answer to one dispatch.

    Attributes:
        assignment_id: The dispatch's id.
        attempt: The dispatch's attempt.
        outcome: Outputs, a dynamic spec, or an error.
        worker_id: Who ran it.
        checked: Whether the executor already checked the outputs against the task's
            interface (the in-process SDK runner converts them from the declared hints).
        started_at: Unix time the attempt started on its worker; 0 when unknown.
    """

    assignment_id: str
    attempt: int
    outcome: Outcome
    worker_id: str = ""
    checked: bool = False
    started_at: float = 0.0


ResultSink = Callable[[Sequence[Result]], None]
# (assignment_id, reason): why a dispatched attempt waits, "" once it no longer waits for it.
WaitingFn = Callable[[str, str], None]
# (stream, text): a `LogStream` value and whole lines of output.
LogFn = Callable[[int, str], None]


@dataclass(frozen=True)
class AttemptContext:
    """Who an attempt is, for the code that runs it (and its logs).

    Attributes:
        execution: ``project/domain/name`` of the execution.
        node_id: The node's path.
        attempt: 1-based attempt number.
        task: The task's identifier.
        log: Records captured output of the attempt (thread-safe).
    """

    execution: str
    node_id: str
    attempt: int
    task: identifier_pb2.Identifier
    log: LogFn


TaskRunner = Callable[[tasks_pb2.TaskTemplate, literals_pb2.LiteralMap, AttemptContext], Outcome]


def system_error(code: str, message: str) -> errors_pb2.ExecutionError:
    """A platform failure, retried on the system budget."""
    return errors_pb2.ExecutionError(
        code=code, message=message, kind=errors_pb2.ExecutionError.KIND_SYSTEM, recoverable=True
    )


class Executor(Protocol):
    """What the scheduler needs from an executor."""

    def start(self, sink: ResultSink, loop: asyncio.AbstractEventLoop) -> None:
        """Begin; results go to `sink`, called on the engine's loop thread."""

    def submit(self, dispatches: Sequence[Dispatch]) -> None:
        """Run the attempts; called on the loop thread after the dispatch was committed."""

    def cancel(self, assignment_ids: Sequence[str]) -> None:
        """Stop attempts the engine no longer wants (best effort)."""

    async def stop(self) -> None:
        """Stop accepting work and release resources."""

    # Optional (see `ReportsWaiting`): executors that can tell why an attempt waits also have
    # ``set_waiting_callback(fn: WaitingFn) -> None``.


@runtime_checkable
class ReportsWaiting(Protocol):
    """An executor that tells why a submitted attempt waits (e.g. no connected worker serves
    its task version): the scheduler journals the reason as the node's QUEUED detail.

    Check with ``isinstance(executor, ReportsWaiting)``; the method is optional in `Executor`.
    """

    def set_waiting_callback(self, fn: WaitingFn) -> None:
        """Call `fn(assignment_id, reason)` on the loop thread when an attempt starts waiting
        for a reason, and `fn(assignment_id, "")` when it stops (it can be dispatched now)."""


__all__ = [
    "AttemptContext",
    "Dispatch",
    "LogFn",
    "Executor",
    "Outcome",
    "ReportsWaiting",
    "Result",
    "ResultSink",
    "TaskRunner",
    "WaitingFn",
    "system_error",
]
