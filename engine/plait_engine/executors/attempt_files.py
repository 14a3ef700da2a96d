"""The folder a process target's attempt runs in, on any object store.

When the object store is a folder (the default ``DATA_DIR/blobs``, or a shared mount), an attempt
runs in its own folder of the store, ``<execution>/<node path>/attempt-N``, and what it writes
is stored as it writes it. When the store is remote (S3, GCS), the attempt runs in a local
staging folder instead: the previous attempt's checkpoint is downloaded first (each object
checked against its SHA-256), and once the process has exited every regular file it left is
uploaded under the attempt's key (symbolic links are not followed: an attempt cannot make the
engine upload files it may not read itself). Blob URIs in its outputs that name files of the
staging folder are rewritten to the uploaded objects' URLs; then the folder is removed.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from plaitidl.core.v1 import errors_pb2, literals_pb2

from plait_engine.blob import LocalObjectStore, ObjectStore, join_key
from plait_engine.blob.objects import is_safe_part
from plait_engine.executors import Outcome, system_error


@dataclass
class AttemptDir:
    """Where one attempt keeps its files.

    Attributes:
        base: The folder the process runs in.
        prev: The previous attempt's checkpoint folder, or "" (none).
        key: The attempt's key in the object store.
        staging: The local folder to upload and remove (None: `base` is in the store).
    """

    base: Path
    prev: str
    key: str
    staging: Path | None = None


class _BadFileNameError(Exception):
    """A file the process left that no object key can name."""


class AttemptFiles:
    """Creates attempt folders, and stores what processes leave in them.

    Args:
        objects: The object store.
        staging: Where staging folders go for a remote store (default: the system's temporary
            folder).
    """

    def __init__(self, objects: ObjectStore, staging: Path | None = None) -> None:
        self.objects = objects
        self.staging = staging

    def open(self, parts: tuple[str, ...], attempt: int) -> AttemptDir:
        """An empty folder for an attempt, with the previous attempt's checkpoint (blocking).

        Raises:
            BadKey: `parts` name no key.
            ChecksumMismatch: A checkpoint object is corrupt.
        """
        key = join_key(*parts)
        prev_key = ""
        if attempt > 1 and parts[-1:] == (f"attempt-{attempt}",):
            prev_key = join_key(*parts[:-1], f"attempt-{attempt - 1}", "checkpoint")
        if isinstance(self.objects, LocalObjectStore):
            prev = ""
            if prev_key and self.objects.path(prev_key).is_dir():
                prev = str(self.objects.path(prev_key))
            return AttemptDir(self.objects.folder(key), prev, key)
        if self.staging is not None:
            self.staging.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="plait-attempt-", dir=self.staging))
        try:
            base = staging / "attempt"
            base.mkdir()
            prev = self._download(prev_key, staging / "prev-checkpoint") if prev_key else ""
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return AttemptDir(base, prev, key, staging)

    def _download(self, prefix: str, into: Path) -> str:
        """Objects under `prefix` as files under `into`; "" when there are none."""
        keys = self.objects.list(prefix)
        for k in keys:
            target = into / k[len(prefix) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.objects.get(k))
        return str(into) if keys else ""

    def finish(self, att: AttemptDir, outcome: Outcome) -> Outcome:
        """Store what a staged attempt left, and its outcome with URIs of stored objects
        (blocking; the outcome as it is for an attempt in the store's folder)."""
        if att.staging is None:
            return outcome
        try:
            self._upload(att)
            if isinstance(outcome, literals_pb2.LiteralMap):
                _rewrite_map(outcome, _prefixes(att.base), self.objects, att.key)
            return outcome
        except _BadFileNameError as exc:
            return errors_pb2.ExecutionError(
                code="BadFileName", message=str(exc), kind=errors_pb2.ExecutionError.KIND_USER
            )
        except Exception as exc:
            return system_error("UploadFailed", f"storing the attempt's files failed: {exc}")
        finally:
            self.discard(att)

    def discard(self, att: AttemptDir) -> None:
        """Remove a staging folder (nothing for an attempt in the store's folder)."""
        if att.staging is not None:
            shutil.rmtree(att.staging, ignore_errors=True)

    def _upload(self, att: AttemptDir) -> None:
        for folder, dirs, files in os.walk(att.base):
            rel_folder = Path(folder).relative_to(att.base)
            for name in files:
                path = Path(folder) / name
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    continue  # links, sockets, fifos: nothing to store
                rel = (rel_folder / name).as_posix()
                if not all(is_safe_part(p) for p in rel.split("/")):
                    raise _BadFileNameError(
                        f"{rel!r}: the files of a process target are stored in an object store, "
                        "so their names must be made of A-Z a-z 0-9 _ . = + -"
                    )
                self.objects.put_file(join_key(att.key, rel), str(path))
            dirs.sort()


def _prefixes(base: Path) -> tuple[str, ...]:
    return (base.as_uri() + "/", str(base) + "/")


def _rewrite(
    lit: literals_pb2.Literal, prefixes: tuple[str, ...], objects: ObjectStore, key: str
) -> None:
    kind = lit.WhichOneof("value")
    if kind == "collection":
        for item in lit.collection.literals:
            _rewrite(item, prefixes, objects, key)
    elif kind == "map":
        _rewrite_map(lit.map, prefixes, objects, key)
    elif kind == "record":
        for field in lit.record.fields:
            _rewrite(field.value, prefixes, objects, key)
    elif kind == "scalar" and lit.scalar.WhichOneof("value") == "union":
        _rewrite(lit.scalar.union.value, prefixes, objects, key)
    elif kind == "scalar" and lit.scalar.WhichOneof("value") == "blob":
        blob = lit.scalar.blob
        for prefix in prefixes:
            if blob.uri.startswith(prefix):
                rel = blob.uri[len(prefix) :].rstrip("/")
                blob.uri = objects.uri(join_key(key, rel)) if rel else objects.uri(key)
                break


def _rewrite_map(
    lm: literals_pb2.LiteralMap, prefixes: tuple[str, ...], objects: ObjectStore, key: str
) -> None:
    for lit in lm.literals.values():
        _rewrite(lit, prefixes, objects, key)


__all__ = ["AttemptDir", "AttemptFiles"]
