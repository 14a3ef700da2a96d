"""`plait.File` and `plait.Directory`: blob literals, carried by URI."""

from __future__ import annotations

from typing import Any

from plait._errors import PlaitValueError
from plait._files import Directory, File, is_absolute_uri
from plait._types.core import BT, Conv, Literal, LiteralType, bad, bad_lit, describe


def blob_conv(cls: type[File] | type[Directory], fmt: str = "") -> Conv:
    """A File (single blob) or a Directory (multipart), optionally of a declared format.

    A value from the user's own code may be a plain path (made absolute now, where the user's
    intent is clear); a literal arriving from elsewhere must carry a URI with a scheme or an
    absolute path, never a relative one.
    """
    dim = BT.BLOB_DIMENSIONALITY_SINGLE if cls is File else BT.BLOB_DIMENSIONALITY_MULTIPART
    lt = LiteralType(blob=BT(dimensionality=dim, format=fmt))

    def make(v: Any) -> File | Directory:
        try:
            return cls(v)
        except PlaitValueError as e:
            raise bad(lt, v, str(e)) from None

    def fill(v: Any, lit: Literal) -> None:
        if not isinstance(v, cls):
            # A plain path or URI is accepted where a File/Directory is declared.
            if not isinstance(v, str) and not hasattr(v, "__fspath__"):
                raise bad(lt, v)
            v = make(v)
        blob = lit.scalar.blob
        blob.type.dimensionality = dim
        if fmt:
            blob.type.format = fmt
        blob.uri = v.uri

    def to_py(lit: Literal) -> Any:
        s = lit.scalar
        if s.WhichOneof("value") != "blob":
            raise bad_lit(lt, lit)
        got = s.blob.type.dimensionality
        if got not in (dim, BT.BLOB_DIMENSIONALITY_UNSPECIFIED):
            raise bad_lit(lt, lit, "file/directory mismatch")
        uri = s.blob.uri
        if not is_absolute_uri(uri):
            raise bad_lit(
                lt,
                lit,
                f"relative URI {uri!r} refused: a {cls.__name__} must arrive as an absolute "
                "path or a URI with a scheme (file://, s3://, ...)",
            )
        return cls(uri)

    def from_json(v: Any) -> File | Directory:
        if not isinstance(v, str):
            raise ValueError(f"expected a path or URI string, got {describe(v)}")
        return cls(v)

    return Conv(lt, fill, to_py, lambda v: isinstance(v, cls), from_json, parse=cls)
