"""Large payloads live in the object store; the store keeps a pointer.

Serialized literal maps, compiled specs and errors above a threshold are written to the object
store, and the store row holds ``plait-blob:key:<key>`` instead, where the key's last part is the
payload's SHA-256: reading it back checks the bytes against that sum (and the one the object
store recorded). A serialized `LiteralMap`, `DynamicJobSpec` or `ExecutionError` never starts
with ``plait-blob:`` (its first byte would be the tag of field 14, which none of them has), so
the two cannot be confused.

Pointers are keys, never paths: replicas with different data dirs share payloads through a
shared folder or an object store. Rows written by older versions hold ``plait-blob:file://``
URLs of ``DATA_DIR/blobs/payloads/...``; the part after ``blobs/`` is their key, so they stay
readable after the folder's files are copied to another store (`_legacy_key`).

Packing computes the pointer without I/O: the scheduler writes the pending blobs on a thread
just before the commit that refers to them, so its loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from plait_engine.blob.objects import BadKey, ObjectStore, check_key, join_key

_MARK = b"plait-blob:"
_KEY = b"plait-blob:key:"
_LEGACY = b"plait-blob:file://"
_LEGACY_FOLDER = "/blobs/payloads/"
# Marks a compressed spec (`deflate`); a serialized message never starts with 0 (no field 0).
_ZLIB = b"\x00\x02"


def deflate(spec: bytes) -> bytes:
    """A serialized spec, compressed to store: a fan-out's spec repeats one node's shape, and
    it was half of what a fan-out stored per node."""
    return _ZLIB + zlib.compress(spec, 1)


def inflate(stored: bytes) -> bytes:
    """What `deflate` was given; bytes it did not make, as they are."""
    if stored[:2] == _ZLIB:
        return zlib.decompress(stored[2:])
    return stored


@dataclass(frozen=True, slots=True)
class PendingBlob:
    """A payload to write before the commit whose rows point at it."""

    key: str
    data: bytes


class Payloads:
    """Packs large payloads into the object store and unpacks pointers.

    Args:
        objects: Where payloads above the threshold go.
        threshold: Payloads up to this many bytes stay inline.
    """

    def __init__(self, objects: ObjectStore, threshold: int = 256 * 1024) -> None:
        self.objects = objects
        self.threshold = threshold

    def pack(self, data: bytes, *key: str) -> tuple[bytes, PendingBlob | None]:
        """What to store for `data`: itself when small, else a pointer and the blob to write
        before storing it."""
        if len(data) <= self.threshold:
            return data, None
        full = join_key("payloads", *key, hashlib.sha256(data).hexdigest())
        return _KEY + full.encode(), PendingBlob(full, data)

    def pack_now(self, data: bytes, *key: str) -> bytes:
        """`pack`, writing the blob at once (blocking: call it off the event loop)."""
        stored, pending = self.pack(data, *key)
        if pending is not None:
            self.objects.put(pending.key, pending.data)
        return stored

    def write(self, pending: list[PendingBlob]) -> None:
        """Write pending blobs (blocking: call it off the event loop)."""
        for p in pending:
            self.objects.put(p.key, p.data)

    def _key(self, stored: bytes) -> str:
        """The key a pointer names."""
        if stored.startswith(_KEY):
            return stored[len(_KEY) :].decode()
        if stored.startswith(_LEGACY):
            return _legacy_key(stored[len(_MARK) :].decode(), self.objects.local_root)
        raise BadKey(f"{stored[:80]!r} is not a payload pointer")

    def unpack(self, stored: bytes) -> bytes:
        """The payload behind what `pack` returned (blocking when it is a pointer).

        Raises:
            ObjectNotFound: The blob is gone.
            ChecksumMismatch: Its bytes are not the ones written.
        """
        if not stored.startswith(_MARK):
            return stored
        key = self._key(stored)
        return self.objects.get(key, sha256=key.rsplit("/", 1)[-1])

    async def load(self, stored: bytes) -> bytes:
        """`unpack` without blocking the loop (inline payloads need no thread)."""
        if stored.startswith(_MARK):
            return await asyncio.to_thread(self.unpack, stored)
        return stored

    async def load_spec(self, stored: bytes) -> bytes:
        """`load` for a spec stored `deflate`d (or, written before, as it is)."""
        return inflate(await self.load(stored))

    @staticmethod
    def is_pointer(stored: bytes) -> bool:
        """Whether `stored` points at a blob."""
        return stored.startswith(_MARK)

    def delete_execution(self, project: str, domain: str, name: str) -> None:
        """Delete everything stored for an execution: its payloads, offloaded values and
        process-target files (blocking)."""
        self.objects.delete_prefix(join_key("payloads", "executions", project, domain, name))
        self.objects.delete_prefix(join_key("executions", project, domain, name))


def _legacy_key(url: str, root: Path | None) -> str:
    """The key of a ``file://`` pointer of an older version: its path under the folder store's
    root, or else what follows ``/blobs/`` (the data dir was moved, or its blobs were copied to
    an object store under the same keys)."""
    path = unquote(urlparse(url).path)
    if root is not None and Path(path).resolve().is_relative_to(root):
        return check_key(Path(path).resolve().relative_to(root).as_posix())
    at = path.find(_LEGACY_FOLDER)
    if at < 0:
        raise BadKey(f"{url[:200]!r} is outside the blob store and its old blobs/ folder")
    return check_key(path[at + len("/blobs/") :])


__all__ = ["Payloads", "PendingBlob"]
