"""The object store in S3 or Google Cloud Storage, through fsspec (s3fs, gcsfs).

``s3://bucket/prefix`` puts the object of key ``k`` at ``bucket/prefix/k``. Its SHA-256 is
recorded as user metadata (``x-amz-meta-plait-sha256`` on S3, ``metadata.plait-sha256`` on
GCS) in the same request that stores it. An object store publishes an object only when its
upload completes (one PUT, or the completion of a multipart upload), so a writer that crashes
leaves nothing under the key; streamed writes are staged in a local temporary file and uploaded
by `commit`.

Credentials and endpoints come from the client libraries' standard sources: for S3 the
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN`` variables,
``AWS_PROFILE`` and ``~/.aws``, an instance role, ``AWS_DEFAULT_REGION`` and
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (S3-compatible servers); for GCS
``GOOGLE_APPLICATION_CREDENTIALS`` or the metadata server. `EngineConfig.blob_endpoint` sets
the endpoint explicitly.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from plait_engine.blob.local import verify
from plait_engine.blob.objects import (
    SHA256_KEY,
    ChecksumMismatch,
    ObjectNotFound,
    Opened,
    check_key,
)

_READ_BLOCK = 4 << 20


@dataclass(frozen=True)
class _Flavour:
    """How one fsspec implementation is installed, configured and asked for metadata."""

    package: str
    extra: str
    options: Callable[[str], dict[str, Any]]
    write_kwargs: Callable[[str], dict[str, Any]]
    read_meta: Callable[[Any, str], dict[str, str]]


def _endpoint(endpoint: str) -> dict[str, Any]:
    return {"endpoint_url": endpoint} if endpoint else {}


def _gcs_meta(fs: Any, path: str) -> dict[str, str]:
    return dict(fs.info(path).get("metadata") or {})


FLAVOURS = {
    "s3": _Flavour(
        "s3fs",
        "s3",
        _endpoint,
        lambda sha: {"Metadata": {SHA256_KEY: sha}},
        lambda fs, path: dict(fs.metadata(path)),
    ),
    "gs": _Flavour(
        "gcsfs",
        "gcs",
        _endpoint,
        lambda sha: {"metadata": {SHA256_KEY: sha}},
        _gcs_meta,
    ),
}
FLAVOURS["gcs"] = FLAVOURS["gs"]


def _filesystem(scheme: str, endpoint: str) -> Any:
    """The fsspec file system of a scheme, or ImportError naming the extra to install."""
    flavour = FLAVOURS[scheme]
    try:
        importlib.import_module(flavour.package)
        fsspec: Any = importlib.import_module("fsspec")
    except ImportError:
        raise ImportError(
            f"a {scheme}:// blob_url needs {flavour.package}: pip install 'plait[{flavour.extra}]'"
        ) from None
    # No listing cache: other replicas write and delete objects behind this one's back.
    return fsspec.filesystem(
        scheme, skip_instance_cache=True, use_listings_cache=False, **flavour.options(endpoint)
    )


class RemoteWriter:
    """An object staged in a local temporary file and uploaded by `commit`."""

    def __init__(self, store: FsspecObjectStore, key: str) -> None:
        self._store = store
        self._key = check_key(key)
        fd, name = tempfile.mkstemp(prefix="plait-upload-", dir=store.staging)
        self._tmp = Path(name)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
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
        """Check the checksum, then upload the object (see `ObjectWriter`)."""
        assert self._file is not None, "the writer is closed"
        digest = self._hash.hexdigest()
        try:
            self._file.close()
            self._file = None
            if sha256 is not None and digest != sha256:
                raise ChecksumMismatch(f"the bytes have SHA-256 {digest}, announced {sha256}")
            self._store.upload(self._key, str(self._tmp), digest)
        finally:
            self.abort()
        return digest

    def abort(self) -> None:
        """Drop what was staged (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp.unlink(missing_ok=True)


class FsspecObjectStore:
    """Objects in an object store reached through fsspec (see the module docstring).

    Args:
        url: ``s3://bucket[/prefix]`` or ``gs://bucket[/prefix]``.
        endpoint: The service's endpoint URL (S3-compatible servers); empty: the library's
            default (or ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``).
        staging: A local folder for streamed writes (default: the system's temporary folder).

    Raises:
        ValueError: Not such a URL.
        ImportError: The scheme's fsspec package is not installed.
    """

    local_root: Path | None = None

    def __init__(self, url: str, *, endpoint: str = "", staging: Path | None = None) -> None:
        scheme, sep, rest = url.partition("://")
        if scheme not in FLAVOURS or not sep:
            raise ValueError(f"blob_url {url!r}: expected s3://BUCKET/PREFIX or gs://BUCKET/PREFIX")
        root = rest.strip("/")
        bucket, _, prefix = root.partition("/")
        if not bucket or (prefix and check_key(prefix) != prefix):
            raise ValueError(f"blob_url {url!r}: give a bucket (and a plain prefix)")
        self.url = f"{scheme}://{root}"
        self._scheme = scheme
        self._root = root
        self._flavour = FLAVOURS[scheme]
        self.fs = _filesystem(scheme, endpoint)
        self.staging = staging
        if staging is not None:
            staging.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> str:
        return f"{self._root}/{check_key(key)}"

    def _recorded(self, path: str) -> str | None:
        try:
            meta = self._flavour.read_meta(self.fs, path)
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {path!r} in {self._scheme}://") from None
        return meta.get(SHA256_KEY) or None

    def upload(self, key: str, local: str, sha256: str) -> None:
        """Upload a local file as the object of `key`, its checksum recorded."""
        self.fs.put_file(local, self._path(key), **self._flavour.write_kwargs(sha256))

    # -- the protocol ------------------------------------------------------------------------
    def put(self, key: str, data: bytes) -> str:
        """Store bytes (one upload: atomic); returns their SHA-256."""
        path = self._path(key)
        digest = hashlib.sha256(data).hexdigest()
        self.fs.pipe_file(path, data, **self._flavour.write_kwargs(digest))
        return digest

    def put_file(self, key: str, path: str) -> str:
        """Store a local file's bytes; returns their SHA-256."""
        check_key(key)
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_READ_BLOCK):
                digest.update(chunk)
        self.upload(key, path, digest.hexdigest())
        return digest.hexdigest()

    def writer(self, key: str) -> RemoteWriter:
        """Start writing an object in chunks (staged locally, uploaded by `commit`)."""
        return RemoteWriter(self, key)

    def get(self, key: str, sha256: str | None = None) -> bytes:
        """The checked bytes of an object (see `ObjectStore.get`)."""
        path = self._path(key)
        recorded = self._recorded(path)
        try:
            data = cast(bytes, self.fs.cat_file(path))
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key!r} in {self.url}") from None
        verify(key, hashlib.sha256(data).hexdigest(), recorded, sha256)
        return data

    def open(self, key: str) -> Opened:
        """An object open for chunked reads."""
        path = self._path(key)
        recorded = self._recorded(path)
        try:
            f = self.fs.open(path, "rb", block_size=_READ_BLOCK, cache_type="readahead")
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key!r} in {self.url}") from None
        return Opened(cast(BinaryIO, f), int(f.size), recorded)

    def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""
        path = self._path(key)
        try:
            return bool(self.fs.info(path).get("type") == "file")
        except FileNotFoundError:
            return False

    def size(self, key: str) -> int:
        """The size of an object."""
        path = self._path(key)
        try:
            info = self.fs.info(path)
        except FileNotFoundError:
            info = {}
        if info.get("type") != "file":
            raise ObjectNotFound(f"no object {key!r} in {self.url}")
        return int(info["size"])

    def _find(self, prefix: str) -> list[str]:
        base = self._path(prefix) + "/"
        try:
            found = cast(list[str], self.fs.find(base))
        except FileNotFoundError:
            return []
        return [p for p in found if p.startswith(base)]

    def list(self, prefix: str) -> list[str]:
        """Every key under the folder `prefix`, sorted."""
        cut = len(self._root) + 1
        return sorted(p[cut:] for p in self._find(prefix))

    def delete(self, key: str) -> None:
        """Remove an object (nothing when there is none)."""
        try:
            self.fs.rm_file(self._path(key))
        except FileNotFoundError:
            pass

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object under the folder `prefix`."""
        found = self._find(prefix)
        if found:
            self.fs.rm(found)

    def uri(self, key: str) -> str:
        """The object's ``s3://`` (or ``gs://``) URL."""
        return f"{self._scheme}://{self._path(key)}"

    def __repr__(self) -> str:
        return f"FsspecObjectStore({self.url})"


__all__ = ["FLAVOURS", "FsspecObjectStore", "RemoteWriter"]
