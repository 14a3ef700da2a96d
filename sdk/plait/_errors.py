"""The SDK's exceptions. `PlaitError` is the root of everything the SDK raises on purpose."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from plaitidl.core.v1 import errors_pb2

if TYPE_CHECKING:
    import grpc


class PlaitError(Exception):
    """Root of every error raised by the plait SDK."""


class PlaitTypeError(PlaitError, TypeError):
    """A type hint or a value does not fit plait's type system."""


class PlaitValueError(PlaitError, ValueError):
    """A value or an argument is wrong for reasons other than its type."""


class NonRetryableError(PlaitError):
    """Raise from a task to fail it without using its retry budget.

    Any other exception raised by a task is a recoverable user error: it is retried while the
    task's ``retries`` budget lasts.
    """


class ExecutionFailedError(PlaitError):
    """An execution ended FAILED or ABORTED; carries the engine's error.

    Attributes:
        execution: The execution's name.
        phase: ``FAILED`` or ``ABORTED``.
        error: The engine's ``ExecutionError`` (code, message, kind, node id).
    """

    def __init__(self, execution: str, phase: str, error: errors_pb2.ExecutionError) -> None:
        where = f" (node {error.node_id})" if error.node_id else ""
        super().__init__(
            f"execution {execution} {phase.lower()}{where}: {error.code}: {error.message}"
        )
        self.execution = execution
        self.phase = phase
        self.error = error

    @property
    def node(self) -> str:
        """The id of the node that failed; empty when the failure is not a node's."""
        return self.error.node_id


class RpcError(PlaitError):
    """The engine refused or failed a call.

    Attributes:
        code: The gRPC status code's name, e.g. ``"NOT_FOUND"``.
        message: The engine's message.
        violations: ``(field, description)`` pairs from a ``google.rpc.BadRequest`` detail,
            e.g. ``("inputs.x", "expected an integer, got a string")``.
    """

    def __init__(self, code: str, message: str, violations: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.violations = list(violations)


class InvalidArgumentError(RpcError):
    """The request can never succeed as it is (INVALID_ARGUMENT); see `violations`."""


class NotFoundError(RpcError):
    """The request names an entity or execution the engine does not know (NOT_FOUND)."""


class AlreadyExistsError(RpcError):
    """Different content under an existing immutable identifier (ALREADY_EXISTS)."""


class UnauthenticatedError(RpcError):
    """The engine wants a token and got none or a wrong one (UNAUTHENTICATED)."""


class UnavailableError(RpcError):
    """The engine cannot be reached (UNAVAILABLE)."""


class WorkerError(PlaitError):
    """The engine refused a worker (bad hello, bad token, refused registration).

    Attributes:
        code: The gRPC status code of the refusal, when there was one.
    """

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class HandlerNotFoundError(PlaitValueError):
    """A worker handler names no importable `@task` / `@dynamic`.

    Raised while a worker resolves a task; the runtime turns it into the attempt's error
    (code ``HandlerNotFound``), so user code does not see it.
    """
