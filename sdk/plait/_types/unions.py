"""Unions (`A | B`, `Optional[T]`): the literal names the variant that holds the value."""

from __future__ import annotations

from typing import Any

from plaitidl.core.v1 import types_pb2

from plait._errors import PlaitValueError
from plait._types.core import (
    NONE_WORDS,
    ST,
    Conv,
    Literal,
    LiteralType,
    MismatchError,
    UnsupportedError,
    bad,
    bad_lit,
    simple,
    type_repr,
)

_STR = simple(ST.SIMPLE_TYPE_STRING)
_PARSE_ERRORS = (ValueError, TypeError, PlaitValueError)


def _check_distinct(variants: list[Conv]) -> None:
    for i, a in enumerate(variants):
        for b in variants[:i]:
            if a.lt == b.lt:
                raise UnsupportedError(
                    None, f"two variants have the same plait type {type_repr(a.lt)}"
                )


def _fill_first(variants: list[Conv], v: Any, lit: Literal) -> bool:
    """Fill with the first variant that fits, exact matches first; False when none fits.

    Raises:
        MismatchError: No variant fits, and the one matching the value's own type complained
            (its complaint is the useful one: `xs[3]: expected int` rather than "fits none").
    """
    u = lit.scalar.union
    target = u.value
    first_error: MismatchError | None = None
    tried: list[Conv] = []
    for c in variants:
        if c.exact(v):
            try:
                c.fill(v, target)
            except MismatchError as e:
                target.Clear()
                tried.append(c)
                first_error = first_error or e
                continue
            u.type.CopyFrom(c.lt)
            return True
    for c in variants:
        if c in tried:
            continue
        try:
            c.fill(v, target)
        except MismatchError:
            target.Clear()
            continue
        u.type.CopyFrom(c.lt)
        return True
    if first_error is not None:
        raise first_error
    return False


def union_conv(variants: list[Conv]) -> Conv:
    """A union of distinct variants; None is a variant like any other."""
    _check_distinct(variants)
    lt = LiteralType(union_type=types_pb2.UnionType(variants=[c.lt for c in variants]))
    has_none = any(c.lt.simple == ST.SIMPLE_TYPE_NONE for c in variants)
    # str would accept any text verbatim, so it is tried last; None is handled by its words.
    parse_order = [c for c in variants if c.lt != _STR and c.lt.simple != ST.SIMPLE_TYPE_NONE]
    parse_order += [c for c in variants if c.lt == _STR]

    def fill(v: Any, lit: Literal) -> None:
        if not _fill_first(variants, v, lit):
            raise bad(lt, v)

    def to_py(lit: Literal) -> Any:
        s = lit.scalar
        if s.WhichOneof("value") == "union":
            u = s.union
            for c in variants:
                if c.lt == u.type:
                    return c.to_py(u.value)
            inner = u.value
        else:
            # Tolerate an unwrapped literal (from a client that sent the bare variant).
            inner = lit
        for c in variants:
            try:
                return c.to_py(inner)
            except MismatchError:
                continue
        raise bad_lit(lt, lit)

    def from_json(v: Any) -> Any:
        for c in variants:
            try:
                return c.from_json(v)
            except _PARSE_ERRORS:
                continue
        raise ValueError(f"{v!r} fits none of {type_repr(lt)}")

    def parse(text: str) -> Any:
        if has_none and text.strip().lower() in NONE_WORDS:
            return None
        for c in parse_order:
            try:
                return c.parse(text)
            except _PARSE_ERRORS:
                continue
        raise ValueError(f"fits none of {type_repr(lt)}")

    def exact(v: Any) -> bool:
        return any(c.exact(v) for c in variants)

    return Conv(lt, fill, to_py, exact, from_json, parse=parse)
