# mypy: disable-error-code="import-not-found,untyped-decorator,no-any-return"
"""One workload on Prefect 3; prints one ``BENCH-JSON`` line.

Usage: ``python -m benchmarks._peers.prefect_run WORKLOAD`` in a Python that has Prefect 3.
Prefect's default set-up: no API URL, so the first flow run starts its ephemeral API server (a
subprocess of this one, measured with it, on SQLite under ``$PREFECT_HOME``, a fresh folder the
parent gives each run) and stops it when this process exits. Every flow and task run is
recorded through that API.
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, task

from benchmarks._peers._runner import Clock, workload_n


@task
def inc(x: int) -> int:
    """A no-op task: its input plus one."""
    return x + 1


@flow
def fan_out(n: int) -> list[int]:
    """N concurrent `inc` task runs (the default ThreadPoolTaskRunner)."""
    futures = inc.map(range(n))
    return [f.result() for f in futures]


@flow
def chain(n: int) -> int:
    """N `inc` task runs in a line: calling a task in a flow runs it and returns its value."""
    x = inc(0)
    for _ in range(n - 1):
        x = inc(x)
    return x


@task
def greet(who: str) -> str:
    """Say hello."""
    return f"hello {who}"


@flow
def hello(who: str) -> str:
    return greet(who)


def _run(kind: str, n: int) -> Any:
    if kind == "fanout":
        return fan_out(n)
    if kind == "chain":
        return chain(n)
    return hello("x")


def main(argv: list[str]) -> int:
    import prefect

    key, kind, n = workload_n(argv)
    clock = Clock()
    result = _run(kind, n)
    clock.report(key, result, version=prefect.__version__)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
