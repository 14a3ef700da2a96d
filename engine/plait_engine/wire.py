"""Protobuf's wire format by hand, for the few hot paths that write many small messages.

Building a message through the Python protobuf API costs microseconds per field; the engine
writes several events and records per node, so its hot paths assemble the bytes of their
common messages from parts serialized once (see `plait_engine.scheduler.events`) and splice
them. Everything written here parses to the message the API would build (the tests compare).
"""

from __future__ import annotations

_SMALL = [bytes([i]) for i in range(128)]
_MASK64 = (1 << 64) - 1


def varint(n: int) -> bytes:
    """`n` as a protobuf varint (a negative int64 as its two's complement, ten bytes)."""
    if 0 <= n < 128:
        return _SMALL[n]
    n &= _MASK64
    out = bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at `pos` in `data` and the position after it.

    Raises:
        ValueError: The data ends inside the varint.
    """
    value = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 128:
            return value, pos
        shift += 7


def field(key: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its key, the payload's length, the payload."""
    n = len(payload)
    return key + (_SMALL[n] if n < 128 else varint(n)) + payload


def uint_field(key: bytes, value: int) -> bytes:
    """A varint field, omitted when 0 (as proto3 writes it)."""
    return key + varint(value) if value else b""


def timestamp(seconds: int, nanos: int) -> bytes:
    """A serialized `google.protobuf.Timestamp` (empty for the zero time)."""
    return uint_field(b"\x08", seconds) + uint_field(b"\x10", nanos)


def timestamp_ns(ns: int) -> bytes:
    """A serialized `Timestamp` of `ns` nanoseconds since the epoch (as `FromNanoseconds`)."""
    return timestamp(ns // 1_000_000_000, ns % 1_000_000_000)


__all__ = ["field", "read_varint", "timestamp", "timestamp_ns", "uint_field", "varint"]
