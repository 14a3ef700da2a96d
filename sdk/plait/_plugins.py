"""Task type plugins in the Python worker: discovery, secrets, and one attempt's context.

``plait worker`` loads the plugins installed in its environment (entry points of the group
``plait.task_types``) when it starts, declares their types in its hello next to
``python-task`` and ``dynamic``, and runs their tasks with `PluginHost.run`. Secrets follow
the engine's rules (``plait_engine.secrets``, a module that imports nothing else of it).

Secrets: the files of ``--secrets-dir`` (one per secret, named like it), then the environment
variable the task's `SecretRequest.env_var` names (``PLAIT_SECRET_<NAME>`` by default). Every
value handed to an attempt is replaced with ``***`` in what it logs and in its error.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from plait_engine.secrets import Scrubber, SecretProvider
from plaitidl.core.v1 import errors_pb2, identifier_pb2, literals_pb2, tasks_pb2

from plait import _runtime
from plait._attempt import Attempt
from plait._constants import TASK_TYPE_DYNAMIC, TASK_TYPE_PYTHON

log = logging.getLogger("plait.worker")

ENTRY_POINT_GROUP = "plait.task_types"


def discover(group: str = ENTRY_POINT_GROUP) -> tuple[dict[str, Any], dict[str, str]]:
    """The plugins installed distributions declare, and why others did not load."""
    plugins: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for ep in entry_points(group=group):
        if ep.name in plugins:
            continue
        try:
            obj = ep.load()
            plugin = obj() if isinstance(obj, type) else obj
        except Exception as exc:
            problems[ep.name] = f"{ep.value}: {type(exc).__name__}: {exc}"
            continue
        if ep.name in (TASK_TYPE_PYTHON, TASK_TYPE_DYNAMIC, ""):
            problems[ep.name] = f"{ep.value}: task type {ep.name!r} is the Python SDK's own"
            continue
        if getattr(plugin, "task_type", None) != ep.name or not callable(
            getattr(plugin, "execute", None)
        ):
            problems[ep.name] = f"{ep.value}: not a plugin of task type {ep.name!r}"
            continue
        plugins[ep.name] = plugin
    return plugins, problems


@dataclass
class _Context:
    """One attempt of a plugin task, as `plait.ext.RunContext` describes it."""

    execution: str
    node_id: str
    attempt: int
    task: identifier_pb2.Identifier
    log: Callable[[int, str], None] | None
    deadline: float | None
    cancelled: threading.Event
    _secret: Callable[[str], str] = field(repr=False)
    _folder: Callable[[], Path] = field(repr=False)

    def secret(self, name: str) -> str:
        return self._secret(name)

    def output_dir(self) -> Path:
        return self._folder()


class PluginHost:
    """Runs a worker's attempts: plugin types with their plugin, the rest with the runtime.

    Args:
        plugins: Plugins by task type.
        secrets: Where secret values come from.
        files: Folder under which attempts write their files (a temporary one by default).
    """

    def __init__(
        self, plugins: Mapping[str, Any], secrets: SecretProvider, files: Path | None = None
    ) -> None:
        self.plugins = dict(plugins)
        self._secrets = secrets
        self._files = files
        self._cancel: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, secrets_dir: Path | None = None) -> PluginHost:
        """The installed plugins (those that fail to load are logged and left out)."""
        plugins, problems = discover()
        for name, why in sorted(problems.items()):
            log.warning("task type plugin %r is not available: %s", name, why)
        return cls(plugins, SecretProvider(secrets_dir))

    @property
    def task_types(self) -> list[str]:
        """The task types a Python worker with these plugins runs."""
        return [TASK_TYPE_PYTHON, TASK_TYPE_DYNAMIC, *sorted(self.plugins)]

    def cancel(self, assignment_id: str) -> None:
        """Tell a running plugin attempt to stop (Python tasks run to their end)."""
        with self._lock:
            event = self._cancel.get(assignment_id)
        if event is not None:
            event.set()

    def run(
        self,
        assignment_id: str,
        template: tasks_pb2.TaskTemplate,
        inputs: literals_pb2.LiteralMap,
        attempt: Attempt,
        deadline: float | None = None,
    ) -> _runtime.Result:
        """One attempt, by its task's type."""
        plugin = self.plugins.get(template.type)
        if plugin is None:
            return _runtime.execute(template, inputs, attempt)
        event = threading.Event()
        with self._lock:
            self._cancel[assignment_id] = event
        scrub = Scrubber()
        sink = attempt.log
        try:
            context = _Context(
                attempt.execution, attempt.node_id, attempt.attempt, attempt.task,
                (lambda s, t: sink(s, scrub(t))) if sink is not None else None,
                deadline, event, self._secret_fn(template, scrub),
                lambda: self._folder(assignment_id),
            )  # fmt: skip
            outcome: _runtime.Result = plugin.execute(template, inputs, context)
        finally:
            with self._lock:
                self._cancel.pop(assignment_id, None)
        if isinstance(outcome, errors_pb2.ExecutionError):
            outcome.message = scrub(outcome.message)
            outcome.details = scrub(outcome.details)
        return outcome

    def _secret_fn(self, template: tasks_pb2.TaskTemplate, scrub: Scrubber) -> Callable[[str], str]:
        requests = {s.name: s for s in template.metadata.secrets}

        def secret(name: str) -> str:
            request = requests.get(name)
            if request is None:
                raise LookupError(
                    f"task {template.id.name!r} does not name secret {name!r} in "
                    f"metadata.secrets (it names: {', '.join(sorted(requests)) or 'none'})"
                )
            value = self._secrets.get(request)
            scrub.add(value)
            return value

        return secret

    def _folder(self, assignment_id: str) -> Path:
        base = self._files or Path(tempfile.gettempdir()) / f"plait-worker-{os.getpid()}"
        path = base / assignment_id
        path.mkdir(parents=True, exist_ok=True)
        return path


__all__ = ["ENTRY_POINT_GROUP", "PluginHost", "SecretProvider", "discover"]
