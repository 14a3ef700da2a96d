"""Simple scalars: int, float, str, bool, bytes and None."""

from __future__ import annotations

import base64
import numbers
import operator
from typing import Any

from plait._types.core import (
    NONE_WORDS,
    ST,
    Conv,
    Literal,
    bad,
    bad_lit,
    describe,
    simple,
)


def int_conv() -> Conv:
    """int: a 64-bit integer; bool is refused, numpy-like integers pass through __index__."""
    lt = simple(ST.SIMPLE_TYPE_INTEGER)

    def fill(v: Any, lit: Literal) -> None:
        if type(v) is not int:
            if isinstance(v, bool) or not hasattr(type(v), "__index__"):
                raise bad(lt, v)
            v = operator.index(v)
        try:
            lit.scalar.primitive.integer = v
        except ValueError:
            raise bad(lt, v, "out of range for a 64-bit integer") from None

    def to_py(lit: Literal) -> Any:
        p = lit.scalar.primitive
        if p.WhichOneof("value") != "integer":
            raise bad_lit(lt, lit)
        return p.integer

    def from_json(v: Any) -> int:
        if type(v) is not int:
            raise ValueError(f"expected an integer, got {describe(v)}")
        return v

    return Conv(
        lt, fill, to_py, lambda v: type(v) is int, from_json, parse=lambda t: int(t.strip())
    )


def float_conv() -> Conv:
    """float: a double; any real number (not bool) is accepted, an integer literal is read."""
    lt = simple(ST.SIMPLE_TYPE_FLOAT)

    def fill(v: Any, lit: Literal) -> None:
        if type(v) is not float:
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise bad(lt, v)
            v = float(v)
        lit.scalar.primitive.float_value = v

    def to_py(lit: Literal) -> Any:
        p = lit.scalar.primitive
        kind = p.WhichOneof("value")
        if kind == "float_value":
            return p.float_value
        if kind == "integer":
            return float(p.integer)
        raise bad_lit(lt, lit)

    def from_json(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"expected a number, got {describe(v)}")
        return float(v)

    return Conv(lt, fill, to_py, lambda v: type(v) is float, from_json, parse=float)


def str_conv() -> Conv:
    """str, taken verbatim from the command line."""
    lt = simple(ST.SIMPLE_TYPE_STRING)

    def fill(v: Any, lit: Literal) -> None:
        if type(v) is not str and not isinstance(v, str):
            raise bad(lt, v)
        lit.scalar.primitive.string_value = v

    def to_py(lit: Literal) -> Any:
        p = lit.scalar.primitive
        if p.WhichOneof("value") != "string_value":
            raise bad_lit(lt, lit)
        return p.string_value

    def from_json(v: Any) -> str:
        if not isinstance(v, str):
            raise ValueError(f"expected a string, got {describe(v)}")
        return v

    return Conv(lt, fill, to_py, lambda v: type(v) is str, from_json, parse=lambda t: t)


_TRUE = frozenset({"true", "1", "yes", "y", "on"})
_FALSE = frozenset({"false", "0", "no", "n", "off"})


def _parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise ValueError("expected true/false, yes/no or 1/0")


def bool_conv() -> Conv:
    """bool; the command line also takes yes/no, on/off and 1/0."""
    lt = simple(ST.SIMPLE_TYPE_BOOLEAN)

    def fill(v: Any, lit: Literal) -> None:
        if type(v) is not bool:
            raise bad(lt, v)
        lit.scalar.primitive.boolean = v

    def to_py(lit: Literal) -> Any:
        p = lit.scalar.primitive
        if p.WhichOneof("value") != "boolean":
            raise bad_lit(lt, lit)
        return p.boolean

    def from_json(v: Any) -> bool:
        if type(v) is not bool:
            raise ValueError(f"expected true or false, got {describe(v)}")
        return v

    return Conv(lt, fill, to_py, lambda v: type(v) is bool, from_json, parse=_parse_bool)


def bytes_conv() -> Conv:
    """bytes (bytearray and memoryview accepted); base64 in JSON, UTF-8 text on the CLI."""
    lt = simple(ST.SIMPLE_TYPE_BINARY)

    def fill(v: Any, lit: Literal) -> None:
        if type(v) is not bytes:
            if not isinstance(v, (bytes, bytearray, memoryview)):
                raise bad(lt, v)
            v = bytes(v)
        lit.scalar.binary.value = v

    def to_py(lit: Literal) -> Any:
        s = lit.scalar
        if s.WhichOneof("value") != "binary":
            raise bad_lit(lt, lit)
        return s.binary.value

    def from_json(v: Any) -> bytes:
        # JSON has no bytes: base64, as in protobuf's JSON mapping.
        if not isinstance(v, str):
            raise ValueError(f"expected a base64 string, got {describe(v)}")
        return base64.b64decode(v, validate=True)

    return Conv(
        lt, fill, to_py, lambda v: type(v) is bytes, from_json, parse=lambda t: t.encode("utf-8")
    )


def none_conv() -> Conv:
    """None: only None fits; "none", "null" or nothing on the command line."""
    lt = simple(ST.SIMPLE_TYPE_NONE)

    def fill(v: Any, lit: Literal) -> None:
        if v is not None:
            raise bad(lt, v)
        lit.scalar.none_value.SetInParent()

    def to_py(lit: Literal) -> Any:
        if lit.scalar.WhichOneof("value") != "none_value":
            raise bad_lit(lt, lit)
        return None

    def from_json(v: Any) -> None:
        if v is not None:
            raise ValueError(f"expected null, got {describe(v)}")

    def parse(text: str) -> None:
        if text.strip().lower() not in NONE_WORDS | {""}:
            raise ValueError("expected none or null")

    return Conv(lt, fill, to_py, lambda v: v is None, from_json, parse=parse)
