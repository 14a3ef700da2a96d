"""Workflows the console's browser tests drive: a form to fill, a fan-out that grows, a
failure with a traceback, a run to terminate, fan-outs of 10,000 and 100,000 nodes."""

from __future__ import annotations

import time

from plait import dynamic, task, workflow


@task
def shout(name: str, times: int, loud: bool) -> str:
    text = " ".join([f"hello {name}"] * times)
    return text.upper() if loud else text


@workflow
def greet(name: str, times: int = 2, loud: bool = False) -> str:
    """A workflow with typed inputs and defaults (the launch form)."""
    return shout(name=name, times=times, loud=loud)


@task
def slow_square(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x * x


@dynamic
def grow(n: int, seconds: float) -> list[int]:
    return [slow_square(x=i, seconds=seconds) for i in range(n)]


@workflow
def growing(n: int, seconds: float = 0.2) -> list[int]:
    """A fan-out whose nodes finish one by one."""
    return grow(n=n, seconds=seconds)


@task
def explode(x: int) -> int:
    if x >= 0:
        raise ValueError(f"cannot handle {x}")
    return x


@workflow
def failing(x: int) -> int:
    return explode(x=x)


@task
def sleepy(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@workflow
def long_running(seconds: float) -> float:
    return sleepy(seconds=seconds)


@task
def square(x: int) -> int:
    return x * x


@dynamic
def fan(n: int) -> list[int]:
    return [square(x=i) for i in range(n)]


@workflow
def big_fan_out(n: int) -> list[int]:
    """One generator, `n` tasks."""
    return fan(n=n)


@task(queue="parked")
def parked(x: int) -> int:
    return x


@dynamic
def park(n: int) -> list[int]:
    return [parked(x=i) for i in range(n)]


@dynamic
def park_many(groups: int, n: int) -> list[list[int]]:
    return [park(n=n) for _ in range(groups)]


@workflow
def huge(groups: int, n: int) -> list[list[int]]:
    """`groups` generators of `n` tasks each, on a queue no test worker serves: the nodes are
    created and wait (a live execution of groups * n nodes)."""
    return park_many(groups=groups, n=n)


@workflow
def fails_then_more(x: int) -> int:
    """The second node is never created: its upstream fails."""
    return square(x=explode(x=x))
