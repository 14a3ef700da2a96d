"""`map_task(task)`: run a task over lists, as an array node."""

from __future__ import annotations

import functools
from typing import Any, Optional

from plaitidl.core.v1 import workflow_pb2

from plait import _types
from plait._context import Builder, LocalContext, current
from plait._errors import PlaitTypeError, PlaitValueError
from plait._interface import PyInterface, bind_arguments
from plait._promise import add_call
from plait._task import Task


class MapTask:
    """A task mapped over lists; call it with keyword arguments like the task itself.

    Attributes:
        task: The mapped task.
        concurrency: Maximum instances at once (0: no limit).
        min_success_ratio: Fraction of instances that must succeed.
    """

    def __init__(self, task: object, concurrency: int = 0, min_success_ratio: float = 1.0) -> None:
        broadcast: dict[str, Any] = {}
        if isinstance(task, functools.partial):
            if task.args:
                raise PlaitTypeError(
                    "map_task(functools.partial(...)): bind broadcast inputs by keyword only"
                )
            broadcast = dict(task.keywords)
            task = task.func
        if not isinstance(task, Task) or task.is_dynamic:
            raise PlaitTypeError(
                f"map_task(...) maps a @task (optionally wrapped in functools.partial), not "
                f"{task!r}; use a @dynamic to fan out over workflows or dynamics"
            )
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 0:
            raise PlaitValueError(f"map_task: concurrency must be an int >= 0, not {concurrency!r}")
        if not 0.0 <= min_success_ratio <= 1.0:
            raise PlaitValueError(
                f"map_task: min_success_ratio must be in [0, 1], not {min_success_ratio!r}"
            )
        self.task: Task[Any, Any] = task
        self.concurrency = concurrency
        self.min_success_ratio = min_success_ratio
        inner = task.python_interface
        for k in broadcast:
            if k not in inner.inputs:
                raise PlaitTypeError(
                    f"map_task: functools.partial binds '{k}', which is not an input of "
                    f"{inner.where}"
                )
        self._broadcast = [n for n in inner.inputs if n in broadcast]
        self.name = f"{task.name}.map"
        where = f"map_task of {inner.where}"
        inputs = {n: (h if n in broadcast else list[h]) for n, h in inner.inputs.items()}  # type: ignore[valid-type]
        optional = min_success_ratio < 1.0
        elem = {n: (Optional[h] if optional else h) for n, h in inner.outputs.items()}  # noqa: UP045
        outputs = {n: list[h] for n, h in elem.items()}  # type: ignore[valid-type]
        self.python_interface = PyInterface(
            where=where,
            inputs=inputs,
            defaults=broadcast,
            outputs=outputs,
            output_kind="single" if len(outputs) == 1 else ("none" if not outputs else "tuple"),
            output_class=None,
            input_types={
                n: _types.literal_type(h, where=f"{where}, input '{n}'") for n, h in inputs.items()
            },
            output_types={
                n: _types.literal_type(h, where=f"{where}, output '{n}'")
                for n, h in outputs.items()
            },
        )

    @property
    def short_name(self) -> str:
        """Node display name."""
        return f"map_{self.task.short_name}"

    def _references(self) -> list[Any]:
        return [self.task]

    def _set_node_target(self, node: workflow_pb2.Node) -> None:
        arr = node.array_node
        arr.node.id = f"{node.id}-item"
        arr.node.metadata.name = self.task.short_name
        arr.node.task_node.task_id.CopyFrom(self.task.id)
        arr.parallelism = self.concurrency
        if self.min_success_ratio < 1.0:
            arr.min_success_ratio = self.min_success_ratio
        arr.broadcast_inputs.extend(self._broadcast)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """In a workflow or dynamic body: adds an array node. Elsewhere: maps in process."""
        ctx = current()
        iface = self.python_interface
        if isinstance(ctx, Builder):
            return add_call(ctx, self, bind_arguments(iface, args, kwargs, positional_ok=False))
        bound = {**iface.defaults, **bind_arguments(iface, args, kwargs, positional_ok=True)}
        if isinstance(ctx, LocalContext) and ctx.skip:
            return None
        return self._run_local(bound)

    def _run_local(self, bound: dict[str, Any]) -> Any:
        mapped = [n for n in bound if n not in self._broadcast]
        lengths = {len(bound[n]) for n in mapped}
        if len(lengths) > 1:
            raise PlaitValueError(f"map_task of '{self.task.name}': mapped lists differ in length")
        size = lengths.pop() if lengths else 0
        results: list[Any] = []
        failures = 0
        for i in range(size):
            args = {n: (bound[n][i] if n in mapped else bound[n]) for n in bound}
            try:
                results.append(self.task.fn(**args))
            except Exception:
                if self.min_success_ratio >= 1.0:
                    raise
                failures += 1
                results.append(
                    None
                    if len(self.task.python_interface.outputs) <= 1
                    else (None,) * len(self.task.python_interface.outputs)
                )
        if size and (size - failures) / size < self.min_success_ratio:
            raise PlaitValueError(
                f"map_task of '{self.task.name}': {failures} of {size} instances failed"
            )
        n_out = len(self.task.python_interface.outputs)
        if n_out == 0:
            return None
        if n_out == 1:
            return results
        return tuple(list(col) for col in zip(*results, strict=True)) if results else ((),) * n_out


def map_task(task: object, concurrency: int = 0, min_success_ratio: float = 1.0) -> MapTask:
    """Maps a task over lists: ``map_task(t)(x=[1, 2, 3])`` runs ``t(x=1)``, ``t(x=2)``, ...

    Each input becomes a list of the task's input type (all of equal length); inputs bound
    with ``functools.partial(t, y=...)`` are passed whole to every instance. Each output
    becomes a list, of ``T | None`` when ``min_success_ratio < 1``.

    Args:
        task: A ``@task``, or ``functools.partial`` of one binding broadcast inputs.
        concurrency: Maximum instances running at once; 0 means no limit.
        min_success_ratio: Fraction of instances that must succeed.

    Returns:
        A callable adding an array node in a workflow or dynamic body.
    """
    return MapTask(task, concurrency, min_success_ratio)
