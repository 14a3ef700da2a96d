# mypy: disable-error-code="import-not-found,untyped-decorator,no-any-return"
"""One workload on DBOS Transact; prints one ``BENCH-JSON`` line.

Usage: ``python -m benchmarks._peers.dbos_run WORKLOAD`` in a Python that has DBOS. Its system
database is ``$PLAIT_BENCH_DBOS_URL`` (the parent passes a fresh database on a private, durable
PostgreSQL server) or, without it, a SQLite file in the current folder. DBOS runs workflows and
steps in threads of this process and checkpoints each one in that database.

The fan-out: a workflow starts one step per item in the background with ``DBOS.start_workflow``
(each a durable child workflow of its own) and gathers the handles' results. DBOS's other
documented form, a queue (``PLAIT_BENCH_DBOS_FANOUT=queue``: ``DBOS.enqueue_workflow`` on the
default queue settings), was slower here: fan-out 1,000 on PostgreSQL 53-78 s against 37-48 s.
"""

from __future__ import annotations

import os
import sys

from dbos import DBOS

from benchmarks._peers import ONE_TASK, _seed
from benchmarks._peers._runner import Clock, workload

QUEUE = "fanout"


@DBOS.step()
def inc(x: int) -> int:
    """A no-op step: its input plus one."""
    return x + 1


@DBOS.workflow()
def fan_out(n: int) -> list[int]:
    """N concurrent `inc` steps, each a durable child workflow of its own."""
    if os.environ.get("PLAIT_BENCH_DBOS_FANOUT") == "queue":
        handles = [DBOS.enqueue_workflow(QUEUE, inc, i) for i in range(n)]
    else:
        handles = [DBOS.start_workflow(inc, i) for i in range(n)]
    return [h.get_result() for h in handles]


@DBOS.workflow()
def chain(n: int) -> int:
    """N `inc` steps in a line, each checkpointed before the next starts."""
    x = inc(0)
    for _ in range(n - 1):
        x = inc(x)
    return x


# -- the seed's merge sort: a workflow that starts itself twice as child workflows (in the
# background, so the halves run concurrently), with the seed's tasks as steps.


@DBOS.step()
def split(numbers: list[int]) -> tuple[list[int], list[int], int, int]:
    return _seed.split(numbers)


@DBOS.step()
def merge(sorted_list1: list[int], sorted_list2: list[int]) -> list[int]:
    return _seed.merge(sorted_list1, sorted_list2)


@DBOS.step()
def sort_locally(numbers: list[int]) -> list[int]:
    return sorted(numbers)


@DBOS.workflow()
def merge_sort(numbers: list[int], numbers_count: int, run_local_at_count: int = 5) -> list[int]:
    """The seed's recursion: small lists sorted by one step, others split, each half sorted by
    a child workflow, then merged."""
    if numbers_count <= run_local_at_count:
        return sort_locally(numbers)
    split1, split2, count1, count2 = split(numbers)
    half1 = DBOS.start_workflow(merge_sort, split1, count1, run_local_at_count)
    half2 = DBOS.start_workflow(merge_sort, split2, count2, run_local_at_count)
    return merge(half1.get_result(), half2.get_result())


@DBOS.step()
def greet(who: str) -> str:
    """Say hello."""
    return f"hello {who}"


@DBOS.workflow()
def hello(who: str) -> str:
    return greet(who)


# The workflow of each workload kind, called with the workload's inputs.
ENTITIES = {"fanout": fan_out, "chain": chain, "mergesort": merge_sort, ONE_TASK: hello}


def main(argv: list[str]) -> int:
    from importlib.metadata import version

    key, kind, inputs = workload(argv, tuple(ENTITIES))
    url = os.environ.get("PLAIT_BENCH_DBOS_URL") or "sqlite:///plait-bench-dbos.sqlite"
    clock = Clock()
    DBOS(config={"name": "plait-bench", "system_database_url": url, "log_level": "WARNING"})
    DBOS.launch()
    DBOS.register_queue(QUEUE)
    clock.engine_started()
    try:
        result = ENTITIES[kind](**inputs)
    finally:
        DBOS.destroy()
    clock.report(key, result, version=version("dbos"),
                 database=url.split(":", 1)[0])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
