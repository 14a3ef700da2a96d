"""The Connect protocol over HTTP/1.1, forwarded to the engine's own gRPC server.

Every call (``POST /plaitidl.service.v1.ExecutionService/ListExecutions``) is looked up by name
in the descriptor pool of the generated messages, its body decoded (Connect's JSON mapping or
binary protobuf), and sent over a loopback gRPC channel with generic bytes handlers, the
``Authorization`` header as metadata. The gRPC server answers as it answers any client: its
interceptors (token scopes, error mapping, limits) apply unchanged, and no second API exists.
Unary calls use ``application/json`` or ``application/proto``; server-streaming calls
``application/connect+json`` or ``application/connect+proto`` with enveloped messages and an
end-of-stream message. Errors become Connect's error JSON (its code, message and details, such
as the ``google.rpc.BadRequest`` field violations the engine attaches).
"""

from __future__ import annotations

import base64
import gzip
import json
import struct
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2

# The services the endpoint serves are found in the default descriptor pool: importing their
# generated modules puts them there.
from plaitidl.service.v1 import (  # noqa: F401
    data_service_pb2,
    execution_service_pb2,
    registry_service_pb2,
    schedule_service_pb2,
    worker_service_pb2,
)

# Connect's codes by gRPC status, with the HTTP status a unary error answers with.
_CODES: dict[grpc.StatusCode, tuple[str, int]] = {
    grpc.StatusCode.CANCELLED: ("canceled", 499),
    grpc.StatusCode.UNKNOWN: ("unknown", 500),
    grpc.StatusCode.INVALID_ARGUMENT: ("invalid_argument", 400),
    grpc.StatusCode.DEADLINE_EXCEEDED: ("deadline_exceeded", 504),
    grpc.StatusCode.NOT_FOUND: ("not_found", 404),
    grpc.StatusCode.ALREADY_EXISTS: ("already_exists", 409),
    grpc.StatusCode.PERMISSION_DENIED: ("permission_denied", 403),
    grpc.StatusCode.RESOURCE_EXHAUSTED: ("resource_exhausted", 429),
    grpc.StatusCode.FAILED_PRECONDITION: ("failed_precondition", 400),
    grpc.StatusCode.ABORTED: ("aborted", 409),
    grpc.StatusCode.OUT_OF_RANGE: ("out_of_range", 400),
    grpc.StatusCode.UNIMPLEMENTED: ("unimplemented", 501),
    grpc.StatusCode.INTERNAL: ("internal", 500),
    grpc.StatusCode.UNAVAILABLE: ("unavailable", 503),
    grpc.StatusCode.DATA_LOSS: ("data_loss", 500),
    grpc.StatusCode.UNAUTHENTICATED: ("unauthenticated", 401),
}
_HEADER = struct.Struct(">BI")
FLAG_COMPRESSED = 0x01
FLAG_END_STREAM = 0x02


class ConnectError(Exception):
    """A call answered with an error before or instead of reaching the engine.

    Args:
        code: The gRPC status it stands for.
        message: What went wrong.
        details: ``google.protobuf.Any`` messages to attach.
    """

    def __init__(self, code: grpc.StatusCode, message: str, details: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    @property
    def http_status(self) -> int:
        """The HTTP status of a unary answer with this error."""
        return _CODES.get(self.code, ("unknown", 500))[1]

    def to_json(self) -> dict[str, Any]:
        """Connect's error object: ``{"code", "message", "details"}``."""
        out: dict[str, Any] = {"code": _CODES.get(self.code, ("unknown", 500))[0]}
        if self.message:
            out["message"] = self.message
        details = [_detail_json(d) for d in self.details]
        if details:
            out["details"] = details
        return out

    @classmethod
    def from_rpc(cls, err: grpc.aio.AioRpcError) -> ConnectError:
        """The error a gRPC call ended with, details (``google.rpc.Status``) included."""
        details: tuple[Any, ...] = ()
        trailers: Any = err.trailing_metadata() or ()
        for key, value in trailers:
            if key == "grpc-status-details-bin" and isinstance(value, bytes):
                try:
                    details = tuple(status_pb2.Status.FromString(value).details)
                except DecodeError:
                    details = ()
        return cls(err.code(), err.details() or "", details)


def _detail_json(any_msg: Any) -> dict[str, Any]:
    type_name = str(any_msg.type_url).rsplit("/", 1)[-1]
    out: dict[str, Any] = {
        "type": type_name,
        "value": base64.b64encode(any_msg.value).decode().rstrip("="),
    }
    try:
        cls = message_factory.GetMessageClass(
            descriptor_pool.Default().FindMessageTypeByName(type_name)
        )
        out["debug"] = json_format.MessageToDict(cls.FromString(any_msg.value))
    except (KeyError, DecodeError):
        pass  # an unknown detail travels as bytes only
    return out


@dataclass(frozen=True)
class Method:
    """An RPC the endpoint forwards.

    Attributes:
        path: ``/package.Service/Method``.
        request: The request message class.
        response: The response message class.
        server_streaming: Whether the server sends a stream.
    """

    path: str
    request: type[Message]
    response: type[Message]
    server_streaming: bool


# Found methods by path; misses are not kept (any client may send any path).
_METHODS: dict[str, Method] = {}


def find_method(path: str) -> Method:
    """The method a request path names.

    Raises:
        ConnectError: UNIMPLEMENTED for an unknown service or method, or one whose client
            streams (HTTP/1.1 carries unary and server-streaming calls).
    """
    found = _METHODS.get(path) or _lookup(path)
    if found is None:
        raise ConnectError(
            grpc.StatusCode.UNIMPLEMENTED,
            f"{path} is not a unary or server-streaming method of this engine",
        )
    _METHODS[path] = found
    return found


def _lookup(path: str) -> Method | None:
    service_name, _, method_name = path.strip("/").rpartition("/")
    try:
        service = descriptor_pool.Default().FindServiceByName(service_name)
    except KeyError:
        return None
    md: MethodDescriptor | None = service.methods_by_name.get(method_name)
    if md is None or md.client_streaming:
        return None
    return Method(
        path=f"/{service_name}/{method_name}",
        request=message_factory.GetMessageClass(md.input_type),
        response=message_factory.GetMessageClass(md.output_type),
        server_streaming=md.server_streaming,
    )


@dataclass(frozen=True)
class Codec:
    """How messages travel in one call: JSON or binary protobuf."""

    json: bool

    @property
    def name(self) -> str:
        """``json`` or ``proto``."""
        return "json" if self.json else "proto"

    def decode(self, data: bytes, cls: type[Message]) -> bytes:
        """A request's body as the binary message gRPC sends.

        Raises:
            ConnectError: INVALID_ARGUMENT when the body is not a valid message of `cls`,
                naming the type and the problem.
        """
        if not self.json:
            return data
        try:
            msg = json_format.Parse(data.decode() or "{}", cls())
        except (json_format.ParseError, UnicodeDecodeError) as exc:
            raise ConnectError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request is not a valid {cls.DESCRIPTOR.full_name}: {exc}",
            ) from None
        return msg.SerializeToString()

    def encode(self, data: bytes, cls: type[Message]) -> bytes:
        """A response from the binary message gRPC returned."""
        if not self.json:
            return data
        as_dict = json_format.MessageToDict(cls.FromString(data))
        return json.dumps(as_dict, separators=(",", ":")).encode()


def unary_codec(content_type: str) -> Codec | None:
    """The codec of a unary call's content type, or None when it is not Connect's."""
    base = content_type.split(";", 1)[0].strip().lower()
    return {"application/json": Codec(True), "application/proto": Codec(False)}.get(base)


def stream_codec(content_type: str) -> Codec | None:
    """The codec of a streaming call's content type, or None when it is not Connect's."""
    base = content_type.split(";", 1)[0].strip().lower()
    table = {"application/connect+json": Codec(True), "application/connect+proto": Codec(False)}
    return table.get(base)


def envelope(flags: int, payload: bytes) -> bytes:
    """One enveloped message of a stream."""
    return _HEADER.pack(flags, len(payload)) + payload


def first_message(body: bytes, encoding: str) -> bytes:
    """The one message of a server-streaming request's body.

    Raises:
        ConnectError: INVALID_ARGUMENT when the body is not one enveloped message.
    """
    if len(body) < _HEADER.size:
        raise ConnectError(grpc.StatusCode.INVALID_ARGUMENT, "request has no enveloped message")
    flags, size = _HEADER.unpack_from(body)
    payload = body[_HEADER.size : _HEADER.size + size]
    if len(payload) != size or len(body) != _HEADER.size + size:
        raise ConnectError(
            grpc.StatusCode.INVALID_ARGUMENT, "request must be exactly one enveloped message"
        )
    if flags & FLAG_COMPRESSED:
        payload = decompress(payload, encoding)
    return payload


def decompress(data: bytes, encoding: str) -> bytes:
    """A request body (or message) in `encoding` (``identity`` or ``gzip``).

    Raises:
        ConnectError: UNIMPLEMENTED for another encoding, INVALID_ARGUMENT for bad gzip.
    """
    if encoding in ("", "identity"):
        return data
    if encoding != "gzip":
        raise ConnectError(grpc.StatusCode.UNIMPLEMENTED, f"unsupported encoding {encoding!r}")
    try:
        return gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise ConnectError(grpc.StatusCode.INVALID_ARGUMENT, f"bad gzip body: {exc}") from None


def end_stream(error: ConnectError | None) -> bytes:
    """The end-of-stream message: empty on success, else the error."""
    body: dict[str, Any] = {} if error is None else {"error": error.to_json()}
    return envelope(FLAG_END_STREAM, json.dumps(body, separators=(",", ":")).encode())


def call_metadata(headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The gRPC metadata of an HTTP request: its ``Authorization`` header."""
    auth = headers.get("Authorization")
    return (("authorization", auth),) if auth else ()


def call_timeout(headers: Mapping[str, str]) -> float | None:
    """The call's deadline from ``Connect-Timeout-Ms``, in seconds.

    Raises:
        ConnectError: INVALID_ARGUMENT for a value that is not a positive integer.
    """
    raw = headers.get("Connect-Timeout-Ms")
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 10:
        raise ConnectError(grpc.StatusCode.INVALID_ARGUMENT, f"bad Connect-Timeout-Ms {raw!r}")
    return int(raw) / 1000.0


class Forwarder:
    """Sends calls to the engine's gRPC server as bytes.

    Args:
        channel: A channel to the engine's own server.
    """

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._channel = channel

    async def unary(
        self,
        method: Method,
        request: bytes,
        metadata: tuple[tuple[str, str], ...],
        timeout: float | None,
    ) -> bytes:
        """One unary call.

        Raises:
            ConnectError: The engine answered with an error.
        """
        call = self._channel.unary_unary(method.path, None, None)
        try:
            response: bytes = await call(request, metadata=metadata, timeout=timeout)
        except grpc.aio.AioRpcError as err:
            raise ConnectError.from_rpc(err) from None
        return response

    async def stream(
        self,
        method: Method,
        request: bytes,
        metadata: tuple[tuple[str, str], ...],
        timeout: float | None,
    ) -> AsyncGenerator[bytes, None]:
        """The responses of a server-streaming call; the call is cancelled when the caller
        stops reading (a browser that went away).

        Raises:
            ConnectError: The engine ended the stream with an error.
        """
        start = self._channel.unary_stream(method.path, None, None)
        call = start(request, metadata=metadata, timeout=timeout)
        try:
            async for item in call:
                yield item
        except grpc.aio.AioRpcError as err:
            raise ConnectError.from_rpc(err) from None
        finally:
            call.cancel()
