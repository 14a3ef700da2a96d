"""`File` and `Directory`: values that travel as blob literals, by URI, never by content.

A task input or output annotated `File` or `Directory` is carried as `Scalar.blob`; the bytes
stay where they are (a local path, an object store). Local paths are made absolute at
construction so that a value still means the same thing after the working directory changes
or after it crosses into another process; a relative path arriving from elsewhere (a literal
from the engine) is refused by the type engine instead, since its meaning would depend on the
receiving process's working directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from plait._errors import PlaitValueError

__all__ = ["Directory", "File"]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_absolute_uri(uri: str) -> bool:
    """Whether `uri` means the same thing in any working directory.

    True for a URI with a scheme (``file://``, ``s3://``, ...) and for an absolute local path.
    A relative path (``../../etc/passwd``, ``~/x``) coming from elsewhere (the engine, another
    worker) would otherwise be resolved against this process's working directory.
    """
    return bool(_SCHEME.match(uri)) or os.path.isabs(uri)


def _to_uri(path_or_uri: str | os.PathLike[str]) -> str:
    if isinstance(path_or_uri, os.PathLike):
        path_or_uri = os.fspath(path_or_uri)
    if not isinstance(path_or_uri, str):
        raise PlaitValueError(f"expected a path or a URI, got {type(path_or_uri).__name__}")
    if not path_or_uri:
        raise PlaitValueError("expected a path or a URI, got an empty string")
    if _SCHEME.match(path_or_uri):
        return path_or_uri
    # abspath, not resolve(): the file need not exist yet (an output), and symlinks are the
    # user's business.
    return Path(os.path.abspath(os.path.expanduser(path_or_uri))).as_uri()


class _Blob:
    __slots__ = ("_uri",)

    def __init__(self, path_or_uri: str | os.PathLike[str]) -> None:
        self._uri = _to_uri(path_or_uri)

    @property
    def uri(self) -> str:
        """The URI: `file:///abs/path` for local paths, otherwise as given (`s3://b/k`)."""
        return self._uri

    @property
    def is_local(self) -> bool:
        """Whether the blob is on the local file system (a `file://` URI)."""
        return self._uri.startswith("file://")

    @property
    def path(self) -> str:
        """The local path of a `file://` blob.

        Raises:
            PlaitValueError: the blob is not local.
        """
        if not self.is_local:
            raise PlaitValueError(f"{self!r} is not a local path")
        # Imported here: urllib.request pulls in http.client, email and ssl (~40 ms), which
        # `import plait` should not pay for.
        import urllib.parse
        import urllib.request

        parsed = urllib.parse.urlparse(self._uri)
        return urllib.request.url2pathname(parsed.path)

    def __fspath__(self) -> str:
        return self.path

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Blob)
        return self._uri == other._uri

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._uri))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._uri!r})"


class File(_Blob):
    """A single file, referenced by URI.

    Args:
        path_or_uri: a local path (made absolute) or a URI such as `s3://bucket/key`.

    Example:
        >>> File("/tmp/data.csv").uri
        'file:///tmp/data.csv'
    """

    __slots__ = ()

    def open(self, mode: str = "r", **kwargs: Any) -> IO[Any]:
        """Open a local file, as the built-in `open` does.

        Raises:
            PlaitValueError: the file is not local.
        """
        return open(self.path, mode, **kwargs)


class Directory(_Blob):
    """A directory (a prefix holding many objects), referenced by URI.

    Iterating a local directory yields a `File` for every regular file below it, recursively,
    in sorted order so that runs are reproducible.

    Args:
        path_or_uri: a local path (made absolute) or a URI such as `s3://bucket/prefix/`.
    """

    __slots__ = ()

    def __iter__(self) -> Iterator[File]:
        root = self.path
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                yield File(os.path.join(dirpath, name))
