"""Opening the object store a configuration names (``blob_url``)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from plait_engine.blob.local import LocalObjectStore
from plait_engine.blob.objects import ObjectStore

REMOTE_SCHEMES = ("s3", "gs", "gcs")


def open_object_store(
    url: str, *, data_dir: Path, endpoint: str = "", staging: Path | None = None
) -> ObjectStore:
    """The object store of a ``blob_url``.

    Args:
        url: Empty for ``DATA_DIR/blobs``; a folder as an absolute path or ``file:///PATH``
            (a shared mount: every replica must see the same files); ``s3://BUCKET/PREFIX`` or
            ``gs://BUCKET/PREFIX``.
        data_dir: The engine's data dir.
        endpoint: The object store's endpoint URL (S3-compatible servers).
        staging: A local folder for uploads being staged (remote stores).

    Raises:
        ValueError: A URL naming no store this engine can open (the message says why).
        ImportError: The package a scheme needs is missing (the message names the extra).
    """
    url = url.strip()
    if not url:
        return LocalObjectStore(data_dir / "blobs")
    parsed = urlparse(url)
    if parsed.scheme in REMOTE_SCHEMES:
        from plait_engine.blob.remote import FsspecObjectStore

        return FsspecObjectStore(url, endpoint=endpoint, staging=staging)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"blob_url {url!r}: a file:// URL names a local path (file:///PATH)")
        path = unquote(parsed.path)
    elif not parsed.scheme:
        path = url
    else:
        raise ValueError(
            f"blob_url {url!r}: unknown scheme {parsed.scheme!r}; use a folder (/PATH or "
            "file:///PATH), s3://BUCKET/PREFIX or gs://BUCKET/PREFIX"
        )
    folder = Path(path).expanduser()
    if not folder.is_absolute():
        raise ValueError(f"blob_url {url!r}: give the folder as an absolute path")
    return LocalObjectStore(folder)


__all__ = ["REMOTE_SCHEMES", "open_object_store"]
