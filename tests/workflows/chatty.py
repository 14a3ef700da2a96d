"""Tasks that print, log and look at their context: what `plait logs` and
`plait.current_context()` are tested with."""

from __future__ import annotations

import logging
import sys
import time

from plait import NonRetryableError, current_context, dynamic, map_task, task, workflow


@task(retries=1)
def talk(word: str) -> str:
    ctx = current_context()
    print(f"stdout {word} attempt {ctx.attempt}")
    print(f"stderr {word}", file=sys.stderr)
    logging.getLogger("chatty").warning("logging %s", word)
    ctx.logger.info("context logger %s at %s", word, ctx.node_id)
    if ctx.attempt == 1:
        raise ValueError(f"first attempt of {word} fails")
    return f"{ctx.project}/{ctx.domain}/{ctx.execution}|{ctx.node_id}|{ctx.task.name}"


@workflow
def talk_wf(word: str) -> str:
    return talk(word=word)


@task
def shout(i: int) -> int:
    print(f"element {i} of {current_context().node_id}")
    return i


@dynamic
def shout_all(n: int) -> list[int]:
    current_context().logger.info("generating %d nodes", n)
    out: list[int] = map_task(shout)(i=list(range(n)))
    return out


@workflow
def shout_wf(n: int) -> list[int]:
    return shout_all(n=n)


@task
def doomed(reason: str) -> str:
    print("about to fail")
    raise NonRetryableError(reason)


@workflow
def doomed_wf(reason: str) -> str:
    return doomed(reason=reason)


@task
def sleepy(seconds: float) -> float:
    print(f"sleeping {seconds}", flush=True)
    time.sleep(seconds)
    return seconds


@dynamic
def sleepy_fan(n: int, seconds: float) -> list[float]:
    return [sleepy(seconds=seconds) for _ in range(n)]


@workflow
def sleepy_wf(n: int, seconds: float) -> list[float]:
    return sleepy_fan(n=n, seconds=seconds)


@dynamic
def slow_build(n: int) -> list[float]:
    time.sleep(1.5)  # a dynamic whose body takes a while to build its graph
    return [sleepy(seconds=0.0) for _ in range(n)]


@workflow
def slow_build_wf(n: int) -> list[float]:
    return slow_build(n=n)
