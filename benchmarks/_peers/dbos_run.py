# mypy: disable-error-code="import-not-found,untyped-decorator,no-any-return"
"""One workload on DBOS Transact; prints one ``BENCH-JSON`` line.

Usage: ``python -m benchmarks._peers.dbos_run WORKLOAD`` in a Python that has DBOS. Its system
database is ``$PLAIT_BENCH_DBOS_URL`` (the parent passes a fresh database on a private, durable
PostgreSQL server) or, without it, a SQLite file in the current folder. DBOS runs workflows and
steps in threads of this process and checkpoints each one in that database.

The fan-out is DBOS's documented form for running many tasks concurrently: a workflow enqueues
one step per item on a queue and gathers the handles' results (``PLAIT_BENCH_DBOS_FANOUT=start``
starts each step as a background workflow with ``DBOS.start_workflow`` instead, no queue).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from dbos import DBOS

from benchmarks._peers._runner import Clock, workload_n

QUEUE = "fanout"


@DBOS.step()
def inc(x: int) -> int:
    """A no-op step: its input plus one."""
    return x + 1


@DBOS.workflow()
def fan_out(n: int) -> list[int]:
    """N concurrent `inc` steps, each a workflow of its own on the queue."""
    if os.environ.get("PLAIT_BENCH_DBOS_FANOUT") == "start":
        handles = [DBOS.start_workflow(inc, i) for i in range(n)]
    else:
        handles = [DBOS.enqueue_workflow(QUEUE, inc, i) for i in range(n)]
    return [h.get_result() for h in handles]


@DBOS.workflow()
def chain(n: int) -> int:
    """N `inc` steps in a line, each checkpointed before the next starts."""
    x = inc(0)
    for _ in range(n - 1):
        x = inc(x)
    return x


@DBOS.step()
def greet(who: str) -> str:
    """Say hello."""
    return f"hello {who}"


@DBOS.workflow()
def hello(who: str) -> str:
    return greet(who)


def _run(kind: str, n: int) -> Any:
    if kind == "fanout":
        return fan_out(n)
    if kind == "chain":
        return chain(n)
    return hello("x")


def main(argv: list[str]) -> int:
    from importlib.metadata import version

    key, kind, n = workload_n(argv)
    url = os.environ.get("PLAIT_BENCH_DBOS_URL") or "sqlite:///plait-bench-dbos.sqlite"
    clock = Clock()
    DBOS(config={"name": "plait-bench", "system_database_url": url, "log_level": "WARNING"})
    DBOS.launch()
    DBOS.register_queue(QUEUE)
    clock.engine_started()
    try:
        result = _run(kind, n)
    finally:
        DBOS.destroy()
    clock.report(key, result, version=version("dbos"),
                 database=url.split(":", 1)[0])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
