"""Launch as many tasks as an input says (the dynamic task seed's generate_others)."""

from plait import dynamic, task, workflow


@task
def other_task(index: int) -> int:
    """Some work for one index."""
    return index * index


@dynamic(cache_version="1")
def generate_others(tasks_count: int) -> list[int]:
    """Launches `tasks_count` tasks; the output is the list of their outputs."""
    res = []
    for i in range(0, tasks_count):
        res.append(other_task(index=i))
    return res


@workflow
def fan_out(tasks_count: int) -> list[int]:
    return generate_others(tasks_count=tasks_count)
