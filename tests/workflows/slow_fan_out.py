"""A fan-out slow enough to be killed in the middle; every task run leaves a marker file."""

from __future__ import annotations

import os
import time
from pathlib import Path

from plait import dynamic, task, workflow


def _mark(name: str) -> None:
    folder = Path(os.environ["PLAIT_TEST_MARKERS"])
    # One file per run: O_EXCL-free append of a unique name keeps concurrent runs apart.
    (folder / f"{name}.{time.monotonic_ns()}.{os.getpid()}").touch()


@task
def slow_double(i: int) -> int:
    time.sleep(0.05)
    _mark(f"task-{i}")
    return 2 * i


@dynamic
def fan(n: int) -> list[int]:
    _mark("generator")
    return [slow_double(i=i) for i in range(n)]


@workflow
def slow_wf(n: int) -> list[int]:
    return fan(n=n)
