"""Python type hints to converters (and so to `LiteralType`s), compiled once per hint.

The dispatch is three small tables: exact classes (int, str, File, ...), generic origins
(`list[T]`, `dict[str, T]`, unions, `Annotated`), and class families (Enum subclasses,
dataclasses). Everything else is unsupported, with the reason when there is one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import enum
import functools
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

from plait._files import Directory, File
from plait._types.blobs import blob_conv
from plait._types.containers import list_conv, map_conv
from plait._types.core import Conv, UnsupportedError, hint_repr
from plait._types.enums import enum_class_conv
from plait._types.records import Field, dataclass_shape, record_conv
from plait._types.scalars import bool_conv, bytes_conv, float_conv, int_conv, none_conv, str_conv
from plait._types.structs import struct_conv
from plait._types.times import datetime_conv, timedelta_conv
from plait._types.unions import union_conv

# Dataclasses being compiled, outermost first: a class met again inside itself is recursive.
Stack = tuple[type[Any], ...]

_BY_CLASS: dict[object, Callable[[], Conv]] = {
    int: int_conv,
    float: float_conv,
    str: str_conv,
    bool: bool_conv,
    bytes: bytes_conv,
    dt.datetime: datetime_conv,
    dt.timedelta: timedelta_conv,
    File: lambda: blob_conv(File),
    Directory: lambda: blob_conv(Directory),
    None: none_conv,
    type(None): none_conv,
}

_UNSUPPORTED_REASONS: dict[object, str] = {
    typing.Any: "Any alone carries no type; use dict[str, Any] for JSON-like documents",
    object: "object carries no type",
    list: "a bare list has no element type; use list[T]",
    dict: "a bare dict has no value type; use dict[str, T]",
    tuple: "tuples are not supported; use list[T] or a dataclass",
    set: "sets are not supported; use list[T]",
    frozenset: "sets are not supported; use list[T]",
}


def _nested(hint: object, stack: Stack, outer: object) -> Conv:
    """The converter of a hint nested in `outer`, naming `outer` when it is unsupported."""
    try:
        return sub(hint, stack)
    except UnsupportedError as e:
        e.context.append(hint_repr(outer))
        raise


def _annotated(hint: object, args: tuple[Any, ...], stack: Stack) -> Conv:
    return sub(args[0], stack)


def _union(hint: object, args: tuple[Any, ...], stack: Stack) -> Conv:
    convs = [_nested(a, stack, hint) for a in args]
    try:
        return union_conv(convs)
    except UnsupportedError as e:
        e.hint = hint
        raise


def _list(hint: object, args: tuple[Any, ...], stack: Stack) -> Conv:
    if len(args) != 1:
        raise UnsupportedError(hint, _UNSUPPORTED_REASONS[list])
    return list_conv(_nested(args[0], stack, hint))


def _dict(hint: object, args: tuple[Any, ...], stack: Stack) -> Conv:
    if len(args) != 2:
        raise UnsupportedError(hint, _UNSUPPORTED_REASONS[dict])
    if args[0] is not str:
        raise UnsupportedError(hint, "map keys must be str")
    if args[1] is typing.Any:
        return struct_conv()
    return map_conv(_nested(args[1], stack, hint))


_BY_ORIGIN: dict[object, Callable[[object, tuple[Any, ...], Stack], Conv]] = {
    typing.Annotated: _annotated,
    typing.Union: _union,
    types.UnionType: _union,
    list: _list,
    dict: _dict,
}


def _dataclass(cls: type[Any], stack: Stack) -> Conv:
    if cls in stack:
        raise UnsupportedError(cls, "recursive dataclasses are not supported")
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception as e:  # NameError for an unresolvable forward reference, mostly
        raise UnsupportedError(cls, f"cannot resolve its field types: {e}") from None
    fields: list[Field] = []
    for f in dataclasses.fields(cls):
        try:
            conv = _build(hints.get(f.name, inspect.Parameter.empty), (*stack, cls))
        except UnsupportedError as e:
            e.context.append(f"field {cls.__qualname__}.{f.name}")
            raise
        has_default = (
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        )
        fields.append(Field(f.name, conv, required=f.init and not has_default, init=f.init))
    return record_conv(dataclass_shape(cls, fields))


def _family(cls: type[Any], stack: Stack) -> Conv | None:
    if issubclass(cls, enum.Enum):
        return enum_class_conv(cls)
    if dataclasses.is_dataclass(cls):
        return _dataclass(cls, stack)
    return None


def _unsupported(hint: object, origin: object) -> UnsupportedError:
    reason = ""
    with contextlib.suppress(TypeError):  # an unhashable hint has no listed reason
        reason = _UNSUPPORTED_REASONS.get(origin or hint, "")
    if not reason and isinstance(hint, type):
        reason = "classes must be dataclasses"
    return UnsupportedError(hint, reason)


def _build(hint: object, stack: Stack) -> Conv:
    if hint is inspect.Parameter.empty:
        raise UnsupportedError(hint, "every input and output needs a type annotation")
    if isinstance(hint, (str, typing.ForwardRef)):
        raise UnsupportedError(hint, "unresolved forward reference")
    with contextlib.suppress(TypeError):  # unhashable hints are never exact classes
        factory = _BY_CLASS.get(hint)
        if factory is not None:
            return factory()
    origin = typing.get_origin(hint)
    by_origin = _BY_ORIGIN.get(origin) if origin is not None else None
    if by_origin is not None:
        return by_origin(hint, typing.get_args(hint), stack)
    if origin is None and isinstance(hint, type):
        conv = _family(hint, stack)
        if conv is not None:
            return conv
    raise _unsupported(hint, origin)


def sub(hint: object, stack: Stack) -> Conv:
    """The converter of `hint`, from the cache when that is safe.

    Raises:
        UnsupportedError: The hint, or one nested in it, is not supported.
    """
    # Outside any dataclass the cache is safe; inside one, the stack must travel along so that
    # recursive dataclasses are detected instead of recursing forever.
    if not stack:
        try:
            hash(hint)
        except TypeError:
            return _build(hint, stack)
        return _compile_cached(hint)
    return _build(hint, stack)


@functools.lru_cache(maxsize=2048)
def _compile_cached(hint: object) -> Conv:
    return _build(hint, ())
