"""`conditional(name)`: if / elif / else over promises, as a branch node.

Python evaluates the call in ``.then(call)`` before ``then`` runs, so `conditional` registers a
`BranchState` on the builder: while it waits for a case, the next call becomes that case's
then-node (id ``"<branch id>-case<i>"`` or ``"<branch id>-else"``) instead of a top-level node.
Inside a dynamic run locally, conditions are plain bools and only the chosen case runs.
"""

from __future__ import annotations

from typing import Any, Generic, NoReturn, TypeVar

from plaitidl.core.v1 import condition_pb2, literals_pb2, workflow_pb2

from plait._context import BranchState, Builder, LocalContext, UnfinishedChain, current
from plait._errors import PlaitError, PlaitTypeError, PlaitValueError
from plait._interface import PyInterface
from plait._promise import Expression, Promise, expression_proto, make_outputs

T = TypeVar("T")

Condition = Expression | bool


class _Impl:
    """The state shared by the stages of one conditional chain."""

    def __init__(self, name: str) -> None:
        ctx = current()
        if ctx is None:
            raise PlaitTypeError(
                "conditional() can only be used inside a @workflow or @dynamic body"
            )
        self.name = name
        self.ctx = ctx
        self.cases: list[tuple[condition_pb2.BooleanExpression, workflow_pb2.Node, PyInterface]]
        self.cases = []
        self.inputs: list[literals_pb2.Binding] = []
        self.vars: dict[tuple[str, str, tuple[str | int, ...]], str] = {}
        self.pending: condition_pb2.BooleanExpression | None = None
        # Local mode.
        self.outer_skip = False
        self.active = False
        self.taken = False
        self.result: Any = None
        if isinstance(ctx, Builder):
            self.state = BranchState(name=name, node_id=ctx.new_node_id())
            ctx.branches.append(self.state)
        else:
            self.outer_skip = ctx.skip

    # Builder mode ------------------------------------------------------------------------------

    def _operand_var(self, p: Promise) -> str:
        assert isinstance(self.ctx, Builder)
        if p._builder is not self.ctx:
            raise PlaitError(f"conditional '{self.name}': {p!r} belongs to another body")
        key = p._key()
        if key not in self.vars:
            var = f"c{len(self.vars)}"
            self.vars[key] = var
            self.inputs.append(
                literals_pb2.Binding(
                    var=var, binding=literals_pb2.BindingData(promise=p._reference())
                )
            )
        return self.vars[key]

    def open_case(self, cond: Condition | None, label: str) -> None:
        if isinstance(self.ctx, LocalContext):
            self.active = not self.outer_skip and not self.taken and (cond is None or bool(cond))
            self.ctx.skip = not self.active
            return
        if cond is not None and not isinstance(cond, (Expression, bool)):
            raise PlaitTypeError(
                f"conditional '{self.name}': {cond!r} is not a condition; compare promises "
                "with ==, !=, <, <=, >, >= and combine with & and |"
            )
        self.pending = None if cond is None else expression_proto(cond, self._operand_var)
        self.state.case_label = label
        self.state.state = "await_then"

    def close_case(self, value: object) -> tuple[workflow_pb2.Node, PyInterface] | None:
        if isinstance(self.ctx, LocalContext):
            if self.active:
                self.result, self.taken = value, True
            self.ctx.skip = True
            return None
        if self.state.state != "filled" or self.state.captured is None:
            raise PlaitTypeError(
                f"conditional '{self.name}': .then(...) takes a call of a task, workflow, "
                f"launch plan or conditional, not {value!r}"
            )
        captured = self.state.captured
        self.state.captured = None
        self.state.state = "cond"
        return captured

    def finish(self, else_node: tuple[workflow_pb2.Node, PyInterface] | None, fail: str) -> Any:
        if isinstance(self.ctx, LocalContext):
            self.ctx.skip = self.outer_skip
            if not self.outer_skip and not self.taken and else_node is None:
                raise PlaitValueError(f"conditional '{self.name}' failed: {fail}")
            return self.result
        builder = self.ctx
        ifaces = [c[2] for c in self.cases] + ([else_node[1]] if else_node else [])
        first = ifaces[0]
        for other in ifaces[1:]:
            if (
                list(other.outputs) != list(first.outputs)
                or other.output_types != first.output_types
            ):
                raise PlaitTypeError(
                    f"conditional '{self.name}': every case must produce the same outputs; "
                    f"got {list(first.outputs)} and {list(other.outputs)} (or different types)"
                )
        blocks = [
            workflow_pb2.IfBlock(condition=cond, then_node=node) for cond, node, _ in self.cases
        ]
        branch = workflow_pb2.BranchNode(case=blocks[0], other=blocks[1:])
        if else_node is not None:
            branch.else_node.CopyFrom(else_node[0])
        else:
            branch.error.message = fail
        node = workflow_pb2.Node(
            id=self.state.node_id,
            metadata=workflow_pb2.NodeMetadata(name=self.name),
            inputs=self.inputs,
            branch_node=branch,
        )
        out = PyInterface(
            where=f"conditional '{self.name}'",
            inputs={},
            defaults={},
            outputs=first.outputs,
            output_kind=first.output_kind,
            output_class=first.output_class,
            input_types={},
            output_types=first.output_types,
        )
        assert builder.branches and builder.branches[-1] is self.state
        builder.branches.pop()
        builder.emit(node, out)
        return make_outputs(self.state.node_id, out, builder)

    def add_case(self, value: object) -> None:
        captured = self.close_case(value)
        if captured is not None:
            assert self.pending is not None
            self.cases.append((self.pending, *captured))


def _misuse(name: str, message: str) -> NoReturn:
    raise PlaitTypeError(f"conditional '{name}': {message}")


class _Start(UnfinishedChain):
    """``conditional(name)``: expects ``.if_(...)``."""

    def __init__(self, impl: _Impl) -> None:
        self._impl = impl

    def if_(self, condition: Condition) -> _FirstCase:
        """Opens the first case."""
        self._impl.open_case(condition, "case0")
        return _FirstCase(self._impl)

    def then(self, value: object) -> NoReturn:
        """Misuse: then() needs an if_() first."""
        _misuse(self._impl.name, ".then(...) without .if_(...) before it")

    def elif_(self, condition: Condition) -> NoReturn:
        """Misuse: elif_() needs an if_() first."""
        _misuse(self._impl.name, ".elif_(...) without .if_(...) before it")

    def else_(self) -> NoReturn:
        """Misuse: else_() needs an if_() first."""
        _misuse(self._impl.name, ".else_() without .if_(...) before it")


class _FirstCase(UnfinishedChain):
    def __init__(self, impl: _Impl) -> None:
        self._impl = impl

    def then(self, value: T) -> _Cases[T]:
        """The call run when the first condition holds."""
        self._impl.add_case(value)
        return _Cases(self._impl)


class _Cases(UnfinishedChain, Generic[T]):
    def __init__(self, impl: _Impl) -> None:
        self._impl = impl

    def elif_(self, condition: Condition) -> _Case[T]:
        """Opens another case."""
        self._impl.open_case(condition, f"case{len(self._impl.cases)}")
        return _Case(self._impl)

    def else_(self) -> _Else[T]:
        """Opens the default case; a conditional must end with one."""
        self._impl.open_case(None, "else")
        return _Else(self._impl)

    def if_(self, condition: Condition) -> NoReturn:
        """Misuse: a second if_()."""
        _misuse(self._impl.name, "use .elif_(...) for further cases, not a second .if_(...)")

    def then(self, value: object) -> NoReturn:
        """Misuse: two then() in a row."""
        _misuse(self._impl.name, ".then(...) must follow .if_(...), .elif_(...) or .else_()")


class _Case(UnfinishedChain, Generic[T]):
    def __init__(self, impl: _Impl) -> None:
        self._impl = impl

    def then(self, value: T) -> _Cases[T]:
        """The call run when this case's condition holds."""
        self._impl.add_case(value)
        return _Cases(self._impl)


class _Else(UnfinishedChain, Generic[T]):
    def __init__(self, impl: _Impl) -> None:
        self._impl = impl

    def then(self, value: T) -> T:
        """The call run when no condition holds; returns the conditional's outputs."""
        captured = self._impl.close_case(value)
        return self._impl.finish(captured, "")  # type: ignore[no-any-return]

    def fail(self, message: str) -> T:
        """Fails the execution with `message` when no condition holds."""
        impl = self._impl
        if isinstance(impl.ctx, Builder):
            if impl.state.state != "await_then":
                _misuse(impl.name, ".fail(...) must directly follow .else_()")
            impl.state.state = "cond"
        if not impl.cases and isinstance(impl.ctx, Builder):
            _misuse(impl.name, "needs at least one case")
        return impl.finish(None, message)  # type: ignore[no-any-return]


def conditional(name: str) -> _Start:
    """Starts an if / elif / else over promises inside a workflow or dynamic body.

    Example::

        conditional("terminal_case")
        .if_(numbers_count <= run_local_at_count)
        .then(sort_locally(numbers=numbers))
        .else_()
        .then(merge_sort_remotely(numbers=numbers, run_local_at_count=run_local_at_count))

    Conditions compare promises (or a promise and a value) with ``==, !=, <, <=, >, >=``,
    combined with ``&`` and ``|``. Each ``.then(...)`` takes one call; every case must produce
    the same outputs; the chain ends with ``.else_().then(...)`` or ``.else_().fail(msg)`` and
    returns the branch's promise(s).

    Args:
        name: The branch node's display name.

    Returns:
        The start of the chain; continue with ``.if_(...)``.
    """
    return _Start(_Impl(name))
