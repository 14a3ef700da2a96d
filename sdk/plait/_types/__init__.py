"""The SDK type engine: Python type hints to `LiteralType`, Python values to and from `Literal`.

Each supported type is compiled once into a converter (`core.Conv`), a bundle of closures that
convert values of that type (to a literal, from a literal, from JSON, from command-line text),
so the per-value work on the hot path (an engine converting ints) is one cache lookup plus one
closure call. Converters are built from a Python hint (`from_hint`) or, where no hint is at
hand (a registered workflow's interface), from a `LiteralType` (`from_type`); both build them
with the same per-kind modules, so values convert by the same rules and fail with the same
messages either way.

Supported hints: int, float, str, bool, bytes, datetime.datetime, datetime.timedelta, None,
`Optional[T]` / `T | None`, `Union[A, B]` / `A | B`, `list[T]`, `dict[str, T]`,
`dict[str, Any]`, Enum subclasses with str values, dataclasses, `plait.File`,
`plait.Directory`, and `Annotated[T, ...]` (as T).
"""

from __future__ import annotations

from collections.abc import Mapping

from plaitidl.core.v1 import interface_pb2, literals_pb2, types_pb2

from plait._errors import PlaitTypeError, PlaitValueError
from plait._types import from_hint, from_type
from plait._types.core import Conv, MismatchError, UnsupportedError, type_repr

__all__ = [
    "fill_literal",
    "literal_type",
    "parse_text",
    "parse_text_by_type",
    "to_literal",
    "to_literal_by_type",
    "to_literal_map_by_type",
    "to_python",
    "to_python_by_type",
    "type_repr",
]


def _by_hint(hint: object, where: str) -> Conv:
    try:
        return from_hint.sub(hint, ())
    except UnsupportedError as e:
        raise PlaitTypeError(e.format(where, hint)) from None


def _by_type(lt: types_pb2.LiteralType, where: str) -> Conv:
    try:
        return from_type.compiled(lt)
    except UnsupportedError as e:
        raise PlaitTypeError(e.format(where, lt)) from None


def _fill(conv: Conv, target: literals_pb2.Literal, value: object, var: str) -> None:
    try:
        conv.fill(value, target)
    except MismatchError as e:
        target.Clear()
        raise PlaitTypeError(e.format(var)) from None


def _read(conv: Conv, literal: literals_pb2.Literal, var: str) -> object:
    try:
        return conv.to_py(literal)
    except MismatchError as e:
        raise PlaitTypeError(e.format(var)) from None


def _parse(conv: Conv, text: str, var: str) -> object:
    try:
        return conv.parse(text)
    except (ValueError, TypeError, OverflowError, PlaitValueError) as e:
        # json.JSONDecodeError and binascii.Error are ValueErrors too.
        raise PlaitValueError(
            f"{var}: cannot parse {text!r} as {type_repr(conv.lt)}: {e}"
        ) from None


# -- by Python hint ------------------------------------------------------------------------------


def literal_type(hint: object, *, where: str) -> types_pb2.LiteralType:
    """Return the LiteralType for a Python type hint.

    Args:
        hint: A type hint such as `int`, `list[str]` or a dataclass.
        where: What the hint annotates, for error messages, e.g.
            "task 'examples.f', input 'x'".

    Returns:
        A new LiteralType message (the caller may modify it).

    Raises:
        PlaitTypeError: The hint is not supported; the message names `where` and the hint.
    """
    lt = types_pb2.LiteralType()
    lt.CopyFrom(_by_hint(hint, where).lt)
    return lt


def fill_literal(target: literals_pb2.Literal, value: object, hint: object, *, var: str) -> None:
    """Like `to_literal`, writing into an empty `target` (saves a copy on hot paths)."""
    _fill(_by_hint(hint, var), target, value, var)


def to_literal(value: object, hint: object, *, var: str) -> literals_pb2.Literal:
    """Convert a Python value to a Literal of the type `hint` declares.

    Args:
        value: The value.
        hint: The declared type hint.
        var: The variable's name (or a phrase) for error messages.

    Raises:
        PlaitTypeError: The hint is unsupported, or the value does not fit it; the message
            names `var`, the expected type and the value's type.
    """
    lit = literals_pb2.Literal()
    _fill(_by_hint(hint, var), lit, value, var)
    return lit


def to_python(literal: literals_pb2.Literal, hint: object, *, var: str) -> object:
    """Convert a Literal back to a Python value of the type `hint` declares.

    Datetimes come back timezone-aware in UTC; dataclasses, enums, `File` and `Directory` are
    rebuilt; `dict[str, Any]` comes back as plain JSON-like data. A `File` or `Directory`
    literal must carry an absolute path or a URI with a scheme.

    Args:
        literal: The literal.
        hint: The declared type hint.
        var: The variable's name (or a phrase) for error messages.

    Raises:
        PlaitTypeError: The hint is unsupported or the literal does not carry a value of it.
    """
    return _read(_by_hint(hint, var), literal, var)


def parse_text(text: str, hint: object, *, var: str) -> object:
    """Parse a command-line argument into a value of the type `hint` declares.

    int and float as Python spells them; str verbatim; bool as true/false, yes/no, on/off or
    1/0; datetime as ISO 8601 (naive means UTC); timedelta as seconds or like "1h30m", "90s",
    "01:30:00", "PT1H30M"; bytes as the UTF-8 text; list, dict and dataclass as JSON (a list
    also as "1,2,3"); Enum by value (or member name); Optional as "none"/"null" for None;
    unions try each variant, str last; File and Directory as a path or URI.

    Raises:
        PlaitTypeError: The hint is unsupported.
        PlaitValueError: The text does not parse; the message names `var`.
    """
    return _parse(_by_hint(hint, var), text, var)


# -- by LiteralType (no Python hints at hand) ----------------------------------------------------


def to_literal_by_type(
    value: object, lt: types_pb2.LiteralType, *, var: str
) -> literals_pb2.Literal:
    """Convert a Python value to a Literal of type `lt`, by the rules of `to_literal`.

    A record is written from a dict (no unknown keys) or from a dataclass with its fields; an
    enum from a member or a str of its values.

    Raises:
        PlaitTypeError: `lt` is unset, or the value does not fit it; the message names `var`.
    """
    lit = literals_pb2.Literal()
    _fill(_by_type(lt, var), lit, value, var)
    return lit


def to_literal_map_by_type(
    variables: interface_pb2.VariableMap, values: Mapping[str, object]
) -> literals_pb2.LiteralMap:
    """Python values by name to a `LiteralMap`, typed by an interface's variables.

    Raises:
        PlaitTypeError: An unknown name, or a value that does not fit its variable's type.
    """
    types = {v.name: v.type for v in variables.variables}
    out = literals_pb2.LiteralMap()
    for name, value in values.items():
        if name not in types:
            raise PlaitTypeError(f"unknown input {name!r}; inputs are {sorted(types)}")
        _fill(_by_type(types[name], name), out.literals[name], value, name)
    return out


def to_python_by_type(
    literal: literals_pb2.Literal, lt: types_pb2.LiteralType, *, var: str
) -> object:
    """Convert a Literal of type `lt` to a Python value, by the rules of `to_python`.

    What has no Python class here comes back plainly: records as dicts, enums as their value
    strings; the rest as `to_python` gives it (File, Directory, aware datetimes, ...).

    Raises:
        PlaitTypeError: `lt` is unset or the literal does not carry a value of it.
    """
    return _read(_by_type(lt, var), literal, var)


def parse_text_by_type(text: str, lt: types_pb2.LiteralType, *, var: str) -> object:
    """Parse a command-line argument into a value of type `lt`, as `parse_text` does.

    Raises:
        PlaitTypeError: `lt` is unset.
        PlaitValueError: The text does not parse; the message names `var`.
    """
    return _parse(_by_type(lt, var), text, var)
