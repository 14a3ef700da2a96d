"""The blob store: large literals, process-target files and spec files under one root."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

_SAFE_PART = re.compile(r"^[A-Za-z0-9_.=+-]{1,200}$")


def is_safe_part(part: str) -> bool:
    """Whether `part` may be one part of a blob key (a plain name that stays in its folder)."""
    return bool(_SAFE_PART.match(part)) and part not in (".", "..")


class BlobStore:
    """A local folder addressed by engine-built keys.

    Keys are ``/``-joined parts built by the engine; each part must be a plain name, so no key
    and no URI can escape the root.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, *parts: str) -> Path:
        """The local path of a key, refusing anything that could leave the root."""
        for part in parts:
            if not is_safe_part(part):
                raise ValueError(f"invalid blob key part {part!r}")
        p = self.root.joinpath(*parts)
        if not p.resolve().is_relative_to(self.root):
            raise ValueError(f"blob key {'/'.join(parts)!r} escapes the blob store root")
        return p

    def uri(self, *parts: str) -> str:
        """The ``file://`` URI of a key."""
        return self.path(*parts).as_uri()

    def path_of_uri(self, uri: str) -> Path:
        """The local path of a URI inside the root; ValueError for anything else."""
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            raise ValueError(f"not a blob store URI: {uri!r}")
        p = Path(unquote(parsed.path)).resolve()
        if not p.is_relative_to(self.root):
            raise ValueError(f"URI {uri!r} is outside the blob store root")
        return p

    def put(self, data: bytes, *parts: str) -> str:
        """Write bytes atomically under a key; returns its URI."""
        p = self.path(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, p)
        return p.as_uri()

    def get(self, uri: str) -> bytes:
        """Read the bytes behind a URI of this store."""
        return self.path_of_uri(uri).read_bytes()

    def delete(self, *parts: str) -> None:
        """Remove a key and everything under it (nothing when it does not exist)."""
        p = self.path(*parts)
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)

    def folder(self, *parts: str) -> Path:
        """Create (empty) and return a folder under a key."""
        p = self.path(*parts)
        if p.exists():
            shutil.rmtree(p)
        p.mkdir(parents=True)
        return p
