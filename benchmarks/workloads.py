"""The benchmark workloads on plait (the flytekit twins are in `flyte_workloads.py`).

Kept as plain module-level entities so `plait worker benchmarks/workloads.py` serves them.
"""

from plait import dynamic, task, workflow

# -- (a) fan-out: a dynamic yields N independent no-op tasks ----------------------------------


@task
def inc(x: int) -> int:
    """A no-op task: its input plus one."""
    return x + 1


@dynamic
def fan(n: int) -> list[int]:
    """N independent `inc` tasks."""
    return [inc(x=i) for i in range(n)]


@workflow
def fan_out(n: int) -> list[int]:
    return fan(n=n)


# -- (d) chain: N no-op tasks, each waiting for the previous one (a latency probe) ----------


@dynamic
def chain_dyn(n: int) -> int:
    """N `inc` tasks in a line: nothing queues, so each hop is pure engine latency."""
    x = inc(x=0)
    for _ in range(n - 1):
        x = inc(x=x)
    return x


@workflow
def chain(n: int) -> int:
    return chain_dyn(n=n)


# -- (b) merge sort and (c) count common characters: the seed examples themselves, so the
# benchmark measures exactly what `examples/` runs (their flytekit twins are copies by need).

from examples.dynamic_workflow import (  # noqa: E402
    count_characters,
    derive_count,
    dynamic_wf,
    return_index,
    update_list,
)
from examples.merge_sort import (  # noqa: E402
    merge,
    merge_sort,
    merge_sort_remotely,
    sort_locally,
    split,
)

__all__ = [
    "chain",
    "chain_dyn",
    "count_characters",
    "derive_count",
    "dynamic_wf",
    "fan",
    "fan_out",
    "inc",
    "merge",
    "merge_sort",
    "merge_sort_remotely",
    "return_index",
    "sort_locally",
    "split",
    "update_list",
]
