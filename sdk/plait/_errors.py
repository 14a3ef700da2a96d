"""The SDK's exceptions. `PlaitError` is the root of everything the SDK raises on purpose."""

from __future__ import annotations


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
