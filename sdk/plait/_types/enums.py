"""Enums: a string literal restricted to the enum's values.

With the Python class at hand (a hint), values come back as its members and the command line
also takes member names; from a bare `EnumType` they come back as the value strings.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Any

from plaitidl.core.v1 import types_pb2

from plait._types.core import Conv, Literal, LiteralType, UnsupportedError, bad, bad_lit


def enum_class_conv(cls: type[enum.Enum]) -> Conv:
    """An Enum subclass whose values are all str."""
    members = list(cls)
    wrong = [m for m in members if not isinstance(m.value, str)]
    if wrong:
        raise UnsupportedError(cls, f"enum values must be str, {wrong[0]!r} is not")

    def decode(text: str) -> Any:
        return cls(text)

    def by_name(text: str) -> Any:
        return cls[text] if text in cls.__members__ else None

    return enum_conv([m.value for m in members], cls, decode, by_name)


def enum_values_conv(values: Sequence[str]) -> Conv:
    """An `EnumType` without its Python class: any Enum member or str of its values fits."""
    return enum_conv(list(values), enum.Enum, str, lambda text: None)


def enum_conv(
    values: list[str],
    cls: type[enum.Enum],
    decode: Callable[[str], Any],
    by_name: Callable[[str], Any],
) -> Conv:
    """The rules both kinds of enum share.

    Args:
        values: The allowed values, in order.
        cls: Members of this class fit (their value is checked); `enum.Enum` for any enum.
        decode: Turns an allowed value into the Python value given back.
        by_name: Turns a member name into the Python value, or None (command line and JSON).
    """
    allowed = frozenset(values)
    lt = LiteralType(enum_type=types_pb2.EnumType(values=values))

    def fill(v: Any, lit: Literal) -> None:
        if isinstance(v, cls) and v.value in allowed:
            v = v.value
        elif not (isinstance(v, str) and v in allowed):
            raise bad(lt, v)
        lit.scalar.primitive.string_value = v

    def to_py(lit: Literal) -> Any:
        p = lit.scalar.primitive
        if p.WhichOneof("value") != "string_value":
            raise bad_lit(lt, lit)
        if p.string_value not in allowed:
            raise bad_lit(lt, lit, f"{p.string_value!r} is not a value of the enum")
        return decode(p.string_value)

    def from_json(v: Any) -> Any:
        if isinstance(v, str):
            if v in allowed:
                return decode(v)
            found = by_name(v)
            if found is not None:
                return found
        raise ValueError(f"expected one of {values}, got {v!r}")

    def exact(v: Any) -> bool:
        return isinstance(v, cls) and v.value in allowed

    return Conv(lt, fill, to_py, exact, from_json, parse=lambda t: from_json(t.strip()))
