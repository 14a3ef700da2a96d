"""`LiteralType`s to converters, for interfaces whose Python hints are not at hand.

A registered workflow's interface (fetched from an engine, written by another SDK) says only
`LiteralType`s. The converters built here follow the same per-kind rules as the hint-based
ones; what has no Python class comes back plainly: records as dicts, enums as their value
strings. Compiled once per distinct type.
"""

from __future__ import annotations

from collections.abc import Callable

from plait._files import Directory, File
from plait._types.blobs import blob_conv
from plait._types.containers import list_conv, map_conv
from plait._types.core import BT, ST, Conv, LiteralType, UnsupportedError
from plait._types.enums import enum_values_conv
from plait._types.records import Field, plain_shape, record_conv
from plait._types.scalars import bool_conv, bytes_conv, float_conv, int_conv, none_conv, str_conv
from plait._types.structs import struct_conv
from plait._types.times import datetime_conv, timedelta_conv
from plait._types.unions import union_conv

_SIMPLE: dict[int, Callable[[], Conv]] = {
    ST.SIMPLE_TYPE_NONE: none_conv,
    ST.SIMPLE_TYPE_INTEGER: int_conv,
    ST.SIMPLE_TYPE_FLOAT: float_conv,
    ST.SIMPLE_TYPE_STRING: str_conv,
    ST.SIMPLE_TYPE_BOOLEAN: bool_conv,
    ST.SIMPLE_TYPE_DATETIME: datetime_conv,
    ST.SIMPLE_TYPE_DURATION: timedelta_conv,
    ST.SIMPLE_TYPE_BINARY: bytes_conv,
    ST.SIMPLE_TYPE_STRUCT: struct_conv,
}
# Distinct types seen, by their serialized form (messages are not hashable). Bounded: an
# engine sends the few types of its interfaces, not an unbounded variety.
_CACHE: dict[bytes, Conv] = {}
_CACHE_MAX = 2048


def _simple(lt: LiteralType) -> Conv:
    factory = _SIMPLE.get(lt.simple)
    if factory is None:
        raise UnsupportedError(lt, "the simple type is unspecified")
    return factory()


def _blob(lt: LiteralType) -> Conv:
    multipart = lt.blob.dimensionality == BT.BLOB_DIMENSIONALITY_MULTIPART
    return blob_conv(Directory if multipart else File, lt.blob.format)


def _record(lt: LiteralType) -> Conv:
    rec = lt.record_type
    fields = [Field(f.name, build(f.type)) for f in rec.fields]
    return record_conv(plain_shape(rec.name, fields))


_BY_KIND: dict[str, Callable[[LiteralType], Conv]] = {
    "simple": _simple,
    "collection_type": lambda lt: list_conv(build(lt.collection_type)),
    "map_value_type": lambda lt: map_conv(build(lt.map_value_type)),
    "blob": _blob,
    "enum_type": lambda lt: enum_values_conv(lt.enum_type.values),
    "union_type": lambda lt: union_conv([build(v) for v in lt.union_type.variants]),
    "record_type": _record,
}


def build(lt: LiteralType) -> Conv:
    """The converter of `lt` (not cached: see `compiled`).

    Raises:
        UnsupportedError: `lt`, or a type nested in it, is unset or malformed.
    """
    kind = lt.WhichOneof("type")
    if kind is None:
        raise UnsupportedError(lt, "the type is not set")
    conv = _BY_KIND[kind](lt)
    # The declared type, whole (its tag, a blob's format): a union names its variant by it.
    declared = LiteralType()
    declared.CopyFrom(lt)
    conv.lt = declared
    return conv


def compiled(lt: LiteralType) -> Conv:
    """The converter of `lt`, compiled once per distinct type.

    Raises:
        UnsupportedError: `lt`, or a type nested in it, is unset or malformed.
    """
    key = lt.SerializeToString(deterministic=True)
    conv = _CACHE.get(key)
    if conv is None:
        conv = build(lt)
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[key] = conv
    return conv
