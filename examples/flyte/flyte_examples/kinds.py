"""Every kind of value and node plait.flyte maps, in flytekit code (the tests run it).

Dataclasses (msgpack), nested dataclasses, attribute paths, Optional, enums, dicts, unions,
FlyteFile and FlyteDirectory, a map task with a partial and tolerated failures, a conditional
with elif and else-fail, a recoverable error retried, a launch plan with fixed inputs.
"""

import enum
import os
import tempfile
from dataclasses import dataclass, field
from functools import partial

from flytekit import LaunchPlan, conditional, map_task, task, workflow
from flytekit.exceptions.user import FlyteRecoverableException
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import FlyteFile


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


@dataclass
class Inner:
    x: int
    tags: list[str]


@dataclass
class Point:
    name: str
    inner: Inner
    score: float = 0.5
    maybe: int | None = None
    color: Color = Color.RED
    note: FlyteFile | None = None
    extra: dict[str, int] = field(default_factory=dict)


@task(cache=True, cache_version="1")
def make_point(name: str, n: int, color: Color) -> Point:
    path = os.path.join(tempfile.mkdtemp(), "note.txt")
    with open(path, "w") as fh:
        fh.write(f"note of {name}")
    return Point(name, Inner(n, ["a", "b"]), color=color, note=FlyteFile(path), extra={"k": n})


@task
def describe(p: Point, x: int) -> str:
    assert p.note is not None
    with open(p.note) as fh:
        note = fh.read()
    return f"{p.name}|{x}|{p.color.value}|{p.inner.tags}|{p.extra}|{p.maybe}|{note}"


@task
def write_dir(names: list[str]) -> FlyteDirectory:
    folder = tempfile.mkdtemp()
    for name in names:
        with open(os.path.join(folder, name), "w") as fh:
            fh.write(name)
    return FlyteDirectory(folder)


@task
def list_dir(d: FlyteDirectory) -> list[str]:
    return sorted(os.listdir(d.download()))


@task
def square(x: int, offset: int) -> int:
    if x < 0:
        raise ValueError(f"cannot square {x}")
    return x * x + offset


@task
def total(
    xs: list[int | None],
    weights: dict[str, float],
    u: int | str,
) -> float | None:
    return sum(x for x in xs if x is not None) * weights["a"] + (u if isinstance(u, int) else 0)


@task(retries=2)
def flaky(fail_attempts: int) -> int:
    attempt = int(os.environ["FLYTE_ATTEMPT_NUMBER"])
    if attempt < fail_attempts:
        raise FlyteRecoverableException(f"attempt {attempt} fails")
    return attempt


@task(retries=2)
def fail(message: str) -> int:
    if message:
        raise ValueError(message)
    return 0


@workflow
def kinds_wf(
    name: str = "p", n: int = 3, color: Color = Color.GREEN
) -> tuple[Point, str, list[str], list[int | None], float | None, int]:
    p = make_point(name=name, n=n, color=color)
    s = describe(p=p, x=p.inner.x)
    files = list_dir(d=write_dir(names=["a.txt", "b.txt"]))
    squares = map_task(partial(square, offset=1), concurrency=2, min_success_ratio=0.5)(
        x=[1, -2, n]
    )
    t = total(xs=squares, weights={"a": 1.5}, u=n)
    picked = (
        conditional("pick")
        .if_(n > 5)
        .then(square(x=n, offset=0))
        .elif_((n == 3) | (n < 0))
        .then(flaky(fail_attempts=1))
        .else_()
        .fail("n must be 3 or above 5")
    )
    return p, s, files, squares, t, picked


kinds_lp = LaunchPlan.get_or_create(
    kinds_wf, name="kinds_lp", fixed_inputs={"name": "fixed"}, default_inputs={"n": 3}
)


@workflow
def failing_wf(message: str) -> int:
    return fail(message=message)
