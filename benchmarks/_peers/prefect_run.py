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

from prefect import flow, task

from benchmarks._peers import ONE_TASK, _seed
from benchmarks._peers._runner import Clock, workload


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


# -- the seed's merge sort: a flow that calls itself as two subflows (Prefect's form of a
# workflow calling a workflow), with the seed's tasks.


@task
def split(numbers: list[int]) -> tuple[list[int], list[int], int, int]:
    return _seed.split(numbers)


@task
def merge(sorted_list1: list[int], sorted_list2: list[int]) -> list[int]:
    return _seed.merge(sorted_list1, sorted_list2)


@task
def sort_locally(numbers: list[int]) -> list[int]:
    return sorted(numbers)


@flow
def merge_sort(numbers: list[int], numbers_count: int, run_local_at_count: int = 5) -> list[int]:
    """The seed's recursion: small lists sorted by one task, others split, each half sorted by
    a subflow, then merged."""
    if numbers_count <= run_local_at_count:
        return sort_locally(numbers)
    split1, split2, count1, count2 = split(numbers)
    sorted1 = merge_sort(split1, count1, run_local_at_count)
    sorted2 = merge_sort(split2, count2, run_local_at_count)
    return merge(sorted1, sorted2)


@task
def greet(who: str) -> str:
    """Say hello."""
    return f"hello {who}"


@flow
def hello(who: str) -> str:
    return greet(who)


# The workflow of each workload kind, called with the workload's inputs.
ENTITIES = {"fanout": fan_out, "chain": chain, "mergesort": merge_sort, ONE_TASK: hello}


def main(argv: list[str]) -> int:
    import prefect

    key, kind, inputs = workload(argv, tuple(ENTITIES))
    clock = Clock()
    result = ENTITIES[kind](**inputs)
    clock.report(key, result, version=prefect.__version__)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
