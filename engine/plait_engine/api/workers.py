"""`WorkerService` over `WorkerSessions`: the thin gRPC adapter of worker streams.

Assignments reach the stream already encoded (`plait_engine.executors.sessions.
AssignmentEncoder`), so the service is registered with a serializer that passes bytes through
(`add_worker_service`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import grpc.aio
from plaitidl.service.v1 import worker_service_pb2 as ws

from plait_engine.api.auth import current_principal
from plait_engine.errors import InvalidArgument
from plait_engine.executors.workers import (
    Close,
    WorkerSession,
    WorkerSessions,
    validate_hello,
)


class WorkerServicer:
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
    ) -> AsyncIterator[ws.SessionResponse | bytes]:
        """One worker's stream: hello, welcome, then assignments out and results in (a
        response may be its bytes already: see `add_worker_service`)."""
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
                yield item.payload
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


def _serialize(message: ws.SessionResponse | bytes) -> bytes:
    return message if isinstance(message, bytes) else message.SerializeToString()


def add_worker_service(servicer: WorkerServicer, server: grpc.aio.Server) -> None:
    """Register `servicer` on `server` (as the generated ``add_WorkerServiceServicer_to_server``
    does, but its responses may be bytes already)."""
    handlers = {
        "Session": grpc.stream_stream_rpc_method_handler(
            servicer.Session,
            request_deserializer=ws.SessionRequest.FromString,
            response_serializer=_serialize,
        )
    }
    name = ws.DESCRIPTOR.services_by_name["WorkerService"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)  # type: ignore[attr-defined]


__all__ = ["WorkerServicer", "add_worker_service"]
