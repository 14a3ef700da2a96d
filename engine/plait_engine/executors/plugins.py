"""Runs tasks whose type an installed plugin serves, inside the engine (see `plait_engine.plugins`).

Each attempt runs `plugin.execute(template, inputs, context)` on a thread of its own pool. The
`PluginContext` it gets hands out the secrets the task names (from the engine's
`SecretProvider`), a folder for files the attempt produces, and a cancellation event that
`cancel` (a terminated execution, a deadline) sets. What the attempt logs and the error it
returns are scrubbed of the secret values it was given. The folder is in the object store's
folder when the store is local, and a staging folder uploaded when the attempt ends when it is
remote (S3, GCS: see `AttemptFiles`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from plaitidl.core.v1 import errors_pb2, identifier_pb2

from plait_engine.blob import ObjectStore
from plait_engine.executors import Dispatch, LogFn, Outcome, Result, ResultSink, system_error
from plait_engine.executors.attempt_files import AttemptDir, AttemptFiles
from plait_engine.executors.logs import LogWriter
from plait_engine.plugins import PYTHON_TYPES, Plugins
from plait_engine.secrets import Scrubber, SecretNotFoundError, SecretProvider

log = logging.getLogger("plait.plugins")
WORKER_ID = "engine-plugin"


class MissingSecretError(LookupError):
    """A task asked for a secret it does not name, or that no provider has."""


@dataclass
class PluginContext:
    """What a plugin's `execute` gets for one attempt.

    Attributes:
        execution: ``project/domain/name`` of the execution.
        node_id: The node's path.
        attempt: 1-based attempt number.
        task: The task's identifier.
        log: Records a line of the attempt's output: ``(LogStream value, text)``; scrubbed.
        deadline: Unix time the attempt must end by, None for none.
        cancelled: Set when the engine no longer wants the attempt (terminated, timed out):
            stop the work (e.g. cancel it on the remote system) and return.
    """

    execution: str
    node_id: str
    attempt: int
    task: identifier_pb2.Identifier
    log: LogFn
    deadline: float | None
    cancelled: threading.Event
    _secret: Callable[[str], str] = field(repr=False)
    _folder: Callable[[], Path] = field(repr=False)

    def secret(self, name: str) -> str:
        """The value of a secret the task names in ``metadata.secrets``.

        Raises:
            MissingSecretError: The task does not name it, or no provider has it.
        """
        return self._secret(name)

    def output_dir(self) -> Path:
        """A fresh folder for files this attempt produces (kept with the execution)."""
        return self._folder()


def _safe_parts(node_id: str) -> list[str]:
    # As the scheduler's journal names a node's blobs (array instances hold ':').
    return [p.replace(":", "_") or "_" for p in node_id.split("/")]


class PluginExecutor:
    """Runs the attempts of plugin task types on a thread pool.

    Args:
        plugins: The installed plugins (an attempt of a type without one fails, not retried).
        secrets: Where secret values come from.
        blobs: Where attempts' files are kept.
        logs: Where attempts' output goes.
        threads: Attempts that run at once.
        staging: Where staging folders go when the store is remote (default: the system's
            temporary folder).
    """

    def __init__(
        self,
        plugins: Plugins,
        secrets: SecretProvider,
        blobs: ObjectStore,
        logs: LogWriter | None = None,
        threads: int = 16,
        staging: Path | None = None,
    ) -> None:
        self._plugins = plugins
        self._secrets = secrets
        self._files = AttemptFiles(blobs, staging)
        self._logs = logs
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="plait-plugin"
        )
        self._sink: ResultSink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def start(self, sink: ResultSink, loop: asyncio.AbstractEventLoop) -> None:
        """Begin; results go to `sink` on `loop`."""
        self._sink = sink
        self._loop = loop

    def submit(self, dispatches: Sequence[Dispatch]) -> None:
        """Run each attempt on a thread of the pool."""
        for d in dispatches:
            event = threading.Event()
            with self._lock:
                self._running[d.assignment_id] = event
            self._pool.submit(self._run, d, event)

    def cancel(self, assignment_ids: Sequence[str]) -> None:
        """Tell running attempts to stop (their plugin decides how: e.g. ``ray.cancel``)."""
        with self._lock:
            events = [self._running.get(a) for a in assignment_ids]
        for event in events:
            if event is not None:
                event.set()

    async def stop(self) -> None:
        """Cancel what runs and stop taking work."""
        with self._lock:
            events = list(self._running.values())
        for event in events:
            event.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, d: Dispatch, cancelled: threading.Event) -> None:
        started = time.time()
        scrub = Scrubber()
        try:
            if cancelled.is_set():
                return
            outcome = self._attempt(d, cancelled, scrub)
        except BaseException as exc:  # the plugin itself broke: a platform failure
            log.exception("plugin %r failed on node %s", d.task.type, d.node_id)
            outcome = system_error("PluginError", f"{type(exc).__name__}: {scrub(str(exc))}")
        finally:
            with self._lock:
                self._running.pop(d.assignment_id, None)
            if self._logs is not None:
                self._logs.ended(d.assignment_id)
        if isinstance(outcome, errors_pb2.ExecutionError):
            scrub.error(outcome)
        self._hand_over(Result(d.assignment_id, d.attempt, outcome, WORKER_ID, False, started))

    def _attempt(self, d: Dispatch, cancelled: threading.Event, scrub: Scrubber) -> Outcome:
        plugin = self._plugins.get(d.task.type)
        if plugin is None:
            return _unknown_type(d)
        opened: list[AttemptDir] = []

        def folder() -> Path:
            if not opened:
                opened.append(self._files.open(_folder_parts(d), d.attempt))
            return opened[0].base

        context = PluginContext(
            execution=d.execution,
            node_id=d.node_id,
            attempt=d.attempt,
            task=d.task.id,
            log=self._log_fn(d.assignment_id, scrub),
            deadline=d.deadline,
            cancelled=cancelled,
            _secret=self._secret_fn(d, scrub),
            _folder=folder,
        )
        try:
            outcome = plugin.execute(d.task, d.inputs, context)
        except BaseException:
            for att in opened:
                self._files.discard(att)
            raise
        # Files a remote store keeps are uploaded, and the outputs name them there.
        return self._files.finish(opened[0], outcome) if opened else outcome

    def _log_fn(self, assignment_id: str, scrub: Scrubber) -> LogFn:
        logs = self._logs

        def write(stream: int, text: str) -> None:
            if logs is not None:
                logs.write(assignment_id, stream, scrub(text))

        return write

    def _secret_fn(self, d: Dispatch, scrub: Scrubber) -> Callable[[str], str]:
        requests = {s.name: s for s in d.task.metadata.secrets}

        def secret(name: str) -> str:
            request = requests.get(name)
            if request is None:
                raise MissingSecretError(
                    f"task {d.task.id.name!r} does not name secret {name!r} in "
                    f"metadata.secrets (it names: {', '.join(sorted(requests)) or 'none'})"
                )
            try:
                value = self._secrets.get(request)
            except SecretNotFoundError as exc:
                raise MissingSecretError(f"{exc} on the engine") from None
            scrub.add(value)
            return value

        return secret

    def _hand_over(self, result: Result) -> None:
        if self._loop is not None and self._sink is not None:
            try:
                self._loop.call_soon_threadsafe(self._sink, [result])
            except RuntimeError:  # the loop closed during shutdown
                pass


def _folder_parts(d: Dispatch) -> tuple[str, ...]:
    parts = d.blob_parts
    if not parts:
        project, _, rest = d.execution.partition("/")
        domain, _, name = rest.partition("/")
        parts = (
            "executions", project, domain, name, *_safe_parts(d.node_id),
            f"attempt-{d.attempt}",
        )  # fmt: skip
    return (*parts, "files")


def _unknown_type(d: Dispatch) -> errors_pb2.ExecutionError:
    return errors_pb2.ExecutionError(
        code="UnknownTaskType",
        message=(
            f"no plugin for task type {d.task.type!r} is installed in this engine (entry points "
            "of group plait.task_types), so it cannot run node "
            f"{d.node_id!r}: install one, or run it on a server with a worker that serves "
            "that type"
        ),
        kind=errors_pb2.ExecutionError.KIND_USER,
        recoverable=False,
        node_id=d.node_id,
    )


def runs_in_engine(plugins: Plugins, task_type: str, *, embedded: bool) -> bool:
    """Whether a worker-target task of `task_type` runs on the `PluginExecutor`: its plugin runs
    in the engine, or (embedded, where there are no workers) it is not a Python SDK type, so it
    fails with `UnknownTaskType` rather than as a handler that is not found."""
    if task_type in plugins.run_here:
        return True
    return embedded and task_type not in PYTHON_TYPES


__all__ = [
    "MissingSecretError",
    "PluginContext",
    "PluginExecutor",
    "runs_in_engine",
]
