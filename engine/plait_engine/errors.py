"""The engine's domain errors.

Every error the engine raises on purpose derives from `EngineError`. The gRPC layer maps them to
status codes in one place; nothing below it knows about gRPC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field: `field` is a path such as ``nodes[3].inputs.x``."""

    field: str
    description: str


class EngineError(Exception):
    """Root of the engine's domain errors."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(EngineError):  # noqa: N818 - named after the canonical status code
    """Input that can never be accepted as it is (maps to INVALID_ARGUMENT)."""

    def __init__(self, message: str, violations: Sequence[FieldViolation] = ()) -> None:
        super().__init__(message)
        self.violations: tuple[FieldViolation, ...] = tuple(violations)


class NotFound(EngineError):  # noqa: N818
    """An identifier that names nothing (maps to NOT_FOUND)."""


class AlreadyExists(EngineError):  # noqa: N818
    """Different content under an existing immutable identifier (maps to ALREADY_EXISTS)."""


class FailedPrecondition(EngineError):  # noqa: N818
    """The request is valid but the state does not allow it (maps to FAILED_PRECONDITION)."""


class ResourceExhausted(EngineError):  # noqa: N818
    """A request over a size or count limit (maps to RESOURCE_EXHAUSTED).

    Attributes:
        violations: The fields over their limit.
    """

    def __init__(self, message: str, violations: Sequence[FieldViolation] = ()) -> None:
        super().__init__(message)
        self.violations: tuple[FieldViolation, ...] = tuple(violations)


class PermissionDenied(EngineError):  # noqa: N818
    """The caller may not do this: its token's role or projects, or the engine's process
    policy, forbid it (maps to PERMISSION_DENIED).

    Args:
        message: What was refused and why; never a secret.
        violations: The fields that named what was refused (``tasks[0].process.command``).
    """

    def __init__(self, message: str, violations: Sequence[FieldViolation] = ()) -> None:
        super().__init__(message)
        self.violations: tuple[FieldViolation, ...] = tuple(violations)


class Unauthenticated(EngineError):  # noqa: N818
    """The call carries no token, or one the engine does not know (maps to UNAUTHENTICATED)."""
