"""Large payloads live in the blob store; the store keeps a pointer.

Serialized literal maps, compiled specs and errors above a threshold are written to the blob
store, and the store row holds ``plait-blob:<uri>`` instead. A serialized `LiteralMap`,
`DynamicJobSpec` or `ExecutionError` never starts with that prefix (its first byte would be the
tag of field 14, which none of them has), so the two cannot be confused.
"""

from __future__ import annotations

import hashlib

from plait_engine.blobstore import BlobStore

_MARK = b"plait-blob:"


class Payloads:
    """Packs large payloads into the blob store and unpacks pointers."""

    def __init__(self, blobs: BlobStore, threshold: int = 256 * 1024) -> None:
        self.blobs = blobs
        self.threshold = threshold

    def pack(self, data: bytes, *key: str) -> bytes:
        """`data` itself when small; otherwise a pointer to a blob holding it."""
        if len(data) <= self.threshold:
            return data
        digest = hashlib.sha256(data).hexdigest()
        uri = self.blobs.put(data, "payloads", *key, digest[:32])
        return _MARK + uri.encode()

    def unpack(self, stored: bytes) -> bytes:
        """The payload behind what `pack` returned."""
        if stored.startswith(_MARK):
            return self.blobs.get(stored[len(_MARK) :].decode())
        return stored

    @staticmethod
    def is_pointer(stored: bytes) -> bool:
        """Whether `stored` points at a blob."""
        return stored.startswith(_MARK)
