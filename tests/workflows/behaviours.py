"""Small workflows that exercise engine behaviour: caching, retries, timeouts, branches."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta

from plait import LaunchPlan, NonRetryableError, conditional, dynamic, map_task, task, workflow

# Side effects observed by the tests (tasks run in-process on the embedded engine).
CALLS: Counter[str] = Counter()
_LOCK = threading.Lock()


def _record(name: str) -> int:
    with _LOCK:
        CALLS[name] += 1
        return CALLS[name]


@task(cache=True, cache_version="1")
def expensive(x: int) -> int:
    _record(f"expensive:{x}")
    return x * 10


@workflow
def cached_wf(x: int) -> int:
    return expensive(x=x)


@task(cache=True, cache_version="2")
def expensive_v2(x: int) -> int:
    _record(f"expensive:{x}")
    return x * 10


@workflow
def cached_wf_v2(x: int) -> int:
    return expensive_v2(x=x)


@task(cache=True, cache_version="1", cache_serialize=True)
def slow_cached(x: int) -> int:
    _record(f"slow_cached:{x}")
    time.sleep(0.4)
    return x + 1


@workflow
def serialized_wf(x: int) -> int:
    return slow_cached(x=x)


@task(retries=2)
def flaky(key: str) -> str:
    attempt = _record(f"flaky:{key}")
    if attempt < 3:
        raise ConnectionError(f"transient failure {attempt}")
    return f"ok after {attempt}"


@workflow
def flaky_wf(key: str) -> str:
    return flaky(key=key)


@task(retries=5)
def broken(key: str) -> str:
    _record(f"broken:{key}")
    raise NonRetryableError("bad input, retrying cannot help")


@workflow
def broken_wf(key: str) -> str:
    return broken(key=key)


@task(retries=1, timeout=timedelta(seconds=0.3))
def sleepy(seconds: float) -> float:
    _record("sleepy")
    time.sleep(seconds)
    return seconds


@workflow
def sleepy_wf(seconds: float) -> float:
    return sleepy(seconds=seconds)


@task
def square(x: int) -> int:
    return x * x


@task
def negate(x: int) -> int:
    return -x


@workflow
def branch_wf(x: int) -> int:
    return conditional("sign").if_(x >= 0).then(square(x=x)).else_().then(negate(x=x))


@workflow
def map_wf(xs: list[int]) -> list[int]:
    squares: list[int] = map_task(square)(x=xs)
    return squares


@dynamic(cache=True, cache_version="1")
def cached_fan_out(n: int) -> list[int]:
    _record("cached_fan_out")
    return [square(x=i) for i in range(n)]


@workflow
def cached_dynamic_wf(n: int) -> list[int]:
    return cached_fan_out(n=n)


@task
def wait_forever(x: int) -> int:
    time.sleep(30)
    return x


@workflow
def stuck_wf(x: int) -> int:
    return wait_forever(x=x)


@task
def big_list(n: int) -> list[int]:
    return list(range(n))


@task
def total(xs: list[int]) -> int:
    return sum(xs)


@workflow
def big_wf(n: int) -> int:
    return total(xs=big_list(n=n))


@task(cache=True, cache_version="1")
def cached_big_list(n: int) -> list[int]:
    _record(f"cached_big_list:{n}")
    return list(range(n))


@workflow
def cached_big_wf(n: int) -> int:
    return total(xs=cached_big_list(n=n))


@task
def scale(x: int, factor: int) -> int:
    return x * factor


@workflow
def scaled(x: int, factor: int = 2) -> int:
    return scale(x=x, factor=factor)


# Launch plans: one fixes `factor`, one changes its default.
triple = LaunchPlan(scaled, "behaviours.triple", fixed_inputs={"factor": 3})
tenfold_by_default = LaunchPlan(scaled, "behaviours.tenfold", default_inputs={"factor": 10})


@workflow
def via_launch_plan(x: int) -> int:
    return triple(x=x)


@task(cache=True, cache_version="1", cache_serialize=True)
def first_call_fails(x: int) -> int:
    call = _record(f"first_call_fails:{x}")
    time.sleep(0.3)
    if call == 1:
        raise NonRetryableError("the first computation fails")
    return x * 2


@workflow
def serialized_takeover_wf(x: int) -> int:
    return first_call_fails(x=x)


@task
def half(x: int) -> int:
    if x % 2:
        raise NonRetryableError(f"{x} is odd")
    return x // 2


@workflow
def tolerant_map(xs: list[int]) -> list[int | None]:
    halves: list[int | None] = map_task(half, min_success_ratio=0.5)(x=xs)
    return halves


@task
def nap(i: int) -> int:
    time.sleep(1)
    return i


@dynamic
def sleepy_fan(n: int) -> list[int]:
    return [nap(i=i) for i in range(n)]


@workflow
def long_fan(n: int) -> list[int]:
    return sleepy_fan(n=n)
