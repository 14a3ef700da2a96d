"""Large payloads live in the blob store; the store keeps a pointer.

Serialized literal maps, compiled specs and errors above a threshold are written to the blob
store, and the store row holds ``plait-blob:<uri>`` instead. A serialized `LiteralMap`,
`DynamicJobSpec` or `ExecutionError` never starts with that prefix (its first byte would be the
tag of field 14, which none of them has), so the two cannot be confused.

Packing computes the pointer without I/O: the scheduler writes the pending blobs on a thread
just before the commit that refers to them, so its loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

from plait_engine.blob.local import BlobStore

_MARK = b"plait-blob:"


@dataclass(frozen=True, slots=True)
class PendingBlob:
    """A payload to write before the commit whose rows point at it."""

    parts: tuple[str, ...]
    data: bytes


class Payloads:
    """Packs large payloads into the blob store and unpacks pointers.

    Args:
        blobs: Where payloads above the threshold go.
        threshold: Payloads up to this many bytes stay inline.
    """

    def __init__(self, blobs: BlobStore, threshold: int = 256 * 1024) -> None:
        self.blobs = blobs
        self.threshold = threshold

    def pack(self, data: bytes, *key: str) -> tuple[bytes, PendingBlob | None]:
        """What to store for `data`: itself when small, else a pointer and the blob to write
        before storing it."""
        if len(data) <= self.threshold:
            return data, None
        digest = hashlib.sha256(data).hexdigest()
        parts = ("payloads", *key, digest[:32])
        return _MARK + self.blobs.uri(*parts).encode(), PendingBlob(parts, data)

    def pack_now(self, data: bytes, *key: str) -> bytes:
        """`pack`, writing the blob at once (blocking: call it off the event loop)."""
        stored, pending = self.pack(data, *key)
        if pending is not None:
            self.blobs.put(pending.data, *pending.parts)
        return stored

    def write(self, pending: list[PendingBlob]) -> None:
        """Write pending blobs (blocking: call it off the event loop)."""
        for p in pending:
            self.blobs.put(p.data, *p.parts)

    def unpack(self, stored: bytes) -> bytes:
        """The payload behind what `pack` returned (blocking when it is a pointer)."""
        if stored.startswith(_MARK):
            return self.blobs.get(stored[len(_MARK) :].decode())
        return stored

    async def load(self, stored: bytes) -> bytes:
        """`unpack` without blocking the loop (inline payloads need no thread)."""
        if stored.startswith(_MARK):
            return await asyncio.to_thread(self.unpack, stored)
        return stored

    @staticmethod
    def is_pointer(stored: bytes) -> bool:
        """Whether `stored` points at a blob."""
        return stored.startswith(_MARK)
