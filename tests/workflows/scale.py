"""Wide dynamics for the scale tests: a fan-out of no-op tasks and a chain of them."""

from plait import dynamic, task, workflow


@task
def inc(x: int) -> int:
    """Its input plus one."""
    return x + 1


@dynamic
def fan(n: int) -> list[int]:
    """`n` independent `inc` nodes."""
    return [inc(x=i) for i in range(n)]


@workflow
def fan_out(n: int) -> list[int]:
    return fan(n=n)


@dynamic
def chain_dyn(n: int) -> int:
    """`n` `inc` nodes in a line."""
    x = inc(x=0)
    for _ in range(n - 1):
        x = inc(x=x)
    return x


@workflow
def chain(n: int) -> int:
    return chain_dyn(n=n)


@task
def nap(seconds: float) -> float:
    """Sleeps, then returns its input."""
    import time

    time.sleep(seconds)
    return seconds


@workflow
def napping(seconds: float) -> float:
    return nap(seconds=seconds)
