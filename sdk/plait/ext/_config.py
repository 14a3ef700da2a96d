"""A task type's configuration: a dataclass carried in `TaskTemplate.custom` (a JSON object).

`to_struct` writes one; `from_struct` reads one back, checking every field against the
dataclass's hints and naming the field of each problem (``custom.headers.Accept: expected str,
got number``). Supported hints: str, int, float, bool, ``Literal[...]`` of str, ``list[T]``,
``dict[str, T]``, ``T | None`` and nested dataclasses.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format, struct_pb2

from plait._errors import PlaitValueError

Problem = tuple[str, str]


def to_struct(config: object) -> struct_pb2.Struct:
    """The config dataclass as a `Struct` (fields in declaration order)."""
    out = struct_pb2.Struct()
    out.update(dataclasses.asdict(config))  # type: ignore[call-overload]
    return out


def from_struct(cls: type[Any], struct: struct_pb2.Struct, field: str = "custom") -> Any:
    """The config `struct` holds, as a `cls` instance.

    Raises:
        InvalidConfigError: What does not fit `cls`, each problem with its field path.
    """
    data = json_format.MessageToDict(struct)
    problems: list[Problem] = []
    value = _dataclass(cls, data, field, problems)
    if problems:
        raise InvalidConfigError(problems)
    return value


class InvalidConfigError(PlaitValueError):
    """A configuration does not fit its dataclass.

    Attributes:
        problems: ``(field path, message)`` pairs.
    """

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{f}: {m}" for f, m in problems))
        self.problems = problems


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def _dataclass(cls: type[Any], data: object, path: str, problems: list[Problem]) -> Any:
    if not isinstance(data, dict):
        problems.append((path, f"expected an object, got {_kind(data)}"))
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            problems.append((f"{path}.{key}", f"unknown field; fields are {', '.join(fields)}"))
    values: dict[str, Any] = {}
    before = len(problems)
    for name, f in fields.items():
        if name not in data:
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required:
                problems.append((f"{path}.{name}", "is required"))
            continue
        values[name] = _value(hints[name], data[name], f"{path}.{name}", problems)
    if len(problems) > before:
        return None
    return cls(**values)


def _value(hint: Any, value: object, path: str, problems: list[Problem]) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _value(inner[0], value, path, problems)
    check = _SCALARS.get(hint)
    if check is not None:
        return check(value, path, problems)
    if origin is typing.Literal:
        if value not in args:
            allowed = ", ".join(repr(a) for a in args)
            problems.append((path, f"must be one of {allowed}, got {value!r}"))
        return value
    if origin is list:
        if not isinstance(value, list):
            problems.append((path, f"expected a list, got {_kind(value)}"))
            return None
        return [_value(args[0], v, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            problems.append((path, f"expected an object, got {_kind(value)}"))
            return None
        return {k: _value(args[1], v, f"{path}.{k}", problems) for k, v in value.items()}
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _dataclass(hint, value, path, problems)
    problems.append((path, f"the config declares an unsupported type {hint!r}"))
    return None


def _str(value: object, path: str, problems: list[Problem]) -> object:
    if not isinstance(value, str):
        problems.append((path, f"expected a string, got {_kind(value)}"))
    return value


def _bool(value: object, path: str, problems: list[Problem]) -> object:
    if not isinstance(value, bool):
        problems.append((path, f"expected true or false, got {_kind(value)}"))
    return value


def _float(value: object, path: str, problems: list[Problem]) -> object:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        problems.append((path, f"expected a number, got {_kind(value)}"))
        return value
    return float(value)


def _int(value: object, path: str, problems: list[Problem]) -> object:
    # A Struct holds numbers as doubles: 3.0 is the int 3.
    whole = isinstance(value, int) or (
        isinstance(value, float) and math.isfinite(value) and value.is_integer()
    )
    if isinstance(value, bool) or not whole:
        problems.append((path, f"expected an integer, got {value!r}"))
        return value
    return int(value)  # type: ignore[call-overload]


_SCALARS: dict[Any, Callable[[object, str, list[Problem]], object]] = {
    str: _str,
    bool: _bool,
    float: _float,
    int: _int,
}

__all__ = ["InvalidConfigError", "Problem", "from_struct", "to_struct"]
