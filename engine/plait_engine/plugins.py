"""Task types served by plugins: the contract, discovery from entry points, checks at the door.

A task type is a name (`TaskTemplate.type`), a typed configuration carried in
`TaskTemplate.custom`, and an executor. A *plugin* is the Python side of one: an object with

- ``task_type``: the type it serves;
- ``validate(template) -> [(field, message), ...]``: what is wrong with a template's
  configuration, field paths relative to the task (``custom.url``);
- ``execute(template, inputs, context) -> LiteralMap | DynamicJobSpec | ExecutionError``: one
  attempt, blocking, on a thread of the executor (`context` is a `PluginContext`).

Installed distributions declare plugins as entry points of the group ``plait.task_types``
(the entry point's name is the task type; it points at the plugin class or object). The engine
loads them when it is built, never on import; plait's own ``ray``, ``sql`` and ``http`` plugins
are entry points of the ``plait`` distribution (``plait.ext``). The engine never imports the
SDK: it only calls what the entry points name.

The engine checks the `custom` of every task whose type has an installed plugin at registration
(`RegistryService.Register` and `ValidateTemplates`). A type no installed plugin knows (one that
only workers serve, in any language) is accepted as is: its workers check it when they run it.
Which plugins *run* inside the engine is the operator's choice (`EngineConfig.plugins`); the
embedded engine runs every installed one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

from plaitidl.core.v1 import literals_pb2, tasks_pb2

from plait_engine.config import ConfigError
from plait_engine.executors import Outcome

log = logging.getLogger("plait.plugins")

ENTRY_POINT_GROUP = "plait.task_types"
# Types the in-process runner of the embedded engine (the Python SDK) runs itself.
PYTHON_TYPES = frozenset({"", "python-task", "dynamic"})
ALL = "*"


@runtime_checkable
class TaskPlugin(Protocol):
    """What the engine (and the Python worker) needs from a task type's plugin."""

    task_type: str

    def validate(self, template: tasks_pb2.TaskTemplate) -> Sequence[tuple[str, str]]:
        """Problems of the template's configuration: ``(field path, message)`` pairs."""

    def execute(
        self, template: tasks_pb2.TaskTemplate, inputs: literals_pb2.LiteralMap, context: Any
    ) -> Outcome:
        """Run one attempt; never raises for the task's own failures (an error outcome)."""


class PluginConfigError(ConfigError):
    """The operator asked for a plugin that is not installed or does not load."""


@dataclass(frozen=True)
class Discovered:
    """What discovery found: the plugins that loaded, and why the others did not."""

    plugins: dict[str, TaskPlugin]
    problems: dict[str, str]


def discover(group: str = ENTRY_POINT_GROUP) -> Discovered:
    """Load every plugin the installed distributions declare in `group`.

    A plugin that fails to load (a missing dependency, a broken module) is reported in
    ``problems`` by its type, and left out.
    """
    plugins: dict[str, TaskPlugin] = {}
    problems: dict[str, str] = {}
    for ep in entry_points(group=group):
        if ep.name in plugins:
            continue  # the first distribution on the path wins, as for imports
        try:
            obj = ep.load()
            plugin = obj() if isinstance(obj, type) else obj
        except Exception as exc:
            problems[ep.name] = f"{ep.value}: {type(exc).__name__}: {exc}"
            continue
        problem = plugin_problem(ep.name, plugin)
        if problem:
            problems[ep.name] = f"{ep.value}: {problem}"
            continue
        plugins[ep.name] = plugin
    return Discovered(plugins, problems)


def _discover_logged() -> dict[str, TaskPlugin]:
    found = discover()
    for name, why in sorted(found.problems.items()):
        log.warning("task type plugin %r is not available: %s", name, why)
    return found.plugins


def plugin_problem(name: str, plugin: object) -> str | None:
    """Why `plugin` cannot serve task type `name`, or None."""
    if name in PYTHON_TYPES:
        return f"task type {name!r} is the Python SDK's own"
    if not isinstance(plugin, TaskPlugin):
        return "not a task type plugin (needs task_type, validate and execute)"
    if plugin.task_type != name:
        return f"serves task type {plugin.task_type!r}, but its entry point is named {name!r}"
    return None


class Plugins:
    """The plugins an engine knows (it checks their tasks' configuration at registration) and
    those it runs itself.

    Args:
        known: Plugins by task type, or a function that discovers them when first needed.
        run_here: The task types the engine runs itself (each must be known).
    """

    def __init__(
        self,
        known: Mapping[str, TaskPlugin] | Callable[[], Mapping[str, TaskPlugin]],
        run_here: Collection[str] = (),
    ) -> None:
        self._loader = known if callable(known) else None
        self._known: dict[str, TaskPlugin] | None = None if callable(known) else dict(known)
        self._lock = threading.Lock()
        if self._known is not None:
            unknown = sorted(set(run_here) - set(self._known))
            if unknown:
                raise PluginConfigError(f"no plugin for task type(s) {', '.join(unknown)}")
        self.run_here = frozenset(run_here)

    def _plugins(self) -> dict[str, TaskPlugin]:
        known = self._known
        if known is None:
            with self._lock:
                if self._known is None:
                    assert self._loader is not None
                    self._known = dict(self._loader())
                known = self._known
        return known

    @classmethod
    def load(cls, enabled: Iterable[str], *, embedded: bool) -> Plugins:
        """The installed plugins; `enabled` (``*`` for all) run in the engine, every one in
        an embedded engine.

        Raises:
            PluginConfigError: `enabled` names a plugin that is not installed or does not load.
        """
        if embedded:
            # Discovered when a task of another type than Python's first needs one: most
            # embedded runs never pay for loading plugins.
            return cls(_discover_logged)
        found = discover()
        for name, why in sorted(found.problems.items()):
            log.warning("task type plugin %r is not available: %s", name, why)
        wanted = set(enabled)
        if ALL in wanted:
            wanted = set(found.plugins)
        missing = sorted(wanted - set(found.plugins))
        if missing:
            details = "; ".join(f"{m}: {found.problems.get(m, 'not installed')}" for m in missing)
            raise PluginConfigError(
                f"plugins: cannot run task type(s) {', '.join(missing)} in the engine ({details}); "
                f"installed: {', '.join(sorted(found.plugins)) or 'none'}"
            )
        if found.plugins:
            log.info(
                "task type plugins: %s installed, %s run in the engine",
                ", ".join(sorted(found.plugins)), ", ".join(sorted(wanted)) or "none",
            )  # fmt: skip
        return cls(found.plugins, wanted)

    def get(self, task_type: str) -> TaskPlugin | None:
        """The plugin of a task type, or None."""
        if task_type in PYTHON_TYPES:
            return None
        return self._plugins().get(task_type)

    @property
    def known(self) -> frozenset[str]:
        """The task types with an installed plugin."""
        return frozenset(self._plugins())

    def problems(self, task: tasks_pb2.TaskTemplate) -> list[tuple[str, str]]:
        """What the task type's plugin finds wrong with the task (nothing for other types)."""
        plugin = self.get(task.type)
        if plugin is None:
            return []
        try:
            found = list(plugin.validate(task))
        except Exception as exc:  # a plugin bug must not take registration down with it
            log.exception("plugin %r failed to check task %s", task.type, task.id.name)
            return [("custom", f"the {task.type!r} plugin could not check it: {exc}")]
        return [(str(f), str(m)) for f, m in found]


__all__ = [
    "ALL",
    "ENTRY_POINT_GROUP",
    "PYTHON_TYPES",
    "Discovered",
    "PluginConfigError",
    "Plugins",
    "TaskPlugin",
    "discover",
    "plugin_problem",
]
