"""`@dynamic`: a task whose body runs at execution time and yields a `DynamicJobSpec`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar, cast, overload

from plaitidl.core.v1 import dynamic_job_pb2

from plait._constants import DEFAULT_QUEUE, TASK_TYPE_DYNAMIC
from plait._context import Builder, push
from plait._dynamic_wire import field, output_binding
from plait._interface import PyInterface
from plait._promise import Promise, output_bindings
from plait._serialize import closure
from plait._task import Task, TaskOptions, Timeout, make_decorator

P = ParamSpec("P")
R = TypeVar("R")


@overload
def dynamic(fn: Callable[P, R], /) -> Task[P, R]: ...


@overload
def dynamic(
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


# Keyword-only options mirroring TaskMetadata, as for @task: the documented exception to the
# argument-count rule (RUF100: see @task).
def dynamic(  # noqa: PLR0913, RUF100
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
    """Declares a dynamic workflow: a task whose body builds a graph from its real inputs.

    A worker runs the body with real Python inputs; the calls it makes to tasks, workflows,
    launch plans, map tasks and conditionals become the nodes of a ``DynamicJobSpec``, and
    its return value (promises, plain values, lists of promises) becomes the spec's outputs.
    The engine compiles and runs the spec as the node's sub-graph; nodes may be dynamic
    again (recursion). Called outside any workflow, the body runs locally and so do the
    calls in it.

    Args:
        fn: The function, when used bare.
        retries: Extra attempts of the generator after a recoverable failure.
        timeout: Limit per attempt of the generator, a ``timedelta`` or seconds.
        cache: Reuse outputs for identical inputs.
        cache_version: Pins the cache key (bump it to invalidate); when empty, the key
            follows the code digest, so editing the task invalidates its cached results.
        cache_serialize: Identical concurrent runs wait for the one that computes.
        cache_ignore_inputs: Inputs left out of the cache key.
        interruptible: The generator may run on preemptible capacity.
        queue: The worker queue that serves the generator.
        name: Registered name; defaults to ``"<module>.<qualname>"``.

    Returns:
        A `Task` of type ``"dynamic"``, or a decorator producing one.
    """
    return make_decorator(
        TASK_TYPE_DYNAMIC,
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


def build_spec(task: Task[Any, Any], inputs: dict[str, Any]) -> dynamic_job_pb2.DynamicJobSpec:
    """Runs a dynamic's body on real `inputs` and returns the graph it describes."""
    iface = task.python_interface
    builder = Builder("dynamic", iface.where)
    with push(builder):
        result = task.fn(**inputs)
    builder.finish()
    assert builder.wire is not None
    data = builder.wire
    outputs = _wire_outputs(result, iface, builder)
    if outputs is None:
        outputs = [b.SerializeToString() for b in output_bindings(result, iface, builder=builder)]
    del result  # a fan-out's promises: not kept alive next to the parsed spec
    tasks, workflows, launch_plans = closure(list(builder.refs.values()))
    # One parse of the whole spec (in C) instead of building it message by message.
    for key, items in (
        (b"\x12", outputs),
        (b"\x1a", [t.SerializeToString() for t in tasks]),
        (b"\x22", [w.SerializeToString() for w in workflows]),
        (b"\x32", [lp.SerializeToString() for lp in launch_plans]),
    ):
        for item in items:
            data += field(key, item)
    # The parser reads any buffer (the stubs say bytes): a fan-out's spec is not copied first.
    return dynamic_job_pb2.DynamicJobSpec.FromString(cast(bytes, data))


def _wire_outputs(result: object, iface: PyInterface, builder: Builder) -> list[bytes] | None:
    """The output bindings in wire form when the common case allows (one output, promises or
    plain scalars); None sends the general path (which also checks what was returned)."""
    if iface.output_kind != "single":
        return None
    one = output_binding(next(iter(iface.outputs)), result, iface, builder, Promise)
    return None if one is None else [one]
