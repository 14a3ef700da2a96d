"""Typed errors of the store contract. Callers match on the type, never on a message."""

from __future__ import annotations

from collections.abc import Iterable


class StoreError(Exception):
    """Root of the store's errors."""


class Conflict(StoreError):  # noqa: N818 - the contract's name for it
    """A write collides with what is stored: different content under an immutable template
    key, or an execution name already taken."""


class NotFound(StoreError):  # noqa: N818 - the contract's name for it
    """The record a write refers to does not exist."""


class OwnershipLost(StoreError):  # noqa: N818
    """The writer no longer owns these executions (another replica claimed them, or they were
    deleted): nothing of the batch was written.

    Attributes:
        eids: The executions whose fence failed.
    """

    def __init__(self, eids: Iterable[int]) -> None:
        self.eids = frozenset(eids)
        super().__init__(f"ownership lost of executions {sorted(self.eids)}")
