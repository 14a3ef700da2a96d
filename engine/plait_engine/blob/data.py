"""Offloaded literals: values above the inline limit, stored once per execution.

A value too large to travel inline is stored as its serialized `Literal` and referenced by an
`OffloadedLiteral` whose URI the engine builds::

    plait-data://<project>/<domain>/<execution name>/<sha256>

The URI maps to the blob key ``executions/<project>/<domain>/<name>/+data/<sha256>``: under the
execution's prefix, so deleting the execution deletes its payloads, and in a folder no node id
can name (node ids cannot start with ``+``), so process-target files never mix with them. Every
part must be a plain blob key part, so no URI reaches anything outside that folder.

Payloads are content-addressed within an execution: a fan-out sharing one large input writes it
once, and an object that exists already holds the right bytes unless the storage corrupted
them, which reads detect (the key ends with the checksum, and the object store records it
too). Payloads live in the engine's object store (`plait_engine.blob.objects`): workers on other
machines read and write them through `DataService`, never from the engine's disk. Everything
here blocks: call it on a thread.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from plaitidl.core.v1 import literals_pb2, types_pb2

from plait_engine.blob.objects import (
    ChecksumMismatch,
    ObjectStore,
    ObjectWriter,
    Opened,
    is_safe_part,
    join_key,
)

SCHEME = "plait-data://"
DATA_FOLDER = "+data"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

Execution = tuple[str, str, str]
"""``(project, domain, name)`` of an execution."""


@dataclass(frozen=True)
class DataRef:
    """Where one payload lives.

    Attributes:
        project: The execution's project (decides who may read it).
        domain: The execution's domain.
        name: The execution's name.
        sha256: Lowercase hex SHA-256 of the stored bytes.
    """

    project: str
    domain: str
    name: str
    sha256: str

    @property
    def execution(self) -> Execution:
        """``(project, domain, name)`` of the execution the payload belongs to."""
        return (self.project, self.domain, self.name)

    @property
    def uri(self) -> str:
        """The ``plait-data://`` URI."""
        return f"{SCHEME}{self.project}/{self.domain}/{self.name}/{self.sha256}"

    @property
    def key(self) -> str:
        """The object key."""
        return join_key(
            "executions", self.project, self.domain, self.name, DATA_FOLDER, self.sha256
        )


def execution_problem(execution: Execution) -> str | None:
    """What makes `execution` unusable in a data URI, or None."""
    for what, part in zip(("project", "domain", "name"), execution, strict=True):
        if not is_safe_part(part):
            return f"execution {what} {part[:80]!r} cannot name stored data"
    return None


def sha256_problem(sha256: str) -> str | None:
    """What is wrong with a hex SHA-256, or None."""
    if _SHA256.match(sha256):
        return None
    return f"{sha256[:80]!r} is not a lowercase hex SHA-256 (64 characters 0-9a-f)"


def parse_uri(uri: str) -> DataRef:
    """The payload a ``plait-data://`` URI names.

    Raises:
        ValueError: Not a URI the engine builds (the message says why).
    """
    if not uri.startswith(SCHEME):
        raise ValueError(f"{uri[:80]!r} is not a {SCHEME} URI")
    parts = uri[len(SCHEME) :].split("/")
    if len(parts) != 4:
        raise ValueError(
            f"{uri[:120]!r} must be {SCHEME}<project>/<domain>/<execution name>/<sha256>"
        )
    project, domain, name, sha = parts
    problem = execution_problem((project, domain, name)) or sha256_problem(sha)
    if problem:
        raise ValueError(f"{uri[:120]!r}: {problem}")
    return DataRef(project, domain, name, sha)


def offloaded_problem(
    off: literals_pb2.OffloadedLiteral, execution: Execution, allowed: frozenset[str] = frozenset()
) -> str | None:
    """Why an `OffloadedLiteral` sent by a worker or client cannot be accepted, or None.

    Accepted: a URI of `execution`'s own payloads whose checksum matches the literal's, or one
    of the `allowed` URIs (those the engine handed out with the attempt's inputs).
    """
    if off.uri in allowed:
        return None
    try:
        ref = parse_uri(off.uri)
    except ValueError as exc:
        return str(exc)
    if ref.execution != execution:
        return f"{off.uri!r} belongs to another execution than {'/'.join(execution)}"
    if off.sha256 != ref.sha256:
        return f"sha256 {off.sha256[:80]!r} differs from the one in its URI {off.uri!r}"
    if off.size_bytes < 0:
        return "size_bytes is negative"
    return None


class Upload:
    """A payload being written: bytes go to the object store's writer, `commit` checks the
    size and checksum, and only then is the object published (atomically).

    Args:
        writer: The object store's writer for the payload's key.
        size: The announced size.
        sha256: The announced checksum.
    """

    def __init__(self, writer: ObjectWriter, size: int, sha256: str) -> None:
        self._writer = writer
        self.size = size
        self.sha256 = sha256

    @property
    def received(self) -> int:
        """Bytes written so far."""
        return self._writer.received

    def write(self, chunk: bytes) -> None:
        """Append bytes.

        Raises:
            ValueError: More bytes than announced.
        """
        if self.received + len(chunk) > self.size:
            raise ValueError(f"more than the announced {self.size} bytes")
        self._writer.write(chunk)

    def commit(self) -> None:
        """Check size and checksum, then publish the payload atomically.

        Raises:
            ValueError: Fewer bytes than announced, or another checksum.
        """
        if self.received != self.size:
            self.abort()
            raise ValueError(f"received {self.received} bytes, announced {self.size}")
        try:
            self._writer.commit(self.sha256)
        except ChecksumMismatch as exc:
            raise ValueError(str(exc)) from None

    def abort(self) -> None:
        """Drop what was written (idempotent)."""
        self._writer.abort()


class DataStore:
    """Offloaded payloads in the object store (blocking calls).

    Args:
        objects: The object store.
    """

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    def put(self, execution: Execution, data: bytes) -> DataRef:
        """Store bytes for an execution (once: an existing payload is kept)."""
        ref = DataRef(*execution, hashlib.sha256(data).hexdigest())
        # Threads offloading the same value race harmlessly: each write is atomic.
        if not self.objects.exists(ref.key):
            self.objects.put(ref.key, data)
        return ref

    def exists(self, ref: DataRef) -> bool:
        """Whether the payload is stored."""
        return self.objects.exists(ref.key)

    def offload(
        self, execution: Execution, lit: literals_pb2.Literal, type: types_pb2.LiteralType | None
    ) -> literals_pb2.Literal:
        """Store a literal and return the `OffloadedLiteral` that references it."""
        data = lit.SerializeToString()
        ref = self.put(execution, data)
        off = literals_pb2.OffloadedLiteral(uri=ref.uri, size_bytes=len(data), sha256=ref.sha256)
        if type is not None:
            off.type.CopyFrom(type)
        return literals_pb2.Literal(offloaded=off)

    def offload_map(
        self,
        execution: Execution,
        lm: literals_pb2.LiteralMap,
        limit: int,
        types: Mapping[str, types_pb2.LiteralType] | None = None,
    ) -> literals_pb2.LiteralMap:
        """`lm` with each literal over `limit` serialized bytes offloaded (`lm` is unchanged).

        Args:
            execution: Whose payloads they become.
            lm: The values.
            limit: The largest literal kept inline.
            types: Declared types by name, recorded in the references.
        """
        out = literals_pb2.LiteralMap()
        for name, lit in lm.literals.items():
            if not lit.HasField("offloaded") and lit.ByteSize() > limit:
                out.literals[name].CopyFrom(
                    self.offload(execution, lit, (types or {}).get(name) or _scalar_type(lit))
                )
            else:
                out.literals[name].CopyFrom(lit)
        return out

    def upload(self, execution: Execution, size: int, sha256: str) -> Upload:
        """Start writing a payload of an execution."""
        return Upload(self.objects.writer(DataRef(*execution, sha256).key), size, sha256)

    def open(self, ref: DataRef) -> Opened:
        """The payload open for chunked reads (the caller checks the bytes against
        `ref.sha256`).

        Raises:
            ObjectNotFound: There is no such payload.
        """
        return self.objects.open(ref.key)


def _scalar_type(lit: literals_pb2.Literal) -> types_pb2.LiteralType | None:
    """The type of a primitive or binary literal (enough for the values that get large)."""
    if not lit.HasField("scalar"):
        return None
    s = lit.scalar
    if s.HasField("binary"):
        return types_pb2.LiteralType(simple=types_pb2.SIMPLE_TYPE_BINARY)
    if s.HasField("primitive") and s.primitive.HasField("string_value"):
        return types_pb2.LiteralType(simple=types_pb2.SIMPLE_TYPE_STRING)
    return None


__all__ = [
    "DATA_FOLDER",
    "SCHEME",
    "DataRef",
    "DataStore",
    "Execution",
    "Upload",
    "execution_problem",
    "offloaded_problem",
    "parse_uri",
    "sha256_problem",
]
