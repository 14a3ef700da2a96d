"""What every servicer needs of a request: required fields and page tokens."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from plaitidl.core.v1 import identifier_pb2

from plait_engine.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def require(value: object, field: str, what: str) -> None:
    """Raise `InvalidArgument` naming `field` when `value` is empty."""
    if not value:
        raise InvalidArgument(
            f"{field} is required", [FieldViolation(field, f"{what} is required")]
        )


def require_id(request: Any, field: str = "id") -> identifier_pb2.Identifier:
    """The template identifier of a Get request; its name is required."""
    require(request.HasField(field), field, "an identifier")
    ident: identifier_pb2.Identifier = getattr(request, field)
    require(ident.name, f"{field}.name", "a name")
    return ident


def page_size(size: int) -> int:
    """The number of items a list request asks for: 0 means 100; at most 1000.

    Raises:
        InvalidArgument: A negative size.
    """
    if size < 0:
        raise InvalidArgument(
            "page_size must not be negative", [FieldViolation("page_size", "must be >= 0")]
        )
    return min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_token(kind: str, position: str) -> str:
    """An opaque page token: where the next page starts, for one kind of listing."""
    return base64.urlsafe_b64encode(f"{kind}:{position}".encode()).decode()


def decode_token(kind: str, token: str) -> str:
    """The position a token of `kind` holds ("" for no token).

    Raises:
        InvalidArgument: A token this server did not issue for this listing.
    """
    if not token:
        return ""
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        got, sep, position = text.partition(":")
        if got != kind or not sep:
            raise ValueError(text)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument(
            "page_token is not a token this server issued for this listing",
            [FieldViolation("page_token", "pass a next_page_token from a previous response")],
        ) from None
    return position


def decode_int_token(kind: str, token: str) -> int:
    """A token holding a non-negative integer (0 for no token)."""
    position = decode_token(kind, token)
    if not position:
        return 0
    if not position.isdigit():
        raise InvalidArgument(
            "page_token is not a token this server issued for this listing",
            [FieldViolation("page_token", "pass a next_page_token from a previous response")],
        )
    return int(position)
