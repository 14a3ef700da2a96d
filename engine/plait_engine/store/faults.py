"""A store wrapper that injects faults, to prove the engine survives them.

Each wrapped call may fail *before* it reaches the real store (nothing happened) or *after* it
(it happened, but the caller sees an error): the second is the case a remote database gives
when a connection drops during a commit.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from plait_engine.store.contract import Store
from plait_engine.store.errors import StoreError

_T = TypeVar("_T")


class InjectedFaultError(StoreError):
    """A fault injected by `FaultyStore`."""


class FaultyStore:
    """Wraps a `Store`; calls to `methods` fail at `rate`, half before and half after.

    Args:
        inner: The real store.
        rate: Probability that a call fails.
        methods: The methods that may fail (default: `apply`).
        seed: Seed of the random source, for reproducible runs.

    Attributes:
        injected_before: Faults raised before reaching the store.
        injected_after: Faults raised after the store did the work.
    """

    def __init__(
        self,
        inner: Store,
        rate: float,
        methods: frozenset[str] = frozenset({"apply"}),
        seed: int = 0,
    ) -> None:
        self._inner = inner
        self._rate = rate
        self._methods = methods
        self._random = random.Random(seed)
        self.injected_before = 0
        self.injected_after = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in self._methods or not callable(attr):
            return attr
        return self._wrap(attr)

    def _wrap(self, fn: Callable[..., Awaitable[_T]]) -> Callable[..., Awaitable[_T]]:
        async def call(*args: Any, **kwargs: Any) -> _T:
            roll = self._random.random()
            if roll < self._rate / 2:
                self.injected_before += 1
                raise InjectedFaultError(f"injected before {fn.__name__}")
            out = await fn(*args, **kwargs)
            if roll < self._rate:
                self.injected_after += 1
                raise InjectedFaultError(f"injected after {fn.__name__}")
            return out

        return call
