"""Domain errors to gRPC status, in one place; requests that do not parse.

`ErrorInterceptor` wraps every handler of the server (the engine's services, health and
reflection): what a handler raises becomes a status (`to_status`), error details are trimmed so
the trailers stay far below gRPC's metadata limits, and a request whose bytes are not a valid
message is answered INVALID_ARGUMENT without reaching the handler (and without a traceback in
the log). `plait_engine.api.auth` builds on the same handler rewrapping.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
import grpc.aio
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from plait_engine.errors import (
    AlreadyExists,
    EngineError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)

log = logging.getLogger("plait_engine.api")

_CODES: list[tuple[type[EngineError], grpc.StatusCode, int]] = [
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT, code_pb2.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND, code_pb2.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS, code_pb2.ALREADY_EXISTS),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION, code_pb2.FAILED_PRECONDITION),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED, code_pb2.RESOURCE_EXHAUSTED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED, code_pb2.PERMISSION_DENIED),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED, code_pb2.UNAUTHENTICATED),
]

# gRPC clients refuse trailers over 8 KiB (soft limit) to 16 KiB (hard limit). The status
# travels twice: percent-encoded in `grpc-message` (up to 3 bytes per byte) and base64-encoded
# in `grpc-status-details-bin` (4/3). These budgets keep both together under ~6 KiB.
MAX_STATUS_MESSAGE_BYTES = 512
MAX_DETAILS_BYTES = 2560
_MAX_FIELD_BYTES = 200
_MAX_DESCRIPTION_BYTES = 400
# Room kept in the details budget for the violation that counts the ones left out.
_MORE_RESERVE = 200

Context = grpc.aio.ServicerContext[Any, Any]
Behavior = Callable[..., Any]
# grpc's classes are not subscriptable at run time: the aliases are for the type checker.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[Handler]]"
# Rewraps a handler's behavior; gets the handler to know its request and response shapes.
Wrap: TypeAlias = "Callable[[Behavior, Handler], Behavior]"


def clip(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` bytes of UTF-8, saying how much was cut."""
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    kept = data[: max(0, max_bytes - 40)].decode(errors="ignore")
    return f"{kept}... ({len(text) - len(kept)} more characters)"


def _bad_request(violations: tuple[FieldViolation, ...]) -> error_details_pb2.BadRequest:
    """The violations that fit the trailer budget, then one saying how many were left out."""
    bad = error_details_pb2.BadRequest()
    used = 0
    for i, v in enumerate(violations):
        one = error_details_pb2.BadRequest.FieldViolation(
            field=clip(v.field, _MAX_FIELD_BYTES),
            description=clip(v.description, _MAX_DESCRIPTION_BYTES),
        )
        size = one.ByteSize() + 3  # the field's tag and length
        if used + size > MAX_DETAILS_BYTES - _MORE_RESERVE:
            left = len(violations) - i
            bad.field_violations.add(
                field="",
                description=(
                    f"{left} more violation(s) not shown here (error details must fit gRPC "
                    "trailers); RegistryService.ValidateTemplates returns them in its response"
                ),
            )
            break
        bad.field_violations.append(one)
        used += size
    return bad


def to_status(exc: BaseException) -> grpc.Status:
    """The gRPC status an exception raised by a handler becomes.

    Args:
        exc: What the handler raised.

    Returns:
        A status whose trailing metadata carries a ``google.rpc.Status`` (with a
        ``BadRequest`` detail listing the field violations of `InvalidArgument` and
        `PermissionDenied`). The message and the violations are trimmed to fit gRPC's
        trailer limits: the first violations are kept, then one saying how many more there are.
    """
    for cls, _, code in _CODES:
        if isinstance(exc, cls):
            assert isinstance(exc, EngineError)
            message = clip(exc.message, MAX_STATUS_MESSAGE_BYTES)
            status = status_pb2.Status(code=code, message=message)
            violations = getattr(exc, "violations", ())
            if violations:
                status.details.add().Pack(_bad_request(violations))
            return rpc_status.to_status(status)
    return rpc_status.to_status(
        status_pb2.Status(
            code=code_pb2.INTERNAL,
            message=f"internal error: {type(exc).__name__}: {str(exc)[:200]}",
        )
    )


async def abort_with(context: Context, exc: BaseException) -> None:
    """End the call with the status of `exc` (logged with its traceback unless it is one of
    the engine's own errors)."""
    if not isinstance(exc, EngineError):
        log.error("handler failed", exc_info=exc)
    status = to_status(exc)
    await context.abort(status.code, status.details, status.trailing_metadata)


@dataclass(frozen=True)
class Unparseable:
    """What a request deserializes to when its bytes are not a valid message."""

    type_name: str

    def error(self) -> InvalidArgument:
        """The refusal of the request."""
        return InvalidArgument(f"request is not a valid {self.type_name}")


def is_unparseable(request: object) -> bool:
    """Whether a request (as handlers receive it) did not parse."""
    return isinstance(request, Unparseable)


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """A deserializer that returns `Unparseable` instead of raising.

    gRPC calls it before any handler code runs; an exception there is logged by grpc with a
    traceback and answered UNKNOWN. The handler wrapper answers `Unparseable` instead.
    """
    if deserializer is None:
        return None
    owner = getattr(deserializer, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    name = str(getattr(descriptor, "full_name", "") or "request message")

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:
            return Unparseable(name)

    return parse


def rewrap(
    handler: Handler,
    wrap: Wrap,
    request_deserializer: Callable[[bytes], Any] | None = None,
) -> Handler:
    """A handler like `handler` whose behavior is ``wrap(behavior, handler)``.

    Args:
        handler: The handler to wrap.
        wrap: Builds the new behavior.
        request_deserializer: Replaces the handler's deserializer when given.
    """
    deserializer = request_deserializer or handler.request_deserializer
    serializer = handler.response_serializer
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            wrap(handler.unary_unary, handler), deserializer, serializer
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            wrap(handler.unary_stream, handler), deserializer, serializer
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            wrap(handler.stream_unary, handler), deserializer, serializer
        )
    assert handler.stream_stream is not None
    return grpc.stream_stream_rpc_method_handler(
        wrap(handler.stream_stream, handler), deserializer, serializer
    )


async def iterate(result: Any) -> AsyncIterator[Any]:
    """The responses of a streaming behavior's result.

    A grpc.aio streaming handler either is an async generator or a coroutine that writes with
    ``context.write`` (the health service's ``Watch``); both are served through this.
    """
    if inspect.isawaitable(result):
        await result
        return
    async for item in result:
        yield item


async def _checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, Unparseable):
            raise request.error()
        yield request


def _checked(request: Any, handler: Handler) -> Any:
    if handler.request_streaming:
        return _checked_stream(request)
    if isinstance(request, Unparseable):
        raise request.error()
    return request


def _map_errors(behavior: Behavior, handler: Handler) -> Behavior:
    if handler.response_streaming:

        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            try:
                async for item in iterate(behavior(_checked(request, handler), context)):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await abort_with(context, exc)

        return stream

    async def unary(request: Any, context: Context) -> Any:
        try:
            return await behavior(_checked(request, handler), context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await abort_with(context, exc)

    return unary


class ErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Maps what handlers raise to gRPC status, for unary and streaming RPCs alike.

    `InvalidArgument` becomes INVALID_ARGUMENT with a ``google.rpc.BadRequest`` detail,
    `NotFound` NOT_FOUND, `AlreadyExists` ALREADY_EXISTS, `FailedPrecondition`
    FAILED_PRECONDITION, `PermissionDenied` PERMISSION_DENIED, `Unauthenticated`
    UNAUTHENTICATED; anything else is logged with its traceback and becomes INTERNAL, so no
    input can take the server down. A request that does not parse is INVALID_ARGUMENT
    ("request is not a valid <MessageType>").
    """

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler:
        """Wrap the handler's behavior in the error mapping, and its deserializer."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return rewrap(handler, _map_errors, _tolerant(handler.request_deserializer))
