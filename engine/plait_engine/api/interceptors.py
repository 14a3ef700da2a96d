"""Server interceptors: domain errors to gRPC status (in one place) and token auth."""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from plait_engine.errors import (
    AlreadyExists,
    EngineError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)

log = logging.getLogger("plait_engine.api")

_CODES: list[tuple[type[EngineError], grpc.StatusCode, int]] = [
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT, code_pb2.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND, code_pb2.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS, code_pb2.ALREADY_EXISTS),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION, code_pb2.FAILED_PRECONDITION),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED, code_pb2.RESOURCE_EXHAUSTED),
]

# Health checks stay open so that load balancers and orchestrators need no token.
_OPEN_PREFIXES = ("/grpc.health.v1.Health/",)

Context = grpc.aio.ServicerContext[Any, Any]


def to_status(exc: BaseException) -> grpc.Status:
    """The gRPC status an exception raised by a handler becomes.

    Args:
        exc: What the handler raised.

    Returns:
        A status whose trailing metadata carries a ``google.rpc.Status`` (with a
        ``BadRequest`` detail listing the field violations for `InvalidArgument`).
    """
    for cls, _, code in _CODES:
        if isinstance(exc, cls):
            assert isinstance(exc, EngineError)
            status = status_pb2.Status(code=code, message=exc.message)
            if isinstance(exc, InvalidArgument | ResourceExhausted) and exc.violations:
                bad = error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in exc.violations
                    ]
                )
                status.details.add().Pack(bad)
            return rpc_status.to_status(status)
    return rpc_status.to_status(
        status_pb2.Status(
            code=code_pb2.INTERNAL,
            message=f"internal error: {type(exc).__name__}: {str(exc)[:200]}",
        )
    )


async def _abort(context: Context, exc: BaseException) -> None:
    if not isinstance(exc, EngineError):
        log.error("handler failed", exc_info=exc)
    status = to_status(exc)
    await context.abort(status.code, status.details, status.trailing_metadata)


_Behavior = Callable[..., Any]
_Wrap = Callable[[_Behavior, bool], _Behavior]


def _rewrap(handler: grpc.RpcMethodHandler[Any, Any], wrap: _Wrap) -> Any:
    """A handler like `handler` whose behavior is `wrap(behavior, streams_responses)`."""
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            wrap(handler.unary_unary, False),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            wrap(handler.unary_stream, True),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            wrap(handler.stream_unary, False),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    assert handler.stream_stream is not None
    return grpc.stream_stream_rpc_method_handler(
        wrap(handler.stream_stream, True),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _map_errors(behavior: _Behavior, streams: bool) -> _Behavior:
    if streams:

        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            try:
                async for item in behavior(request, context):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort(context, exc)

        return stream

    async def unary(request: Any, context: Context) -> Any:
        try:
            return await behavior(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, exc)

    return unary


class ErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Maps what handlers raise to gRPC status, for unary and streaming RPCs alike.

    `InvalidArgument` becomes INVALID_ARGUMENT with a ``google.rpc.BadRequest`` detail,
    `NotFound` NOT_FOUND, `AlreadyExists` ALREADY_EXISTS, `FailedPrecondition`
    FAILED_PRECONDITION; anything else is logged with its traceback and becomes INTERNAL, so
    no input can take the server down.
    """

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """Wrap the handler's behavior in the error mapping."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return _rewrap(handler, _map_errors)  # type: ignore[no-any-return]


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Refuses every RPC but health checks unless it carries ``authorization: Bearer <token>``.

    Args:
        token: The shared secret.
    """

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def _allowed(self, details: grpc.HandlerCallDetails) -> bool:
        if details.method.startswith(_OPEN_PREFIXES):
            return True
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                got = value if isinstance(value, bytes) else value.encode()
                # Constant-time comparison: the token must not leak through timing.
                return hmac.compare_digest(got, self._expected)
        return False

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """Pass authorized calls on; answer the others UNAUTHENTICATED."""
        handler = await continuation(handler_call_details)
        if handler is None or self._allowed(handler_call_details):
            return handler

        def refuse(_behavior: _Behavior, streams: bool) -> _Behavior:
            async def deny(request: Any, context: Context) -> Any:
                await context.abort(
                    grpc.StatusCode.UNAUTHENTICATED,
                    "missing or invalid token: send metadata 'authorization: Bearer <token>'",
                )

            if not streams:
                return deny

            async def deny_stream(request: Any, context: Context) -> AsyncIterator[Any]:
                await deny(request, context)
                yield None  # pragma: no cover - abort raises first

            return deny_stream

        return _rewrap(handler, refuse)  # type: ignore[no-any-return]
