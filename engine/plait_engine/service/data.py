"""Offloaded payloads: the use cases of `DataService`, and offloading of large values.

A value above the inline limit (`EngineConfig.max_literal_bytes`) never travels inline in a
response: it is stored once under its execution (see `plait_engine.blob.data`) and sent as an
`OffloadedLiteral`, which workers, clients and other languages read here in chunks. Workers and
clients upload large values here too, before referencing them.

Scope: a payload belongs to the project of its execution. `project_of_uri` is the one function
the auth layer uses for `ReadData` (the project is part of the URI); for `WriteData` it is the
header's ``execution_id.project`` (`execution_of`).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import BinaryIO

from plaitidl.core.v1 import identifier_pb2, literals_pb2, types_pb2

from plait_engine import ids
from plait_engine.blob.data import (
    DataRef,
    DataStore,
    Execution,
    execution_problem,
    offloaded_problem,
    parse_uri,
    sha256_problem,
)
from plait_engine.errors import EngineError, FieldViolation, InvalidArgument, NotFound

DEFAULT_MAX_UPLOAD_BYTES = 16 << 30
"""The largest payload `WriteData` accepts by default."""
_DEFAULT_CHUNK = 1 << 20
_WRITE_BUFFER = 4 << 20


class DataLoss(EngineError):  # noqa: N818 - named after the canonical status code
    """Stored bytes do not match their checksum (maps to DATA_LOSS)."""


class TooLarge(EngineError):  # noqa: N818
    """An upload larger than the engine accepts (maps to RESOURCE_EXHAUSTED)."""


def project_of_uri(uri: str) -> str:
    """The project a payload belongs to: what a token must be scoped to in order to read it.

    Args:
        uri: A ``plait-data://`` URI.

    Raises:
        InvalidArgument: Not a URI the engine builds (field ``uri``).
    """
    return _ref(uri).project


def execution_of(eid: identifier_pb2.ExecutionIdentifier, field: str) -> Execution:
    """``(project, domain, name)`` of an execution id, defaults applied.

    Raises:
        InvalidArgument: A part that cannot name stored data (naming `field`).
    """
    execution = (eid.project or ids.DEFAULT_PROJECT, eid.domain or ids.DEFAULT_DOMAIN, eid.name)
    problem = execution_problem(execution) if eid.name else "an execution name is required"
    if problem:
        raise InvalidArgument(problem, [FieldViolation(field, problem)])
    return execution


def _ref(uri: str) -> DataRef:
    try:
        return parse_uri(uri)
    except ValueError as exc:
        raise InvalidArgument(str(exc), [FieldViolation("uri", str(exc))]) from None


@dataclass(frozen=True)
class Chunk:
    """One piece of a payload being read.

    Attributes:
        data: The bytes.
        size: The payload's whole size.
        sha256: The payload's checksum.
    """

    data: bytes
    size: int
    sha256: str


class DataService:
    """Reads, writes and offloads payloads.

    Args:
        store: The payloads in the object store.
        inline_limit: The largest literal sent inline (serialized bytes).
        chunk_bytes: Bytes per chunk read (keep it well below the message limit).
        max_upload_bytes: The largest payload accepted by `write`.
    """

    def __init__(
        self,
        store: DataStore,
        inline_limit: int,
        *,
        chunk_bytes: int = _DEFAULT_CHUNK,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    ) -> None:
        self.store = store
        self.inline_limit = inline_limit
        self.chunk_bytes = max(1, chunk_bytes)
        self.max_upload_bytes = max_upload_bytes

    # -- reading -----------------------------------------------------------------------
    async def read(self, uri: str, offset: int = 0) -> AsyncIterator[Chunk]:
        """The payload's bytes from `offset`, in chunks; at least one chunk.

        The whole payload is hashed (also the part before `offset`) and checked against its
        checksum before the stream ends.

        Raises:
            InvalidArgument: A malformed URI, or an offset past the end.
            NotFound: No such payload (never written, or its execution was deleted).
            DataLoss: The stored bytes do not match the checksum.
        """
        ref = _ref(uri)
        try:
            opened = await asyncio.to_thread(self.store.open, ref)
        except FileNotFoundError:
            raise NotFound(
                f"no data at {uri} (never written, or its execution was deleted)"
            ) from None
        f, size = opened.file, opened.size
        try:
            if opened.sha256 is not None and opened.sha256 != ref.sha256:
                raise DataLoss(
                    f"the data at {uri} is corrupt: its recorded SHA-256 is {opened.sha256}"
                )
            if offset > size:
                raise InvalidArgument(
                    f"offset {offset} is past the end of the {size}-byte payload",
                    [FieldViolation("offset", f"must be at most {size}")],
                )
            digest = hashlib.sha256()
            if offset:
                await asyncio.to_thread(_hash_prefix, f, offset, digest.update)
            first = True
            while True:
                data = await asyncio.to_thread(f.read, self.chunk_bytes)
                digest.update(data)
                if data or first:
                    yield Chunk(data, size, ref.sha256)
                first = False
                if not data:
                    break
        finally:
            await asyncio.to_thread(f.close)
        if digest.hexdigest() != ref.sha256:
            raise DataLoss(f"the data at {uri} is corrupt: its bytes do not match its SHA-256")

    # -- writing -----------------------------------------------------------------------
    async def write(
        self, execution: Execution, size: int, sha256: str, chunks: AsyncIterator[bytes]
    ) -> DataRef:
        """Store an upload atomically once its size and checksum check out.

        Raises:
            InvalidArgument: A bad header, or bytes that do not match it.
            TooLarge: More than `max_upload_bytes`.
        """
        problem = execution_problem(execution)
        if problem:
            raise InvalidArgument(problem, [FieldViolation("header.execution_id", problem)])
        sha256 = sha256.lower()
        problem = sha256_problem(sha256)
        if problem:
            raise InvalidArgument(problem, [FieldViolation("header.sha256", problem)])
        if size > self.max_upload_bytes:
            raise TooLarge(
                f"header.size_bytes {size} is over the {self.max_upload_bytes}-byte data limit"
            )
        upload = await asyncio.to_thread(self.store.upload, execution, size, sha256)
        try:
            buffer = bytearray()
            async for chunk in chunks:
                if upload.received + len(buffer) + len(chunk) > size:
                    raise ValueError(f"more bytes than header.size_bytes ({size})")
                buffer += chunk
                if len(buffer) >= _WRITE_BUFFER:
                    await asyncio.to_thread(upload.write, bytes(buffer))
                    buffer.clear()
            await asyncio.to_thread(upload.write, bytes(buffer))
            await asyncio.to_thread(upload.commit)
        except ValueError as exc:
            await asyncio.to_thread(upload.abort)
            raise InvalidArgument(f"upload refused: {exc}") from None
        except BaseException:
            await asyncio.to_thread(upload.abort)
            raise
        return DataRef(*execution, sha256)

    # -- offloading --------------------------------------------------------------------
    async def offload_large(
        self,
        execution: Execution,
        lm: literals_pb2.LiteralMap,
        types: Mapping[str, types_pb2.LiteralType] | None = None,
    ) -> literals_pb2.LiteralMap:
        """`lm` with every literal above the inline limit stored and sent as a reference.

        What `GetExecutionData` and `GetNodeExecutionData` answer, so that no response exceeds
        the message limit however large the values are.

        Args:
            execution: Whose data the values are.
            lm: The values.
            types: Declared types by name, recorded in the references when known.
        """
        if lm.ByteSize() <= self.inline_limit:
            return lm
        return await asyncio.to_thread(
            self.store.offload_map, execution, lm, self.inline_limit, types
        )

    async def check_inputs(
        self, eid: identifier_pb2.ExecutionIdentifier, inputs: literals_pb2.LiteralMap
    ) -> None:
        """Refuse `CreateExecution` inputs that reference data the execution may not use.

        Large inputs are uploaded with `write` for the execution about to be created, so its
        name must be given (the URIs name it); see `check_offloaded`.

        Raises:
            InvalidArgument: Naming the request field.
        """
        if not any(lit.HasField("offloaded") for lit in inputs.literals.values()):
            return
        if not eid.name:
            problem = "set the execution's name: its offloaded inputs were uploaded for it"
            raise InvalidArgument(problem, [FieldViolation("name", problem)])
        await self.check_offloaded(execution_of(eid, "name"), inputs)

    async def check_offloaded(
        self, execution: Execution, lm: literals_pb2.LiteralMap, field: str = "inputs"
    ) -> None:
        """Refuse references in `lm` that are not stored payloads of `execution`.

        What a client may send as an execution's inputs: values it uploaded with `write` for
        that execution (so that deleting the execution deletes them, and nobody reads another
        project's data through it).

        Raises:
            InvalidArgument: Naming each offending input.
        """
        violations: list[FieldViolation] = []
        for name, lit in lm.literals.items():
            if not lit.HasField("offloaded"):
                continue
            problem = offloaded_problem(lit.offloaded, execution)
            if problem is None and not await asyncio.to_thread(
                self.store.exists, parse_uri(lit.offloaded.uri)
            ):
                problem = f"no data at {lit.offloaded.uri}: upload it with WriteData first"
            if problem:
                violations.append(FieldViolation(f"{field}.{name}", problem))
        if violations:
            raise InvalidArgument(
                f"{len(violations)} offloaded value(s) cannot be used", violations
            )


def _hash_prefix(f: BinaryIO, offset: int, update: Callable[[bytes], None]) -> None:
    left = offset
    while left:
        data = f.read(min(left, _WRITE_BUFFER))
        if not data:
            break
        update(data)
        left -= len(data)


__all__ = [
    "DEFAULT_MAX_UPLOAD_BYTES",
    "Chunk",
    "DataLoss",
    "DataService",
    "TooLarge",
    "execution_of",
    "project_of_uri",
]
