"""A task served only by the fuzzing worker of `tests/system/test_fuzz.py` (queue "fuzz")."""

from __future__ import annotations

from plait import task, workflow


@task(queue="fuzz")
def fuzz_target(x: int) -> int:
    return x


@workflow
def fuzz_target_wf(x: int) -> int:
    return fuzz_target(x=x)
