"""`WorkerService` over `WorkerSessions`: the thin gRPC adapter of worker streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import grpc.aio
from plaitidl.service.v1 import worker_service_pb2 as ws
from plaitidl.service.v1 import worker_service_pb2_grpc as ws_grpc

from plait_engine.api.auth import current_principal
from plait_engine.errors import InvalidArgument
from plait_engine.executors.workers import (
    Close,
    WorkerSession,
    WorkerSessions,
    validate_hello,
)


class WorkerServicer(ws_grpc.WorkerServiceServicer):
    """`WorkerService` over `WorkerSessions`, for a `grpc.aio` server on the engine's loop.

    Args:
        sessions: The executor that owns sessions, leases and pending work.
    """

    def __init__(self, sessions: WorkerSessions) -> None:
        self._sessions = sessions

    async def Session(  # noqa: N802 - gRPC method name
        self,
        request_iterator: AsyncIterator[ws.SessionRequest],
        context: grpc.aio.ServicerContext[ws.SessionRequest, ws.SessionResponse],
    ) -> AsyncIterator[ws.SessionResponse]:
        """One worker's stream: hello, welcome, then assignments out and results in."""
        requests = aiter(request_iterator)
        try:
            first = await anext(requests)
        except StopAsyncIteration:
            return
        if first.WhichOneof("message") != "hello":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "first message must be hello")
        problem = validate_hello(first.hello)
        if problem is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        try:
            # A worker's token decides whose assignments it receives.
            session = self._sessions.open_session(first.hello, current_principal().projects)
        except RuntimeError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            raise  # unreachable: abort raises
        reader = asyncio.get_running_loop().create_task(self._read(session, requests))
        try:
            while True:
                item = await session.outbox.get()
                if isinstance(item, Close):
                    if item.code is not None:
                        await context.abort(item.code, item.message)
                    return
                yield item.message
                # The write completed: the worker's acknowledgement clock starts now.
                self._sessions.sent(session, item)
        finally:
            reader.cancel()
            self._sessions.close_session(session, "stream ended")

    async def _read(
        self, session: WorkerSession, requests: AsyncIterator[ws.SessionRequest]
    ) -> None:
        try:
            async for request in requests:
                self._sessions.handle(session, request)
        except ValueError as exc:
            self._sessions.close_session(session, str(exc), code=grpc.StatusCode.INVALID_ARGUMENT)
            return
        except InvalidArgument as exc:  # a message that does not parse
            self._sessions.close_session(
                session, exc.message, code=grpc.StatusCode.INVALID_ARGUMENT
            )
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the stream broke (worker gone): same as a closed stream
            self._sessions.close_session(session, f"stream failed: {type(exc).__name__}")
            return
        self._sessions.close_session(session, "the worker closed the stream or went away")


__all__ = ["WorkerServicer"]
