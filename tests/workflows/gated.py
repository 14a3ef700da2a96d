"""A fan-out whose tasks run until a file appears: a test decides when they end."""

from __future__ import annotations

import time
from pathlib import Path

from plait import dynamic, task, workflow


@task
def held(gate: str, i: int) -> int:
    deadline = time.monotonic() + 120  # a test that never opens the gate still ends
    while not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return i


@dynamic
def held_fan(gate: str, n: int) -> list[int]:
    return [held(gate=gate, i=i) for i in range(n)]


@workflow
def held_wf(gate: str, n: int) -> list[int]:
    return held_fan(gate=gate, n=n)
