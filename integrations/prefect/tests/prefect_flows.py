"""Workflows the prefect-plait tests run on a real engine and worker."""

from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

from plait import NonRetryableError, dynamic, task, workflow


class Squares(NamedTuple):
    squares: list[int]
    total: int


@task
def square(x: int) -> int:
    return x * x


@dynamic
def square_all(numbers: list[int]) -> list[int]:
    return [square(x=n) for n in numbers]


@task
def add_up(values: list[int]) -> int:
    return sum(values)


@workflow
def sum_of_squares(numbers: list[int]) -> Squares:
    squares = square_all(numbers=numbers)
    return Squares(squares=squares, total=add_up(values=squares))


@task
def check_positive(x: int) -> int:
    if x < 0:
        raise NonRetryableError(f"x must be positive, got {x}")
    return x


@workflow
def must_be_positive(x: int) -> int:
    return check_positive(x=x)


@task
def sleep_then_echo(seconds: float, text: str) -> str:
    time.sleep(seconds)
    return text


@workflow
def slow_echo(seconds: float, text: str) -> str:
    return sleep_then_echo(seconds=seconds, text=text)


@task
def fail_first_time(marker: str) -> str:
    path = Path(marker)
    if not path.exists():
        path.touch()
        raise NonRetryableError("the first execution fails on purpose")
    return "the second execution succeeded"


@workflow
def fails_once(marker: str) -> str:
    return fail_first_time(marker=marker)
