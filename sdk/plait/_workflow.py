"""`@workflow`: a static graph, compiled once (lazily) by running the body on promises."""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar, cast, overload

from plaitidl.core.v1 import identifier_pb2, interface_pb2, workflow_pb2

from plait import _types
from plait._constants import DEFAULT_DOMAIN, DEFAULT_PROJECT, START_NODE
from plait._context import Builder, LocalContext, current, push
from plait._errors import PlaitError, PlaitTypeError
from plait._interface import PyInterface, bind_arguments, digest, from_function
from plait._promise import Promise, add_call, output_bindings

P = ParamSpec("P")
R = TypeVar("R")


class Workflow(Generic[P, R]):
    """A decorated workflow function; its template is compiled on first use.

    Compiling lazily lets a workflow and a dynamic defined later in the same module refer to
    each other (merge sort), since the body runs only after the module has finished importing.

    Attributes:
        fn: The undecorated function.
        name: The registered name, ``"<module>.<qualname>"`` unless given.
        python_interface: Inputs, defaults and outputs as Python hints.
    """

    def __init__(self, fn: Callable[P, R], *, name: str | None = None) -> None:
        if not callable(fn) or not hasattr(fn, "__qualname__"):
            raise PlaitTypeError(f"@workflow decorates functions, not {fn!r}")
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.name: str = name or f"{fn.__module__}.{fn.__qualname__}"
        self.python_interface: PyInterface = from_function(fn, "workflow", self.name)
        self._lock = threading.RLock()
        self._compiling = False
        self._compiled: tuple[workflow_pb2.WorkflowTemplate, list[Any]] | None = None

    @property
    def short_name(self) -> str:
        """The last component of the name, used as node display name."""
        return self.name.rsplit(".", 1)[-1]

    @property
    def template(self) -> workflow_pb2.WorkflowTemplate:
        """The `WorkflowTemplate` (compiled on first access); version = content digest."""
        return self._compile()[0]

    @property
    def id(self) -> identifier_pb2.Identifier:
        """The template's identifier."""
        return self.template.id

    def _references(self) -> list[Any]:
        return self._compile()[1]

    def _set_node_target(self, node: workflow_pb2.Node) -> None:
        node.workflow_node.sub_workflow_id.CopyFrom(self.id)

    def __repr__(self) -> str:
        return f"<workflow {self.name}>"

    def _compile(self) -> tuple[workflow_pb2.WorkflowTemplate, list[Any]]:
        with self._lock:
            if self._compiled is not None:
                return self._compiled
            if self._compiling:
                raise PlaitError(
                    f"workflow '{self.name}' calls itself while it is being compiled; a static "
                    "workflow cannot be recursive: put the recursive call in a @dynamic"
                )
            self._compiling = True
            try:
                self._compiled = self._build()
            finally:
                self._compiling = False
            return self._compiled

    def _build(self) -> tuple[workflow_pb2.WorkflowTemplate, list[Any]]:
        iface = self.python_interface
        builder = Builder("workflow", iface.where)
        inputs = {
            n: Promise(START_NODE, n, h, iface.input_types[n], builder)
            for n, h in iface.inputs.items()
        }
        with push(builder):
            result = cast("Callable[..., object]", self.fn)(**inputs)
        builder.finish()
        outputs = output_bindings(result, iface, builder=builder)
        defaults = interface_pb2.ParameterMap(
            parameters=[
                interface_pb2.Parameter(
                    var=interface_pb2.Variable(name=n, type=iface.input_types[n]),
                    default=_types.to_literal(v, iface.inputs[n], var=n),
                )
                for n, v in iface.defaults.items()
            ]
        )
        tpl = workflow_pb2.WorkflowTemplate(
            id=identifier_pb2.Identifier(
                resource_type=identifier_pb2.RESOURCE_TYPE_WORKFLOW,
                project=DEFAULT_PROJECT,
                domain=DEFAULT_DOMAIN,
                name=self.name,
            ),
            interface=iface.typed_interface(),
            nodes=builder.nodes,
            outputs=outputs,
            defaults=defaults,
            description=(inspect.getdoc(self.fn) or "").split("\n\n", 1)[0].strip(),
        )
        tpl.id.version = digest(tpl.SerializeToString(deterministic=True))
        return tpl, list(builder.refs.values())

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """In a workflow or dynamic body: adds a subworkflow node. Elsewhere: runs it.

        Outside any body the workflow runs on the embedded engine (the same compiler and
        scheduler as a remote engine); inside a dynamic body that runs locally, its body runs
        locally too.
        """
        ctx = current()
        iface = self.python_interface
        if isinstance(ctx, Builder):
            bound = bind_arguments(iface, args, kwargs, positional_ok=False)
            return add_call(ctx, self, bound)  # type: ignore[no-any-return]
        bound = bind_arguments(iface, args, kwargs, positional_ok=True)
        if isinstance(ctx, LocalContext):
            if ctx.skip:
                return None  # type: ignore[return-value]
            return cast("Callable[..., R]", self.fn)(**{**iface.defaults, **bound})
        # Deferred: the embedded runner sits above this module (it serializes workflows) and
        # loads the engine; only a workflow run outside any body needs it.
        from plait._embedded import run_locally

        return cast("R", run_locally(self, bound))


@overload
def workflow(fn: Callable[P, R], /) -> Workflow[P, R]: ...


@overload
def workflow(*, name: str | None = None) -> Callable[[Callable[P, R]], Workflow[P, R]]: ...


def workflow(
    fn: Callable[P, R] | None = None, /, *, name: str | None = None
) -> Workflow[P, R] | Callable[[Callable[P, R]], Workflow[P, R]]:
    """Declares a workflow: a static graph of task, workflow and conditional calls.

    The body runs once, when the workflow is first compiled, with promises in place of its
    inputs: calls (keyword arguments only) add nodes, and Python control flow on promises is
    an error (use `conditional` or a ``@dynamic``). Called with plain values outside any
    workflow, it runs on the embedded engine and returns its outputs.

    Args:
        fn: The function, when used bare.
        name: Registered name; defaults to ``"<module>.<qualname>"``.

    Returns:
        A `Workflow`, or a decorator producing one.
    """

    def wrap(f: Callable[P, R]) -> Workflow[P, R]:
        return Workflow(f, name=name)

    return wrap if fn is None else wrap(fn)
