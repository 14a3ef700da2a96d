"""Ray tasks: run a Python function on a Ray cluster, or fan a list out as Ray tasks.

```python
from plait.ext.ray import ray_map, ray_task

@ray_task(address="ray-head:6379", num_cpus=2)
def train(shard: list[float]) -> float: ...

square_all = ray_map(square)  # square: a @task or @ray_task; one Ray task per element

@workflow
def wf(xs: list[int]) -> list[int]:
    return square_all(x=xs)
```

A ``ray`` task is a plait task like any other (typed inputs and outputs, retries, caching,
callable in workflows and dynamics); where it runs (the embedded engine, or a Python worker:
``pip install 'plait[ray]'``) converts its inputs, submits the function to Ray, waits for the
result and converts it back. The cluster is ``address`` in the task's configuration, else
``$RAY_ADDRESS`` where it runs (else Ray starts a local instance). The function's module must
be importable on the cluster (plait adds the runner's ``sys.path`` folders to the Ray job's
``PYTHONPATH``, which suffices on one machine; use your image or Ray's ``runtime_env``
elsewhere).

- Retries: ``max_retries`` is Ray's own budget for a task whose Ray worker died (and, with
  ``retry_exceptions``, for exceptions), within one plait attempt; the task's ``retries`` then
  retry the whole attempt (a new Ray submission).
- Cancellation: a terminated execution or a timed-out attempt cancels its Ray tasks
  (``ray.cancel(force=True)``).
- Errors: an exception in the function fails the attempt as an ordinary task's would (its class
  name as the code; `plait.NonRetryableError` is not retried); Ray's own failures (a lost node)
  are recoverable.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, overload

from plaitidl.core.v1 import literals_pb2, tasks_pb2

from plait import _types
from plait._errors import NonRetryableError, PlaitTypeError, PlaitValueError
from plait._loader import resolve_handler
from plait._process import _signature_function
from plait._task import Task, TaskOptions, Timeout
from plait.ext._config import Problem
from plait.ext._task import check_template, with_plugin
from plait.ext._tasktype import RunContext, TaskFailedError, TaskType

_POLL = 0.1


@dataclasses.dataclass
class RayConfig:
    """The configuration of a ``ray`` task (see the module).

    Attributes:
        address: The cluster (``host:port`` or ``ray://host:10001``); empty: ``$RAY_ADDRESS``.
        num_cpus: CPUs each Ray task reserves.
        num_gpus: GPUs each Ray task reserves.
        max_retries: Ray's retries of a Ray task whose worker died.
        retry_exceptions: Whether Ray also retries exceptions (within `max_retries`).
        map_over: For a map: the inputs that are lists, zipped, one Ray task per element.
        concurrency: For a map: Ray tasks in flight at once (0: all).
    """

    address: str = ""
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_retries: int = 0
    retry_exceptions: bool = False
    map_over: list[str] = dataclasses.field(default_factory=list)
    concurrency: int = 0


def _call(handler: str, kwargs: dict[str, Any]) -> Any:
    """Runs on a Ray worker: the plait task's function, by its handler."""
    return resolve_handler(handler).fn(**kwargs)


class _Connection:
    """This process's one connection to Ray (Ray allows one per process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._address: str | None = None

    def get(self, address: str) -> Any:
        try:
            import ray
        except ImportError as exc:
            raise NonRetryableError(
                f"ray tasks need the ray extra (pip install 'plait[ray]'): {exc}"
            ) from None
        wanted = address or os.environ.get("RAY_ADDRESS", "")
        with self._lock:
            if self._address is not None and ray.is_initialized():
                if wanted and wanted != self._address:
                    raise NonRetryableError(
                        f"this process is connected to Ray at {self._address!r}; a task wants "
                        f"{wanted!r} (one Ray cluster per worker process)"
                    )
                return ray
            # The runner's own folders, so that Ray workers import the tasks' modules.
            prefixes = (sys.prefix, sys.base_prefix)
            paths = [os.path.abspath(p or ".") for p in sys.path]
            code = [
                p for p in dict.fromkeys(paths) if os.path.isdir(p) and not p.startswith(prefixes)
            ]
            ray.init(
                address=wanted or None,
                runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(code)}},
                log_to_driver=False,
                logging_level=logging.WARNING,
                configure_logging=False,
            )
            self._address = wanted or "local"
            return ray


_connection = _Connection()


class Ray(TaskType[RayConfig]):
    """The ``ray`` task type (see the module)."""

    name = "ray"
    config = RayConfig

    def check(self, config: RayConfig, template: tasks_pb2.TaskTemplate) -> list[Problem]:
        """Resources are not negative; a map's inputs exist and are lists; a handler is set."""
        out: list[Problem] = []
        if config.num_cpus < 0 or config.num_gpus < 0:
            out.append(("custom.num_cpus", "resources must not be negative"))
        if config.max_retries < -1:
            out.append(("custom.max_retries", "must be -1 (forever) or more"))
        if config.concurrency < 0:
            out.append(("custom.concurrency", "must be 0 (no limit) or more"))
        inputs = {v.name: v.type for v in template.interface.inputs.variables}
        for i, name in enumerate(config.map_over):
            if name not in inputs:
                out.append((f"custom.map_over[{i}]", f"{name!r} is not an input"))
            elif not inputs[name].HasField("collection_type"):
                out.append((f"custom.map_over[{i}]", f"input {name!r} is not a list"))
        if ":" not in template.worker.handler:
            out.append(("worker.handler", "a ray task names its Python function (module:name)"))
        return out

    def read_inputs(
        self, template: tasks_pb2.TaskTemplate, inputs: literals_pb2.LiteralMap
    ) -> dict[str, Any]:
        """The inputs by the function's own type hints (lists for a map's inputs)."""
        over = set(self.parse(template).map_over)
        pi = resolve_handler(template.worker.handler).python_interface
        out: dict[str, Any] = {}
        for name, hint in pi.inputs.items():
            if name in inputs.literals:
                h = list[hint] if name in over else hint  # type: ignore[valid-type]
                out[name] = _types.to_python(inputs.literals[name], h, var=name)
            elif name in pi.defaults:
                out[name] = pi.defaults[name]
        return out

    def write_outputs(
        self, template: tasks_pb2.TaskTemplate, result: Any
    ) -> literals_pb2.LiteralMap:
        """The result by the function's own hints (a list of them for a map)."""
        config = self.parse(template)
        pi = resolve_handler(template.worker.handler).python_interface
        out = literals_pb2.LiteralMap()
        outs = list(pi.outputs.items())
        if config.map_over:
            name, hint = outs[0]
            out.literals[name].CopyFrom(_types.to_literal(result, list[hint], var=name))  # type: ignore[valid-type]
            return out
        if pi.output_kind == "none":
            return out
        values = [result] if pi.output_kind == "single" else list(result)
        if len(values) != len(outs):
            raise PlaitTypeError(
                f"returned {len(values)} value(s) but declares {len(outs)} outputs"
            )
        for (name, hint), value in zip(outs, values, strict=True):
            out.literals[name].CopyFrom(_types.to_literal(value, hint, var=name))
        return out

    def run(self, config: RayConfig, inputs: dict[str, Any], context: RunContext) -> Any:
        """Submit the function (once, or once per element) to Ray and wait for the results."""
        ray = _connection.get(config.address)
        handler = context.template.worker.handler
        remote = ray.remote(_call).options(
            num_cpus=config.num_cpus,
            num_gpus=config.num_gpus,
            max_retries=config.max_retries,
            retry_exceptions=config.retry_exceptions,
            name=context.template.id.name,
        )
        if not config.map_over:
            return _wait(ray, [lambda: remote.remote(handler, inputs)], 0, context)[0]
        lists = [inputs[n] for n in config.map_over]
        if len({len(v) for v in lists}) > 1:
            sizes = ", ".join(f"{n}: {len(v)}" for n, v in zip(config.map_over, lists, strict=True))
            raise NonRetryableError(f"the mapped inputs differ in length ({sizes})")
        fixed = {k: v for k, v in inputs.items() if k not in config.map_over}
        items = [
            dict(fixed, **dict(zip(config.map_over, row, strict=True)))
            for row in zip(*lists, strict=True)
        ]
        submits = [functools.partial(remote.remote, handler, kw) for kw in items]
        print(f"submitting {len(items)} Ray task(s)")  # to the attempt's log
        return _wait(ray, submits, config.concurrency, context)


def _wait(
    ray: Any, submits: Sequence[Callable[[], Any]], window: int, context: RunContext
) -> list[Any]:
    """Submit (at most `window` in flight), wait for all, in order; cancel on cancellation."""
    refs: list[Any] = []
    pending: set[Any] = set()
    results: dict[Any, Any] = {}
    limit = window or len(submits)
    try:
        while len(results) < len(submits):
            while len(refs) < len(submits) and len(pending) < limit:
                ref = submits[len(refs)]()
                refs.append(ref)
                pending.add(ref)
            if context.cancelled.is_set():
                raise TaskFailedError("Cancelled", "the attempt was cancelled; its Ray tasks too")
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=_POLL)
            for ref in ready:
                pending.discard(ref)
                results[ref] = ray.get(ref)
    except TaskFailedError:
        _cancel(ray, pending)
        raise
    except ray.exceptions.RayTaskError as exc:
        _cancel(ray, pending)
        cause = exc.cause if isinstance(exc.cause, BaseException) else exc
        raise _user_error(cause) from None
    except ray.exceptions.RayError as exc:
        _cancel(ray, pending)
        raise TaskFailedError(type(exc).__name__, f"Ray: {exc}") from None
    return [results[r] for r in refs]


def _cancel(ray: Any, refs: set[Any]) -> None:
    for ref in refs:
        try:
            ray.cancel(ref, force=True)
        except Exception:  # already finished, or the cluster went away
            pass


def _user_error(cause: BaseException) -> Exception:
    if isinstance(cause, NonRetryableError):
        return TaskFailedError(type(cause).__name__, str(cause), recoverable=False)
    return TaskFailedError(type(cause).__name__, str(cause) or type(cause).__name__)


class RayTask(Task[Any, Any]):
    """A `@ray_task` function: its template has type ``ray`` and the Ray options in `custom`."""

    def __init__(self, fn: Callable[..., Any], options: TaskOptions, config: RayConfig) -> None:
        super().__init__(fn, task_type=Ray.name, options=options)
        self.config = config
        check_template(Ray(), self.template, f"ray task '{self.name}'")

    @functools.cached_property
    def template(self) -> tasks_pb2.TaskTemplate:
        """The `TaskTemplate`: a worker target naming the function, and the Ray options."""
        return with_plugin(Task.template.func(self), self.config, ())  # type: ignore[attr-defined]


class RayMap(Task[Any, Any]):
    """A task's function fanned out over lists as Ray tasks (see `ray_map`)."""

    def __init__(self, task: Task[Any, Any], config: RayConfig) -> None:
        inner = task.python_interface
        if task.is_dynamic or inner.output_kind not in ("single", "none"):
            raise PlaitTypeError(f"ray_map maps a task with at most one output, not {inner.where}")
        over = config.map_over or list(inner.inputs)
        for n in over:
            if n not in inner.inputs:
                raise PlaitValueError(f"ray_map: {n!r} is not an input of {inner.where}")
        config = dataclasses.replace(config, map_over=list(over))
        name = f"{task.name}.ray_map"
        inputs = {n: (list[h] if n in over else h) for n, h in inner.inputs.items()}  # type: ignore[valid-type]
        outs = list(inner.outputs.values())
        single = list[outs[0]] if outs else None  # type: ignore[valid-type]
        fn = _signature_function(
            name,
            inputs,
            {"o0": single} if single else {},
            task.fn.__module__,
            "ray map",
            single=single,
        )
        super().__init__(
            fn,
            task_type=Ray.name,
            options=TaskOptions(name=name, retries=task.template.metadata.retries.retries),
        )
        self.task = task
        self.config = config
        check_template(Ray(), self.template, f"ray_map of {inner.where}")

    def _code_digest(self) -> str:
        return self.task.template.metadata.code_digest

    @functools.cached_property
    def template(self) -> tasks_pb2.TaskTemplate:
        """The `TaskTemplate`: the mapped function's handler, the list interface, the map."""
        return with_plugin(Task.template.func(self), self.config, (), handler=self.task.handler)  # type: ignore[attr-defined]


def ray_map(
    task: Task[Any, Any],
    *,
    over: Sequence[str] = (),
    address: str = "",
    num_cpus: float = 1.0,
    concurrency: int = 0,
    max_retries: int = 0,
) -> RayMap:
    """Fan a task's function out over lists as Ray tasks, in one plait node.

    Call the result with the task's inputs: those in `over` (all by default) as lists of equal
    length, zipped, the others broadcast. Its output is the list of the function's results, in
    order. Define it at module level (like any task) so that workers declare it.

    Args:
        task: A ``@task`` or ``@ray_task`` with at most one output.
        over: The inputs that are lists.
        address: The Ray cluster (empty: ``$RAY_ADDRESS``); a ``@ray_task``'s by default.
        num_cpus: CPUs each Ray task reserves.
        concurrency: Ray tasks in flight at once (0: all).
        max_retries: Ray's retries of a Ray task whose worker died.
    """
    base = task.config if isinstance(task, RayTask) else RayConfig()
    config = dataclasses.replace(
        base, address=address or base.address, num_cpus=num_cpus, concurrency=concurrency,
        max_retries=max_retries, map_over=list(over),
    )  # fmt: skip
    return RayMap(task, config)


@overload
def ray_task(fn: Callable[..., Any], /) -> RayTask: ...


@overload
def ray_task(
    *,
    address: str = "",
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    max_retries: int = 0,
    retry_exceptions: bool = False,
    retries: int = 0,
    timeout: Timeout = None,
    cache: bool = False,
    cache_version: str = "",
    queue: str = "default",
    name: str | None = None,
) -> Callable[[Callable[..., Any]], RayTask]: ...


# Keyword-only options mirroring @task's and Ray's: the documented exception to the
# argument-count rule, as for @task.
def ray_task(  # noqa: PLR0913
    fn: Callable[..., Any] | None = None,
    /,
    *,
    address: str = "",
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    max_retries: int = 0,
    retry_exceptions: bool = False,
    retries: int = 0,
    timeout: Timeout = None,
    cache: bool = False,
    cache_version: str = "",
    queue: str = "default",
    name: str | None = None,
) -> RayTask | Callable[[Callable[..., Any]], RayTask]:
    """Declares a task whose function runs on a Ray cluster (see `plait.ext.ray`).

    Args:
        fn: The function, when used bare.
        address: The cluster; empty: ``$RAY_ADDRESS`` where the task runs.
        num_cpus: CPUs the Ray task reserves.
        num_gpus: GPUs the Ray task reserves.
        max_retries: Ray's retries of a Ray task whose worker died.
        retry_exceptions: Whether Ray also retries exceptions (within `max_retries`).
        retries: plait's retries of the whole attempt after a recoverable failure.
        timeout: Limit per attempt (then the Ray task is cancelled).
        cache: Reuse outputs for identical inputs.
        cache_version: Pins the cache key.
        queue: The worker queue that serves it.
        name: Registered name; ``"<module>.<qualname>"`` by default.
    """
    config = RayConfig(
        address=address, num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries,
        retry_exceptions=retry_exceptions,
    )  # fmt: skip
    options = TaskOptions(
        retries=retries, timeout=timeout, cache=cache, cache_version=cache_version, queue=queue,
        name=name,
    )  # fmt: skip

    def wrap(f: Callable[..., Any]) -> RayTask:
        return RayTask(f, options, config)

    return wrap if fn is None else wrap(fn)


__all__ = ["Ray", "RayConfig", "RayMap", "RayTask", "ray_map", "ray_task"]
