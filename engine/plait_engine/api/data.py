"""`DataService` over the payload use cases: chunked reads and writes of offloaded values."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
from plaitidl.service.v1 import data_service_pb2 as ds
from plaitidl.service.v1 import data_service_pb2_grpc as ds_grpc

from plait_engine.errors import FieldViolation, InvalidArgument
from plait_engine.service.data import DataLoss, DataService, TooLarge, execution_of

Context = grpc.aio.ServicerContext[Any, Any]


class DataServicer(ds_grpc.DataServiceServicer):
    """Streams payloads in and out.

    Args:
        data: The payload use cases.
    """

    def __init__(self, data: DataService) -> None:
        self._data = data

    async def ReadData(  # noqa: N802 - gRPC method name
        self, request: ds.ReadDataRequest, context: Context
    ) -> AsyncIterator[ds.ReadDataResponse]:
        """See `DataService.ReadData`."""
        first = True
        try:
            async for chunk in self._data.read(request.uri, request.offset):
                out = ds.ReadDataResponse(chunk=chunk.data)
                if first:
                    out.size_bytes, out.sha256 = chunk.size, chunk.sha256
                    first = False
                yield out
        except DataLoss as exc:
            await context.abort(grpc.StatusCode.DATA_LOSS, exc.message)

    async def WriteData(  # noqa: N802
        self, request_iterator: AsyncIterator[ds.WriteDataRequest], context: Context
    ) -> ds.WriteDataResponse:
        """See `DataService.WriteData`."""
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument(
                "the first message of WriteData must be the header",
                [FieldViolation("header", "send the header first, then the chunks")],
            )
        header = first.header
        execution = execution_of(header.execution_id, "header.execution_id")

        async def chunks() -> AsyncIterator[bytes]:
            async for message in requests:
                if message.WhichOneof("part") != "chunk":
                    raise InvalidArgument(
                        "only the first message of WriteData may be a header",
                        [FieldViolation("chunk", "send bytes after the header")],
                    )
                yield message.chunk

        try:
            ref = await self._data.write(execution, header.size_bytes, header.sha256, chunks())
        except TooLarge as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, exc.message)
            raise  # unreachable: abort raises
        return ds.WriteDataResponse(uri=ref.uri, size_bytes=header.size_bytes, sha256=ref.sha256)


__all__ = ["DataServicer"]
