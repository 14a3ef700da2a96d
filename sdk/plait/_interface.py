"""Python signatures to typed interfaces: the one place that reads a function's type hints."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from plaitidl.core.v1 import interface_pb2, types_pb2

from plait import _types
from plait._constants import output_name
from plait._errors import PlaitTypeError

OutputKind = Literal["none", "single", "tuple", "namedtuple"]


@dataclass(frozen=True)
class PyInterface:
    """The Python view of an entity's interface, with the literal types computed once."""

    where: str
    inputs: dict[str, Any]
    defaults: dict[str, Any]
    outputs: dict[str, Any]
    output_kind: OutputKind
    output_class: type | None
    input_types: dict[str, types_pb2.LiteralType] = field(repr=False)
    output_types: dict[str, types_pb2.LiteralType] = field(repr=False)

    def typed_interface(self) -> interface_pb2.TypedInterface:
        """The `TypedInterface` proto, inputs and outputs in declaration order."""
        return interface_pb2.TypedInterface(
            inputs=_variable_map(self.input_types),
            outputs=_variable_map(self.output_types),
        )


def _variable_map(types: dict[str, types_pb2.LiteralType]) -> interface_pb2.VariableMap:
    return interface_pb2.VariableMap(
        variables=[interface_pb2.Variable(name=n, type=t) for n, t in types.items()]
    )


def is_namedtuple(hint: object) -> bool:
    """Whether `hint` is a `typing.NamedTuple` class."""
    return isinstance(hint, type) and issubclass(hint, tuple) and hasattr(hint, "_fields")


def from_function(fn: Callable[..., Any], kind: str, name: str) -> PyInterface:
    """Reads `fn`'s signature and hints; raises `PlaitTypeError` naming the entity and variable.

    Args:
        fn: The decorated function.
        kind: "task", "dynamic" or "workflow", used in messages.
        name: The entity's name, used in messages.
    """
    where = f"{kind} '{name}'"
    sig = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:  # NameError for unresolvable forward references, and friends.
        raise PlaitTypeError(f"{where}: cannot resolve its type hints: {exc}") from exc
    inputs: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise PlaitTypeError(
                f"{where}: *{p.name} / **{p.name} parameters are not supported; "
                "declare every input as a named, typed parameter"
            )
        if p.name not in hints:
            raise PlaitTypeError(
                f"{where}: input '{p.name}' has no type annotation; plait needs a type hint "
                "for every input"
            )
        inputs[p.name] = hints[p.name]
        if p.default is not p.empty:
            defaults[p.name] = p.default
    if sig.return_annotation is inspect.Signature.empty:
        raise PlaitTypeError(
            f"{where}: missing return annotation; annotate the return type "
            "(use '-> None' for no outputs)"
        )
    outputs, output_kind, output_class = _outputs(hints.get("return", None), where)
    input_types = {
        n: _types.literal_type(h, where=f"{where}, input '{n}'") for n, h in inputs.items()
    }
    output_types = {
        n: _types.literal_type(h, where=f"{where}, output '{n}'") for n, h in outputs.items()
    }
    return PyInterface(
        where=where,
        inputs=inputs,
        defaults=defaults,
        outputs=outputs,
        output_kind=output_kind,
        output_class=output_class,
        input_types=input_types,
        output_types=output_types,
    )


def _outputs(ret: Any, where: str) -> tuple[dict[str, Any], OutputKind, type | None]:
    """The outputs a return annotation declares: names and hints, kind, NamedTuple class."""
    if ret is None or ret is type(None):
        return {}, "none", None
    if is_namedtuple(ret):
        hints = typing.get_type_hints(ret)
        return {f: hints[f] for f in ret._fields}, "namedtuple", ret
    if ret is tuple or typing.get_origin(ret) is tuple:
        args = typing.get_args(ret)
        if not args or Ellipsis in args or args == ((),):
            raise PlaitTypeError(
                f"{where}: return type {ret!r} is not supported; use a fixed-length "
                "tuple[A, B, ...], a NamedTuple or list[T]"
            )
        return {output_name(i): a for i, a in enumerate(args)}, "tuple", None
    return {output_name(0): ret}, "single", None


def bind_arguments(
    iface: PyInterface, args: tuple[Any, ...], kwargs: dict[str, Any], *, positional_ok: bool
) -> dict[str, Any]:
    """Maps a call's arguments to input names; raises `PlaitTypeError` on misuse.

    Inputs left out that have a Python default are not filled in here.
    """
    names = list(iface.inputs)
    if args and not positional_ok:
        raise PlaitTypeError(
            f"{iface.where} was called with positional arguments inside a workflow; "
            f"pass inputs by keyword, e.g. {_example_call(iface)}"
        )
    if len(args) > len(names):
        raise PlaitTypeError(
            f"{iface.where} takes {len(names)} input(s) but {len(args)} positional "
            "argument(s) were given"
        )
    bound = dict(zip(names, args, strict=False))
    for k, v in kwargs.items():
        if k not in iface.inputs:
            raise PlaitTypeError(
                f"{iface.where} got an unknown argument '{k}'; its inputs are: "
                f"{', '.join(names) or '(none)'}"
            )
        if k in bound:
            raise PlaitTypeError(f"{iface.where} got argument '{k}' twice")
        bound[k] = v
    for n in names:
        if n not in bound and n not in iface.defaults:
            raise PlaitTypeError(f"{iface.where} is missing argument '{n}'")
    return bound


def _example_call(iface: PyInterface) -> str:
    name = iface.where.split("'")[1].rsplit(".", 1)[-1]
    return f"{name}({', '.join(f'{n}=...' for n in iface.inputs)})"


def digest(data: bytes) -> str:
    """A short, stable content digest used as an entity version."""
    import hashlib  # only when an entity is versioned: `import plait` need not load OpenSSL

    return hashlib.sha256(data).hexdigest()[:16]
