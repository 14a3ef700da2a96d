"""The object store in a folder: the default (``DATA_DIR/blobs``), or a shared mount.

An object is the plain file ``ROOT/<key>`` (programs and people can read it as it is), and its
SHA-256 is the text file ``ROOT/~sha256/<key>``: a folder no key can name (``~`` is not allowed
in a key part), so listings and the objects' folders hold nothing but objects.

A write goes to a temporary file in the object's folder (its name has a ``~``: no key names
it, no listing shows it), is flushed to disk (fsync), then renamed over the key, and the folder
is synced: an object is complete or absent, also across a crash of the machine. The checksum
is written the same way just before, so an object is never there without it. Folders shared by
several machines (NFS and the like) must offer atomic rename within a folder, as every POSIX
file system does.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from pathlib import Path
from typing import BinaryIO

from plait_engine.blob.objects import (
    BadKey,
    ChecksumMismatch,
    ObjectNotFound,
    Opened,
    check_key,
    is_safe_part,
    join_key,
    sha_matches,
)

SUMS = "~sha256"
_COPY_CHUNK = 4 << 20


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_next_to(path: Path) -> Path:
    # Never a key part (it has a '~'), and unique: concurrent writers of one key never share it.
    return path.with_name(f"~{secrets.token_hex(6)}~{path.name}")


def _atomic_write(path: Path, data: bytes) -> None:
    """Write a file through a synced temporary file renamed over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_next_to(path)
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def verify(key: str, digest: str, recorded: str | None, expected: str | None) -> None:
    """Check a computed SHA-256 against the recorded one and the one the caller expects.

    Raises:
        ChecksumMismatch: A mismatch, or no checksum to compare against at all.
    """
    if recorded is None and expected is None:
        raise ChecksumMismatch(f"object {key!r} has no recorded SHA-256: it cannot be verified")
    if recorded is not None and digest != recorded:
        raise ChecksumMismatch(
            f"object {key!r} is corrupt: its bytes have SHA-256 {digest}, recorded {recorded}"
        )
    if expected is not None and not sha_matches(digest, expected):
        raise ChecksumMismatch(
            f"object {key!r} is corrupt: its bytes have SHA-256 {digest}, expected {expected}"
        )


class LocalWriter:
    """An object written in chunks to a temporary file, renamed into place by `commit`."""

    def __init__(self, store: LocalObjectStore, key: str) -> None:
        self._store = store
        self._key = key
        self._final = store.path(key)
        self._final.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = _temp_next_to(self._final)
        self._hash = hashlib.sha256()
        self._file: BinaryIO | None = open(self._tmp, "xb")  # noqa: SIM115 - closed in commit/abort
        self._received = 0

    @property
    def received(self) -> int:
        """Bytes written so far."""
        return self._received

    def write(self, chunk: bytes) -> None:
        """Append bytes."""
        assert self._file is not None, "the writer is closed"
        self._file.write(chunk)
        self._hash.update(chunk)
        self._received += len(chunk)

    def commit(self, sha256: str | None = None) -> str:
        """Check the checksum, then rename the object into place (see `ObjectWriter`)."""
        assert self._file is not None, "the writer is closed"
        digest = self._hash.hexdigest()
        if sha256 is not None and digest != sha256:
            self.abort()
            raise ChecksumMismatch(f"the bytes have SHA-256 {digest}, announced {sha256}")
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            self._store.record(self._key, digest)
            os.replace(self._tmp, self._final)
        except BaseException:
            self.abort()
            raise
        _fsync_dir(self._final.parent)
        return digest

    def abort(self) -> None:
        """Drop what was written (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp.unlink(missing_ok=True)


class LocalObjectStore:
    """Objects as files under a folder (see the module docstring).

    Args:
        root: The folder (created when missing).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.local_root: Path | None = self.root
        self.url = self.root.as_uri()
        self._sums = self.root / SUMS

    # -- paths -------------------------------------------------------------------------------
    def path(self, key: str) -> Path:
        """The file of a key, refusing anything that would leave the root (also through a
        symbolic link a process target left in its folder)."""
        p = self.root / check_key(key)
        if not p.resolve().is_relative_to(self.root):
            raise BadKey(f"object key {key[:120]!r} leads outside the store's root")
        return p

    def folder(self, key: str) -> Path:
        """An empty folder under a key (emptied when it exists), for programs writing files."""
        p = self.path(key)
        if p.exists():
            shutil.rmtree(p)
        p.mkdir(parents=True)
        return p

    def _sum_path(self, key: str) -> Path:
        return self._sums / key

    def record(self, key: str, sha256: str) -> None:
        """Record an object's checksum (before the object is renamed into place)."""
        _atomic_write(self._sum_path(key), sha256.encode())

    def recorded(self, key: str) -> str | None:
        """The checksum recorded for a key, or None."""
        try:
            return self._sum_path(key).read_text().strip() or None
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    # -- the protocol ------------------------------------------------------------------------
    def put(self, key: str, data: bytes) -> str:
        """Store bytes atomically; returns their SHA-256."""
        p = self.path(key)
        digest = hashlib.sha256(data).hexdigest()
        self.record(key, digest)
        _atomic_write(p, data)
        return digest

    def put_file(self, key: str, path: str) -> str:
        """Store a local file's bytes atomically; returns their SHA-256."""
        w = self.writer(key)
        try:
            with open(path, "rb") as src:
                while chunk := src.read(_COPY_CHUNK):
                    w.write(chunk)
        except BaseException:
            w.abort()
            raise
        return w.commit()

    def writer(self, key: str) -> LocalWriter:
        """Start writing an object in chunks."""
        return LocalWriter(self, key)

    def get(self, key: str, sha256: str | None = None) -> bytes:
        """The checked bytes of an object (see `ObjectStore.get`)."""
        p = self.path(key)
        try:
            data = p.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no object {key!r} in {self.url}") from None
        verify(key, hashlib.sha256(data).hexdigest(), self.recorded(key), sha256)
        return data

    def open(self, key: str) -> Opened:
        """An object open for chunked reads."""
        p = self.path(key)
        try:
            f = open(p, "rb")  # noqa: SIM115 - the caller closes it
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no object {key!r} in {self.url}") from None
        return Opened(f, os.fstat(f.fileno()).st_size, self.recorded(key))

    def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""
        return self.path(key).is_file()

    def size(self, key: str) -> int:
        """The size of an object."""
        p = self.path(key)
        if not p.is_file():
            raise ObjectNotFound(f"no object {key!r} in {self.url}")
        return p.stat().st_size

    def list(self, prefix: str) -> list[str]:
        """Every key under the folder `prefix`, sorted."""
        base = self.path(prefix)
        out: list[str] = []
        for folder, dirs, files in os.walk(base):
            dirs[:] = [d for d in dirs if is_safe_part(d)]
            rel = Path(folder).relative_to(self.root).as_posix()
            out += [f"{rel}/{name}" for name in files if is_safe_part(name)]
        return sorted(out)

    def delete(self, key: str) -> None:
        """Remove an object (nothing when there is none)."""
        p = self.path(key)
        if p.is_file() or p.is_symlink():
            p.unlink(missing_ok=True)
        self._sum_path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object under the folder `prefix`."""
        p = self.path(prefix)
        for folder in (p, self._sum_path(prefix)):
            if folder.is_dir() and not folder.is_symlink():
                shutil.rmtree(folder, ignore_errors=True)

    def uri(self, key: str) -> str:
        """The object's ``file://`` URL."""
        return self.path(key).as_uri()

    def __repr__(self) -> str:
        return f"LocalObjectStore({self.url})"


__all__ = ["SUMS", "LocalObjectStore", "LocalWriter", "join_key", "verify"]
