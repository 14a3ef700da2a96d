"""Retry budgets and timeouts of task attempts.

A failed attempt is retried when its error is recoverable and its budget lasts: user errors
(the task's own code) on the task's `retries`, system errors (a lost worker, an expired lease,
a crashed process) on their own budget. A timeout is a recoverable user error per attempt.
"""

from __future__ import annotations

from plaitidl.core.v1 import errors_pb2

from plait_engine.scheduler.state import NodeExec

SYSTEM = errors_pb2.ExecutionError.KIND_SYSTEM


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
