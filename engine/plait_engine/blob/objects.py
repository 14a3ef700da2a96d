"""The object-store interface: bytes under engine-built keys, with checksums.

Everything the engine keeps outside its database (payloads over the inline threshold, offloaded
values, process-target files) goes through one small protocol, `ObjectStore`, with two kinds of
backend: a local (or shared, mounted) folder, and an object store reached through fsspec
(``s3://``, ``gs://``). See `plait_engine.blob.stores.open_object_store`.

The contract every backend keeps:

- **Keys** are built by the engine: ``/``-joined parts, each a plain name (letters, digits and
  ``_ . = + -``, not ``.`` or ``..``), never absolute, never empty. `check_key` refuses anything
  else before any I/O, so no key reaches outside the store's root.
- **Writes are atomic**: an object is either absent or complete. A writer that crashes leaves
  nothing readable under the key (a temporary file renamed into place, or one object-store PUT).
- **Checksums**: the SHA-256 of every object is recorded when it is written (object metadata)
  and checked when it is read; a mismatch raises `ChecksumMismatch`, never returns bytes.

Every call blocks: the engine calls them on threads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

_SAFE_PART = re.compile(r"^[A-Za-z0-9_.=+-]{1,200}$")
MAX_KEY_CHARS = 4000
"""The longest key (a local path stays under PATH_MAX; S3 refuses keys over 1,024 bytes)."""
SHA256_KEY = "plait-sha256"
"""The name of the metadata entry holding an object's SHA-256 (hex)."""


class BadKey(ValueError):  # noqa: N818 - a kind of ValueError, named for what is wrong
    """A key that could name something outside the store's root."""


class ObjectNotFound(FileNotFoundError):  # noqa: N818
    """No object under the key."""


class ChecksumMismatch(Exception):  # noqa: N818
    """An object's bytes do not match the SHA-256 recorded for it (or the one expected)."""


def is_safe_part(part: str) -> bool:
    """Whether `part` may be one part of a key (a plain name that stays in its folder)."""
    return bool(_SAFE_PART.match(part)) and part not in (".", "..")


def check_key(key: str) -> str:
    """`key`, if the engine may use it; `BadKey` (naming the bad part) otherwise.

    Raises:
        BadKey: Empty, absolute, too long, an empty part, ``.`` or ``..``, or a character
            outside ``A-Z a-z 0-9 _ . = + -`` in a part.
    """
    if not key:
        raise BadKey("an object key must not be empty")
    if len(key) > MAX_KEY_CHARS:
        raise BadKey(f"object key {key[:80]!r}... is over {MAX_KEY_CHARS} characters")
    if key.startswith("/"):
        raise BadKey(f"object key {key[:120]!r} must be relative, not start with '/'")
    for part in key.split("/"):
        if not is_safe_part(part):
            raise BadKey(f"object key {key[:120]!r} has an invalid part {part[:80]!r}")
    return key


def join_key(*parts: str) -> str:
    """The key of `parts`, checked (see `check_key`)."""
    return check_key("/".join(parts))


def sha_matches(digest: str, expected: str) -> bool:
    """Whether a hex SHA-256 is the `expected` one, or starts with it (at least 32 characters:
    the truncated sums in names written by older versions)."""
    return len(expected) >= 32 and digest.startswith(expected)


@dataclass
class Opened:
    """An object open for reading in chunks.

    Attributes:
        file: Reads the bytes from the start (close it).
        size: Its size in bytes.
        sha256: The SHA-256 recorded when it was written (None: written before checksums were
            recorded; the caller checks against one it knows).
    """

    file: BinaryIO
    size: int
    sha256: str | None


class ObjectWriter(Protocol):
    """An object being written in chunks: nothing is visible under its key until `commit`."""

    @property
    def received(self) -> int:
        """Bytes written so far."""
        ...

    def write(self, chunk: bytes) -> None:
        """Append bytes."""
        ...

    def commit(self, sha256: str | None = None) -> str:
        """Publish the object atomically; returns its SHA-256.

        Args:
            sha256: The checksum the bytes must have; on a mismatch nothing is published.

        Raises:
            ChecksumMismatch: The bytes do not have `sha256`.
        """
        ...

    def abort(self) -> None:
        """Drop what was written (idempotent; nothing after `commit`)."""
        ...


class ObjectStore(Protocol):
    """Bytes under engine-built keys; see the module docstring for the contract.

    Attributes:
        url: Where the objects live (``file:///...``, ``s3://bucket/prefix``).
        local_root: The folder holding the objects as plain files under their keys, when the
            store is a (local or mounted) folder; None for a remote object store.
    """

    url: str
    local_root: Path | None

    def put(self, key: str, data: bytes) -> str:
        """Store `data` under `key` atomically (replacing an object); returns its SHA-256."""
        ...

    def put_file(self, key: str, path: str) -> str:
        """Store a local file's bytes under `key` atomically; returns their SHA-256."""
        ...

    def writer(self, key: str) -> ObjectWriter:
        """Start writing an object in chunks (published by `ObjectWriter.commit`)."""
        ...

    def get(self, key: str, sha256: str | None = None) -> bytes:
        """The bytes under `key`, checked against their recorded SHA-256 (and `sha256`, the
        one the caller expects, when given).

        Raises:
            ObjectNotFound: No object under `key`.
            ChecksumMismatch: The bytes do not match.
        """
        ...

    def open(self, key: str) -> Opened:
        """The object open for chunked reads (the caller hashes what it reads and compares).

        Raises:
            ObjectNotFound: No object under `key`.
        """
        ...

    def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""
        ...

    def size(self, key: str) -> int:
        """The size of the object under `key`.

        Raises:
            ObjectNotFound: No object under `key`.
        """
        ...

    def list(self, prefix: str) -> list[str]:
        """Every key under the folder `prefix` (``prefix/...``), sorted."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object under `key` (nothing when there is none)."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object under the folder `prefix` (never ``prefix2/...``)."""
        ...

    def uri(self, key: str) -> str:
        """The object's URL outside the engine (``file:///...``, ``s3://...``)."""
        ...


__all__ = [
    "MAX_KEY_CHARS",
    "SHA256_KEY",
    "BadKey",
    "ChecksumMismatch",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectWriter",
    "Opened",
    "check_key",
    "is_safe_part",
    "join_key",
    "sha_matches",
]
