"""Compile contexts: where a call to a task, workflow or launch plan goes.

Outside any context a call runs the function (tasks) or the embedded engine (workflows). In a
`Builder` (a workflow body at compile time, a dynamic body at execution time) a call becomes a
node. In a `LocalContext` (a dynamic run locally) calls run at once, in process. Contexts live
in a `ContextVar`, so concurrent worker threads each have their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from plaitidl.core.v1 import workflow_pb2

from plait._errors import PlaitError, PlaitTypeError
from plait._interface import PyInterface


class Entity(Protocol):
    """What a builder needs from something callable in a workflow."""

    @property
    def name(self) -> str: ...

    @property
    def short_name(self) -> str: ...

    @property
    def python_interface(self) -> PyInterface: ...

    def _set_node_target(self, node: workflow_pb2.Node) -> None: ...

    def _references(self) -> list[Any]: ...


class UnfinishedChain:
    """Marker base of a `conditional(...)` chain that was not ended with ``.else_()``.

    It lives here, below both `_promise` (which refuses such a chain as a value) and
    `_conditional` (whose chain states derive from it), so neither has to import the other.
    """

    __slots__ = ()


@dataclass
class LocalContext:
    """Calls run immediately; `skip` is set while a local conditional skips a case."""

    skip: bool = False


@dataclass
class BranchState:
    """One `conditional(...)` being built: which then-node the next call becomes."""

    name: str
    node_id: str
    state: Literal["cond", "await_then", "claimed", "filled"] = "cond"
    case_label: str = ""
    captured: tuple[workflow_pb2.Node, PyInterface] | None = None

    def claim_id(self) -> str:
        if self.state == "await_then":
            self.state = "claimed"
            return f"{self.node_id}-{self.case_label}"
        if self.state == "cond":
            raise PlaitError(
                f"conditional '{self.name}' is not finished: a call inside a conditional must "
                "be the argument of .then(...), and every conditional must end with "
                ".else_().then(...) or .else_().fail(...)"
            )
        raise PlaitError(
            f"conditional '{self.name}': .then(...) takes exactly one task, workflow or "
            "conditional call; compute other values before conditional(...)"
        )

    def accept(self, node: workflow_pb2.Node, iface: PyInterface) -> None:
        self.captured = (node, iface)
        self.state = "filled"


@dataclass
class Builder:
    """Collects the nodes of a workflow body or of a dynamic body."""

    kind: Literal["workflow", "dynamic"]
    where: str
    nodes: list[workflow_pb2.Node] = field(default_factory=list)
    refs: dict[int, Any] = field(default_factory=dict)
    branches: list[BranchState] = field(default_factory=list)
    _counter: int = 0
    # A dynamic body's nodes, serialized as `DynamicJobSpec.nodes` fields (see
    # `plait._dynamic_wire`); a workflow body keeps `nodes`.
    wire: bytearray | None = None

    def __post_init__(self) -> None:
        if self.kind == "dynamic":
            self.wire = bytearray()

    def new_node_id(self) -> str:
        """The id of the next node: "n<k>" at top level, a case id inside a conditional."""
        if self.branches:
            return self.branches[-1].claim_id()
        node_id = f"n{self._counter}"
        self._counter += 1
        return node_id

    def emit(self, node: workflow_pb2.Node, iface: PyInterface) -> None:
        """Adds a finished node to the graph, or to the conditional case it belongs to."""
        if self.branches:
            self.branches[-1].accept(node, iface)
        elif self.wire is not None:
            self.add_wire(node.SerializeToString())
        else:
            self.nodes.append(node)

    def add_wire(self, node: bytes) -> None:
        """Adds a serialized node to a dynamic body's graph."""
        assert self.wire is not None
        self.wire += b"\x0a"
        n = len(node)
        while n >= 0x80:
            self.wire.append((n & 0x7F) | 0x80)
            n >>= 7
        self.wire.append(n)
        self.wire += node

    def add_ref(self, entity: Any) -> None:
        """Remembers an entity that a node references, for the serializer."""
        self.refs.setdefault(id(entity), entity)

    def finish(self) -> None:
        """Fails when a conditional was left without its else_()."""
        if self.branches:
            b = self.branches[-1]
            raise PlaitError(
                f"conditional '{b.name}' in {self.where} has no else_(): end it with "
                ".else_().then(...) or .else_().fail(...)"
            )


Context = Builder | LocalContext

_current: ContextVar[Context | None] = ContextVar("plait_compile_context", default=None)


def current() -> Context | None:
    """The innermost active context, if any."""
    return _current.get()


@contextmanager
def push(ctx: Context) -> Iterator[Context]:
    """Makes `ctx` the current context for the duration of the block."""
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


def require_builder(what: str) -> Builder:
    """The current builder, or a clear error for constructs that need one."""
    ctx = current()
    if not isinstance(ctx, Builder):
        raise PlaitTypeError(f"{what} can only be used inside a @workflow or @dynamic body")
    return ctx
