"""`@task`: a Python function served by a worker, as a `TaskTemplate`."""

from __future__ import annotations

import dataclasses
import datetime
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, Generic, ParamSpec, TypeVar, cast, overload

from google.protobuf import duration_pb2
from plaitidl.core.v1 import identifier_pb2, tasks_pb2, workflow_pb2

from plait._code import code_digest
from plait._constants import (
    DEFAULT_DOMAIN,
    DEFAULT_PROJECT,
    DEFAULT_QUEUE,
    LANGUAGE,
    SDK_VERSION,
    TASK_TYPE_DYNAMIC,
    TASK_TYPE_PYTHON,
)
from plait._context import Builder, LocalContext, current, push
from plait._errors import PlaitTypeError, PlaitValueError
from plait._interface import PyInterface, bind_arguments, digest, from_function
from plait._promise import add_call

P = ParamSpec("P")
R = TypeVar("R")

Timeout = datetime.timedelta | int | float | None


def _description(fn: Callable[..., Any]) -> str:
    doc = inspect.getdoc(fn) or ""
    return doc.split("\n\n", 1)[0].strip()


@dataclasses.dataclass(frozen=True)
class TaskOptions:
    """The options of `task` and `dynamic` (see there); validated by `Task`."""

    retries: int = 0
    timeout: Timeout = None
    cache: bool = False
    cache_version: str = ""
    cache_serialize: bool = False
    cache_ignore_inputs: Sequence[str] = ()
    interruptible: bool = False
    queue: str = DEFAULT_QUEUE
    name: str | None = None


class Task(Generic[P, R]):
    """A decorated task (or dynamic) function and its template.

    Attributes:
        fn: The undecorated function.
        name: The registered name, ``"<module>.<qualname>"`` unless given.
        handler: What a worker resolves to run it, ``"<module>:<qualname>"``.
        task_type: ``"python-task"`` or ``"dynamic"``.
        python_interface: Inputs, defaults and outputs as Python hints.
    """

    def __init__(self, fn: Callable[P, R], *, task_type: str, options: TaskOptions) -> None:
        if not callable(fn) or not hasattr(fn, "__qualname__"):
            raise PlaitTypeError(f"@task / @dynamic decorate functions, not {fn!r}")
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.task_type = task_type
        self.name: str = options.name or f"{fn.__module__}.{fn.__qualname__}"
        self.handler = f"{fn.__module__}:{fn.__qualname__}"
        kind = "dynamic" if task_type == TASK_TYPE_DYNAMIC else "task"
        self.python_interface: PyInterface = from_function(fn, kind, self.name)
        where = self.python_interface.where
        retries = options.retries
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise PlaitValueError(f"{where}: retries must be an int >= 0, not {retries!r}")
        for n in options.cache_ignore_inputs:
            if n not in self.python_interface.inputs:
                raise PlaitValueError(f"{where}: cache_ignore_inputs names unknown input '{n}'")
        self._options = options
        self._timeout = _duration(options.timeout, where)

    @property
    def short_name(self) -> str:
        """The last component of the name, used as node display name."""
        return self.name.rsplit(".", 1)[-1]

    @property
    def is_dynamic(self) -> bool:
        """Whether the body yields a DynamicJobSpec at execution time."""
        return self.task_type == TASK_TYPE_DYNAMIC

    @functools.cached_property
    def template(self) -> tasks_pb2.TaskTemplate:
        """The `TaskTemplate`; its version is a digest of its content, code included."""
        o = self._options
        tpl = tasks_pb2.TaskTemplate(
            id=identifier_pb2.Identifier(
                resource_type=identifier_pb2.RESOURCE_TYPE_TASK,
                project=DEFAULT_PROJECT,
                domain=DEFAULT_DOMAIN,
                name=self.name,
            ),
            type=self.task_type,
            metadata=tasks_pb2.TaskMetadata(
                retries=tasks_pb2.RetryStrategy(retries=o.retries),
                timeout=self._timeout,
                cache=o.cache,
                cache_version=o.cache_version,
                cache_serialize=o.cache_serialize,
                cache_ignore_inputs=list(o.cache_ignore_inputs),
                interruptible=o.interruptible,
                runtime=tasks_pb2.RuntimeMetadata(
                    type=tasks_pb2.RuntimeMetadata.RUNTIME_TYPE_SDK,
                    language=LANGUAGE,
                    version=SDK_VERSION,
                ),
                description=_description(self.fn),
                code_digest=self._code_digest(),
            ),
            interface=self.python_interface.typed_interface(),
            worker=tasks_pb2.WorkerTarget(queue=o.queue, handler=self.handler),
        )
        tpl.id.version = digest(tpl.SerializeToString(deterministic=True))
        return tpl

    def _code_digest(self) -> str:
        # Editing the body (or a helper it uses) must give a new version: a worker running
        # older code must not be mistaken for one running this.
        return code_digest(self.fn)

    @property
    def id(self) -> identifier_pb2.Identifier:
        """The template's identifier."""
        return self.template.id

    def _set_node_target(self, node: workflow_pb2.Node) -> None:
        node.task_node.task_id.CopyFrom(self.id)

    def _references(self) -> list[Any]:
        return []

    def __repr__(self) -> str:
        return f"<{self.task_type} {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """In a workflow or dynamic body: adds a node. Elsewhere: runs the function."""
        ctx = current()
        iface = self.python_interface
        if isinstance(ctx, Builder):
            bound = bind_arguments(iface, args, kwargs, positional_ok=False)
            return add_call(ctx, self, bound)  # type: ignore[no-any-return]
        bound = bind_arguments(iface, args, kwargs, positional_ok=True)
        if isinstance(ctx, LocalContext) and ctx.skip:
            return None  # type: ignore[return-value]
        return self._run_local(bound)

    def _run_local(self, bound: dict[str, Any]) -> R:
        if self.is_dynamic:
            # Like flytekit's local execution: the calls in the body run at once.
            with push(LocalContext()):
                return cast("Callable[..., R]", self.fn)(**bound)
        return cast("Callable[..., R]", self.fn)(**bound)


def _duration(timeout: Timeout, where: str) -> duration_pb2.Duration | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float, datetime.timedelta)):
        raise PlaitTypeError(f"{where}: timeout must be a timedelta or seconds, not {timeout!r}")
    seconds = timeout.total_seconds() if isinstance(timeout, datetime.timedelta) else timeout
    if seconds <= 0:
        raise PlaitValueError(f"{where}: timeout must be positive, not {timeout!r}")
    d = duration_pb2.Duration()
    d.FromTimedelta(datetime.timedelta(seconds=seconds))
    return d


def make_decorator(
    task_type: str,
    fn: Callable[P, R] | None,
    options: TaskOptions,
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Shared body of `task` and `dynamic`: bare use or use with options."""

    def wrap(f: Callable[P, R]) -> Task[P, R]:
        return Task(f, task_type=task_type, options=options)

    return wrap if fn is None else wrap(fn)


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(
    *,
    retries: int = 0,
    timeout: Timeout = None,
    cache: bool = False,
    cache_version: str = "",
    cache_serialize: bool = False,
    cache_ignore_inputs: Sequence[str] = (),
    interruptible: bool = False,
    queue: str = DEFAULT_QUEUE,
    name: str | None = None,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


# The options are keyword-only and many by design (they mirror TaskMetadata, as flytekit's
# @task does): the documented exception to the argument-count rule. RUF100: until pyproject
# switches PLR0913 on, the noqa would otherwise count as unused.
def task(  # noqa: PLR0913, RUF100
    fn: Callable[P, R] | None = None,
    /,
    *,
    retries: int = 0,
    timeout: Timeout = None,
    cache: bool = False,
    cache_version: str = "",
    cache_serialize: bool = False,
    cache_ignore_inputs: Sequence[str] = (),
    interruptible: bool = False,
    queue: str = DEFAULT_QUEUE,
    name: str | None = None,
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Declares a task: a typed Python function that a worker runs.

    Use bare (``@task``) or with options (``@task(retries=2, cache=True)``). Inside a
    ``@workflow`` or ``@dynamic`` body a call (keyword arguments only) adds a node and returns
    promises; anywhere else it runs the function.

    Args:
        fn: The function, when used bare.
        retries: Extra attempts after a recoverable failure.
        timeout: Limit per attempt, a ``timedelta`` or seconds.
        cache: Reuse outputs for identical inputs.
        cache_version: Pins the cache key (bump it to invalidate); when empty, the key
            follows the code digest, so editing the task invalidates its cached results.
        cache_serialize: Identical concurrent runs wait for the one that computes.
        cache_ignore_inputs: Inputs left out of the cache key.
        interruptible: The task may run on preemptible capacity.
        queue: The worker queue that serves it.
        name: Registered name; defaults to ``"<module>.<qualname>"``.

    Returns:
        A `Task`, or a decorator producing one.

    Raises:
        PlaitTypeError: A parameter or the return has no annotation or an unsupported type.
    """
    return make_decorator(
        TASK_TYPE_PYTHON,
        fn,
        TaskOptions(
            retries=retries,
            timeout=timeout,
            cache=cache,
            cache_version=cache_version,
            cache_serialize=cache_serialize,
            cache_ignore_inputs=cache_ignore_inputs,
            interruptible=interruptible,
            queue=queue,
            name=name,
        ),
    )
