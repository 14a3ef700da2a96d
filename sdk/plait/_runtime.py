"""The worker side of a task: literals in, the function run, literals (or a spec) out.

`execute` is on the engine's hot path for tiny tasks, so everything derived from a template
(the task object, input and output hints) is computed once per (handler, version) and kept.
"""

from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from plaitidl.core.v1 import dynamic_job_pb2, errors_pb2, literals_pb2, tasks_pb2

from plait import _types
from plait._attempt import AttemptLike, enter
from plait._capture import STDERR
from plait._dynamic import build_spec
from plait._errors import NonRetryableError, PlaitError, PlaitTypeError
from plait._loader import resolve_handler
from plait._task import Task

Result = literals_pb2.LiteralMap | dynamic_job_pb2.DynamicJobSpec | errors_pb2.ExecutionError

_USER = errors_pb2.ExecutionError.KIND_USER
_MISSING = object()


@dataclass(frozen=True)
class _Entry:
    task: Task[Any, Any]
    inputs: tuple[tuple[str, Any, Any], ...]  # (name, hint, default or _MISSING)
    outputs: tuple[tuple[str, Any], ...]
    kind: str
    dynamic: bool


_entries: dict[tuple[str, str, str], _Entry] = {}
_lock = threading.Lock()


class _ConversionError(Exception):
    """Inputs or outputs do not fit the interface: retrying cannot help."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _entry(template: tasks_pb2.TaskTemplate) -> _Entry:
    handler = template.worker.handler
    key = (handler, template.id.name, template.id.version)
    entry = _entries.get(key)
    if entry is not None:
        return entry
    task = resolve_handler(handler)
    pi = task.python_interface
    entry = _Entry(
        task=task,
        inputs=tuple((n, h, pi.defaults.get(n, _MISSING)) for n, h in pi.inputs.items()),
        outputs=tuple(pi.outputs.items()),
        kind=pi.output_kind,
        dynamic=task.is_dynamic,
    )
    with _lock:
        _entries[key] = entry
    return entry


def _error(
    exc: BaseException, *, code: str | None = None, recoverable: bool
) -> errors_pb2.ExecutionError:
    return errors_pb2.ExecutionError(
        code=code or type(exc).__name__,
        message=str(exc) or type(exc).__name__,
        kind=_USER,
        recoverable=recoverable,
        details="".join(traceback.format_exception(type(exc), exc, _user_frames(exc))),
    )


def _user_frames(exc: BaseException) -> TracebackType | None:
    """The traceback from the first frame outside this module: the runtime's own frames say
    nothing to the task's author."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return tb or exc.__traceback__


def execute(
    template: tasks_pb2.TaskTemplate,
    inputs: literals_pb2.LiteralMap,
    context: AttemptLike | None = None,
) -> Result:
    """Runs one attempt of a task (or a dynamic's generator) in this process.

    Args:
        template: The task's template; its worker handler names the Python function.
        inputs: The input literals, by input name.
        context: Who the attempt is: the embedded engine's `AttemptContext`, or an
            `plait._attempt.Attempt` a worker builds from its assignment; None when there is
            no attempt (a test). While the task runs, `plait.current_context()` returns it,
            and when it has a `log`, what the task's thread prints to stdout and stderr and
            logs through `logging` goes there, line by line.

    Returns:
        The output `LiteralMap`; for a dynamic, the `DynamicJobSpec` its body describes; or an
        `ExecutionError` (kind USER) when anything fails. Errors are recoverable (retried
        within the task's budget) except `NonRetryableError`, `PlaitTypeError` (misuse that a
        retry repeats), input/output values that do not fit the interface, and a handler
        that cannot be found (code ``"HandlerNotFound"``).
    """
    if not template.HasField("worker"):
        return errors_pb2.ExecutionError(
            code="HandlerNotFound",
            message=f"task '{template.id.name}' has no worker target",
            kind=_USER,
            recoverable=False,
        )
    try:
        entry = _entry(template)
    except Exception as exc:
        return _error(exc, code="HandlerNotFound", recoverable=False)
    if context is None:
        return _guarded(entry, inputs)
    leave = enter(context, entry.dynamic)
    try:
        result = _guarded(entry, inputs)
    finally:
        leave()
    log = context.log
    if log is not None and isinstance(result, errors_pb2.ExecutionError) and result.details:
        # As a process would print it: the traceback is in the attempt's log (stderr).
        for line in result.details.rstrip("\n").split("\n"):
            log(STDERR, line)
    return result


def _guarded(entry: _Entry, inputs: literals_pb2.LiteralMap) -> Result:
    try:
        return _run(entry, inputs)
    except _ConversionError as exc:
        return _error(exc.cause, recoverable=False)
    except (NonRetryableError, PlaitTypeError) as exc:
        return _error(exc, recoverable=False)
    except Exception as exc:
        return _error(exc, recoverable=True)


def _run(entry: _Entry, inputs: literals_pb2.LiteralMap) -> Result:
    literals = inputs.literals
    kwargs: dict[str, Any] = {}
    try:
        for name, hint, default in entry.inputs:
            if name in literals:
                kwargs[name] = _types.to_python(literals[name], hint, var=name)
            elif default is not _MISSING:
                kwargs[name] = default
            else:
                raise PlaitTypeError(f"input '{name}' is missing")
    except PlaitError as exc:
        raise _ConversionError(exc) from exc
    if entry.dynamic:
        return build_spec(entry.task, kwargs)
    result = entry.task.fn(**kwargs)
    try:
        return _outputs(entry, result)
    except Exception as exc:
        raise _ConversionError(exc) from exc


def _outputs(entry: _Entry, result: object) -> literals_pb2.LiteralMap:
    outs = entry.outputs
    if entry.kind == "none":
        return literals_pb2.LiteralMap()
    if entry.kind == "single":
        name, hint = outs[0]
        return literals_pb2.LiteralMap(literals={name: _types.to_literal(result, hint, var=name)})
    if not isinstance(result, tuple) or len(result) != len(outs):
        got = len(result) if isinstance(result, tuple) else 1
        raise PlaitTypeError(f"returned {got} value(s) but declares {len(outs)} outputs")
    return literals_pb2.LiteralMap(
        literals={n: _types.to_literal(v, h, var=n) for (n, h), v in zip(outs, result, strict=True)}
    )
