"""Offloaded values: reading and writing them through the engine's `DataService`.

A value larger than the engine's inline limit travels as an `OffloadedLiteral`: a
``plait-data://`` URI, the size and SHA-256 of the serialized `Literal`, and its type. Workers
read such inputs before calling the task and upload outputs over the limit; clients read
outputs and upload large execution inputs. Bytes move in chunks well below the message limit,
so a value of any size crosses machines without sharing a disk. Reads resume at the last byte
received when the stream breaks, and every payload is checked against its SHA-256.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import grpc
from plaitidl.core.v1 import identifier_pb2, literals_pb2, types_pb2
from plaitidl.service.v1 import data_service_pb2 as ds
from plaitidl.service.v1 import data_service_pb2_grpc as ds_grpc

from plait._errors import RpcError

INLINE_LIMIT = 1 << 20
"""Values whose serialized literal is larger are offloaded (the engine's default limit)."""
CHUNK_BYTES = 256 << 10
_RESUMABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
_RETRIES = 5

ErrorMap = Callable[[grpc.RpcError], Exception]


def _rpc_error(err: grpc.RpcError) -> Exception:
    code = err.code() if isinstance(err, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = err.details() if isinstance(err, grpc.Call) else str(err)
    return RpcError(code.name, details or "")


class DataClient:
    """Reads and writes offloaded values of one engine.

    Args:
        channel: A channel to the engine.
        metadata: Sent with every call (the token).
        on_error: Turns a failed call into the exception raised (a plain `RpcError` by default).
        chunk_bytes: Bytes per uploaded message.
    """

    def __init__(
        self,
        channel: grpc.Channel,
        metadata: Sequence[tuple[str, str]] = (),
        *,
        on_error: ErrorMap = _rpc_error,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self._stub = ds_grpc.DataServiceStub(channel)
        self._metadata = tuple(metadata)
        self._on_error = on_error
        self._chunk = chunk_bytes

    # -- reading -------------------------------------------------------------------------
    def read_bytes(self, off: literals_pb2.OffloadedLiteral) -> bytearray:
        """The serialized literal behind `off`, checked against its size and SHA-256.

        Raises:
            RpcError: The engine refused (NOT_FOUND, DATA_LOSS, ...) or the bytes do not match
                the reference (code ``DATA_LOSS``).
        """
        buf = bytearray()
        digest = hashlib.sha256()
        header: ds.ReadDataResponse | None = None
        retries = 0
        while True:
            request = ds.ReadDataRequest(uri=off.uri, offset=len(buf))
            received = len(buf)
            try:
                for response in self._stub.ReadData(request, metadata=self._metadata):
                    if header is None:
                        header = response
                    buf += response.chunk
                    digest.update(response.chunk)
                break
            except grpc.RpcError as err:
                code = err.code() if isinstance(err, grpc.Call) else None
                progressed = len(buf) > received
                retries = 0 if progressed else retries + 1
                if code not in _RESUMABLE or retries > _RETRIES:
                    raise self._on_error(err) from None
                time.sleep(0.1 * 2**retries * random.uniform(0.5, 1.0))
        expected_sha = off.sha256 or (header.sha256 if header is not None else "")
        expected_size = off.size_bytes or (header.size_bytes if header is not None else 0)
        if digest.hexdigest() != expected_sha or len(buf) != expected_size:
            raise RpcError(
                "DATA_LOSS",
                f"the data read from {off.uri} ({len(buf)} bytes) does not match its reference "
                f"({expected_size} bytes, SHA-256 {expected_sha})",
            )
        return buf

    def read(self, off: literals_pb2.OffloadedLiteral) -> literals_pb2.Literal:
        """The literal behind `off`."""
        return literals_pb2.Literal.FromString(self.read_bytes(off))  # type: ignore[arg-type]

    def resolve_map(self, lm: literals_pb2.LiteralMap) -> literals_pb2.LiteralMap:
        """`lm` with its offloaded literals read (`lm` itself when it has none)."""
        if not any(lit.HasField("offloaded") for lit in lm.literals.values()):
            return lm
        out = literals_pb2.LiteralMap()
        for name, lit in lm.literals.items():
            if lit.HasField("offloaded"):
                out.literals[name].CopyFrom(self.read(lit.offloaded))
            else:
                out.literals[name].CopyFrom(lit)
        return out

    # -- writing -------------------------------------------------------------------------
    def write_bytes(
        self, execution: identifier_pb2.ExecutionIdentifier, data: bytes
    ) -> ds.WriteDataResponse:
        """Upload a serialized literal for an execution; the answer holds its URI."""
        sha = hashlib.sha256(data).hexdigest()

        def requests() -> Iterator[ds.WriteDataRequest]:
            header = ds.WriteDataHeader(execution_id=execution, size_bytes=len(data), sha256=sha)
            yield ds.WriteDataRequest(header=header)
            view = memoryview(data)
            for start in range(0, len(data), self._chunk):
                yield ds.WriteDataRequest(chunk=bytes(view[start : start + self._chunk]))

        try:
            response: ds.WriteDataResponse = self._stub.WriteData(
                requests(), metadata=self._metadata
            )
        except grpc.RpcError as err:
            raise self._on_error(err) from None
        return response

    def offload(
        self,
        execution: identifier_pb2.ExecutionIdentifier,
        lit: literals_pb2.Literal,
        type: types_pb2.LiteralType | None = None,
    ) -> literals_pb2.Literal:
        """Upload `lit` and return the `OffloadedLiteral` that references it."""
        data = lit.SerializeToString()
        stored = self.write_bytes(execution, data)
        off = literals_pb2.OffloadedLiteral(
            uri=stored.uri, size_bytes=len(data), sha256=stored.sha256
        )
        if type is not None:
            off.type.CopyFrom(type)
        return literals_pb2.Literal(offloaded=off)

    def offload_map(
        self,
        execution: identifier_pb2.ExecutionIdentifier,
        lm: literals_pb2.LiteralMap,
        types: Mapping[str, types_pb2.LiteralType],
        limit: int = INLINE_LIMIT,
    ) -> literals_pb2.LiteralMap:
        """`lm` with every literal over `limit` serialized bytes uploaded and referenced
        (`lm` itself when none is)."""
        if lm.ByteSize() <= limit:
            return lm
        out = literals_pb2.LiteralMap()
        for name, lit in lm.literals.items():
            if not lit.HasField("offloaded") and lit.ByteSize() > limit:
                out.literals[name].CopyFrom(self.offload(execution, lit, types.get(name)))
            else:
                out.literals[name].CopyFrom(lit)
        return out


__all__ = ["CHUNK_BYTES", "INLINE_LIMIT", "DataClient"]
