"""Retry budgets and timeouts of task attempts.

A failed attempt is retried when its error is recoverable and its budget lasts: user errors
(the task's own code) on the task's `retries`, system errors (a lost worker, an expired lease,
a crashed process) on their own budget. A timeout is a recoverable user error per attempt.
"""

from __future__ import annotations

import random

from plaitidl.core.v1 import errors_pb2, tasks_pb2

from plait_engine.scheduler.state import NodeExec

SYSTEM = errors_pb2.ExecutionError.KIND_SYSTEM
DEFAULT_BACKOFF = 1.0
DEFAULT_MULTIPLIER = 2.0
DEFAULT_MAX_BACKOFF = 300.0
DEFAULT_JITTER = 0.2
_random = random.Random()


def user_budget(n: NodeExec) -> int:
    """Retries allowed for recoverable user errors (node override, else the task's)."""
    md = n.node.metadata
    if md.HasField("retries"):
        return md.retries.retries
    assert n.task is not None
    return n.task.metadata.retries.retries


def system_budget(n: NodeExec, default: int) -> int:
    """Retries allowed for system errors (node override, the task's, else `default`)."""
    md = n.node.metadata
    if md.HasField("retries") and md.retries.HasField("system_retries"):
        return md.retries.system_retries
    assert n.task is not None
    r = n.task.metadata.retries
    return r.system_retries if r.HasField("system_retries") else default


def should_retry(n: NodeExec, err: errors_pb2.ExecutionError, system_default: int) -> bool:
    """Count the failed attempt on its budget; whether another attempt is allowed."""
    if err.kind == SYSTEM:
        n.system_failures += 1
        return n.system_failures <= system_budget(n, system_default)
    n.user_failures += 1
    return err.recoverable and n.user_failures <= user_budget(n)


def timeout(n: NodeExec, default: float) -> float:
    """Seconds an attempt may run (node override, the task's, else `default`; 0: no limit)."""
    md = n.node.metadata
    if md.HasField("timeout"):
        return md.timeout.ToTimedelta().total_seconds()
    if n.task is not None and n.task.metadata.HasField("timeout"):
        return n.task.metadata.timeout.ToTimedelta().total_seconds()
    return default


def _strategy(n: NodeExec) -> tasks_pb2.RetryStrategy:
    md = n.node.metadata
    if md.HasField("retries"):
        return md.retries
    assert n.task is not None
    return n.task.metadata.retries


def backoff(n: NodeExec, err: errors_pb2.ExecutionError) -> float:
    """Seconds to wait before the next attempt: none after a system error; after the k-th
    recoverable user error, ``backoff * multiplier**(k-1)`` capped at `max_backoff`, with
    `jitter` of it drawn at random (so that many retrying nodes spread out)."""
    if err.kind == SYSTEM:
        return 0.0
    r = _strategy(n)
    base = r.backoff.ToTimedelta().total_seconds() if r.HasField("backoff") else DEFAULT_BACKOFF
    mult = r.backoff_multiplier if r.HasField("backoff_multiplier") else DEFAULT_MULTIPLIER
    cap = (
        r.max_backoff.ToTimedelta().total_seconds()
        if r.HasField("max_backoff")
        else DEFAULT_MAX_BACKOFF
    )
    jitter = r.backoff_jitter if r.HasField("backoff_jitter") else DEFAULT_JITTER
    if base <= 0:
        return 0.0
    delay = min(cap, base * max(mult, 1.0) ** max(n.user_failures - 1, 0))
    spread = min(max(jitter, 0.0), 1.0) * delay
    return max(0.0, delay - spread + 2 * spread * _random.random())
