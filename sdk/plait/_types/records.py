"""Records: dataclasses with a hint, or dicts (and any dataclass) from a bare `RecordType`.

The rules are shared: fields in declaration order, errors naming `.field`, a missing field
tolerated only when the reader has a default for it (records evolve), extra fields in a
literal ignored for the same reason. A `RecordShape` says how one side reads and builds
Python values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from plaitidl.core.v1 import types_pb2

from plait._types.core import Conv, Literal, LiteralType, MismatchError, bad, bad_lit, describe


@dataclasses.dataclass(frozen=True)
class Field:
    """One field of a record.

    Attributes:
        name: The field's name.
        conv: Its value's converter.
        required: A literal or JSON object without it is refused (no default to fall back on).
        init: Passed to the constructor (False: set afterwards, as dataclasses' init=False).
    """

    name: str
    conv: Conv
    required: bool = True
    init: bool = True


@dataclasses.dataclass(frozen=True)
class RecordShape:
    """How Python values of one record type are recognised, read and built.

    Attributes:
        name: The record type's name (a dataclass's qualified name).
        fields: The fields, in declaration order.
        check: Whether a value can be written as this record: None when it can, else why not
            ("" when its type is simply wrong).
        read: Reads one field of an accepted value; raises KeyError when it has none.
        build: Builds the Python value from field values by name.
        exact: Whether a value is of this record's own Python type (see `Conv.exact`).
    """

    name: str
    fields: Sequence[Field]
    check: Callable[[Any], str | None]
    read: Callable[[Any, str], Any]
    build: Callable[[Mapping[str, Any]], Any]
    exact: Callable[[Any], bool]


def record_type(name: str, fields: Sequence[Field]) -> LiteralType:
    """The `RecordType` of these fields."""
    return LiteralType(
        record_type=types_pb2.RecordType(
            name=name,
            fields=[types_pb2.RecordField(name=f.name, type=f.conv.lt) for f in fields],
        )
    )


def _reader(shape: RecordShape, lt: LiteralType) -> Callable[[Literal], Any]:
    fields = shape.fields

    def to_py(lit: Literal) -> Any:
        if lit.WhichOneof("value") != "record":
            raise bad_lit(lt, lit)
        got = {f.name: f.value for f in lit.record.fields}
        values: dict[str, Any] = {}
        for f in fields:
            flit = got.get(f.name)
            if flit is None:
                if not f.required:
                    continue
                raise bad_lit(lt, lit, f"field {f.name!r} is missing")
            try:
                values[f.name] = f.conv.to_py(flit)
            except MismatchError as e:
                e.path.append(f".{f.name}")
                raise
        return shape.build(values)

    return to_py


def _json_reader(shape: RecordShape) -> Callable[[Any], Any]:
    known = {f.name: f for f in shape.fields}

    def from_json(v: Any) -> Any:
        if not isinstance(v, dict):
            raise ValueError(f"expected a JSON object for {shape.name}, got {describe(v)}")
        unknown = sorted(set(v) - set(known))
        if unknown:
            raise ValueError(f"{shape.name} has no field {unknown[0]!r}")
        missing = [f.name for f in shape.fields if f.init and f.required and f.name not in v]
        if missing:
            raise ValueError(f"{shape.name} field {missing[0]!r} is missing")
        return shape.build({k: known[k].conv.from_json(x) for k, x in v.items()})

    return from_json


def record_conv(shape: RecordShape) -> Conv:
    """A record of `shape`'s fields."""
    lt = record_type(shape.name, shape.fields)
    plan = [(f.name, f.conv.fill) for f in shape.fields]
    check, read = shape.check, shape.read

    def fill(v: Any, lit: Literal) -> None:
        refused = check(v)
        if refused is not None:
            raise bad(lt, v, refused)
        rec = lit.record
        rec.SetInParent()
        add = rec.fields.add
        for name, ffill in plan:
            try:
                value = read(v, name)
            except KeyError:
                raise bad(lt, v, f"field {name!r} is missing") from None
            field = add()
            field.name = name
            try:
                ffill(value, field.value)
            except MismatchError as e:
                e.path.append(f".{name}")
                raise

    return Conv(lt, fill, _reader(shape, lt), shape.exact, _json_reader(shape))


def dataclass_shape(cls: type[Any], fields: Sequence[Field]) -> RecordShape:
    """Records read from and built as instances of the dataclass `cls`."""

    def build(values: Mapping[str, Any]) -> Any:
        obj = cls(**{f.name: values[f.name] for f in fields if f.init and f.name in values})
        for f in fields:
            if not f.init and f.name in values:
                # Frozen dataclasses refuse setattr; the record still carries the field.
                object.__setattr__(obj, f.name, values[f.name])
        return obj

    return RecordShape(
        name=cls.__qualname__,
        fields=fields,
        check=lambda v: None if isinstance(v, cls) else "",
        read=getattr,
        build=build,
        exact=lambda v: type(v) is cls,
    )


def _read_any(v: Any, name: str) -> Any:
    if isinstance(v, Mapping):
        return v[name]
    try:
        return getattr(v, name)
    except AttributeError:
        raise KeyError(name) from None


def plain_shape(name: str, fields: Sequence[Field]) -> RecordShape:
    """Records without their Python class.

    Written from a dict (no unknown keys) or any dataclass with those fields; read as a dict.
    """
    names = frozenset(f.name for f in fields)

    def check(v: Any) -> str | None:
        if isinstance(v, Mapping):
            unknown = sorted(repr(k) for k in v if k not in names)
            return f"{name} has no field {unknown[0]}" if unknown else None
        return None if _is_instance(v) else ""

    def exact(v: Any) -> bool:
        if isinstance(v, Mapping):
            return set(v) == names
        return _is_instance(v) and type(v).__qualname__ == name

    return RecordShape(name=name, fields=fields, check=check, read=_read_any,
                       build=dict, exact=exact)  # fmt: skip


def _is_instance(v: Any) -> bool:
    return dataclasses.is_dataclass(v) and not isinstance(v, type)
