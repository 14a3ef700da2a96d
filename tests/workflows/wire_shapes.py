"""Dynamic bodies whose calls take every kind of value: the wire-form spec must equal the one
the general path builds (tests/unit/test_dynamic_wire.py)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

from plait import LaunchPlan, conditional, dynamic, map_task, task, workflow


@dataclass
class Point:
    x: int
    y: float


class Pair(NamedTuple):
    low: int
    high: int


@task
def scalars(i: int, f: float, s: str, b: bool, n: int = -5, t: str = "dé") -> int:
    return i


@task
def widen(f: float) -> float:
    return f


@task
def maybe(x: int | None, xs: list[int]) -> int:
    return 0


@task
def point(x: int) -> Point:
    return Point(x, 0.5)


@task
def listing(n: int) -> list[int]:
    return list(range(n))


@task
def mapping(n: int) -> dict[str, int]:
    return {"a": n}


@task
def pair(n: int) -> Pair:
    return Pair(n, n + 1)


@task
def nothing(x: int) -> None:
    return None


@workflow
def sub(x: int) -> int:
    return scalars(i=x, f=1.0, s="s", b=True)


sub_plan = LaunchPlan(sub, "wire_shapes.sub_plan", default_inputs={"x": 3})


@dynamic
def every_value(n: int) -> list[int]:
    out = [scalars(i=i, f=i / 3, s=f"s{i}\u00e9", b=i % 2 == 0) for i in range(n)]
    out.append(scalars(i=-(1 << 63), f=-0.0, s="", b=False, n=(1 << 63) - 1, t="\x00"))
    p = point(x=n)
    out.append(scalars(i=p.x, f=p.y, s="x", b=True))
    xs = listing(n=n)
    out.append(scalars(i=xs[1], f=widen(f=n), s="", b=True))  # widen(f=int): converted
    out.append(scalars(i=mapping(n=n)["a"], f=2.5, s="m", b=False))
    out.append(maybe(x=n, xs=xs))
    out.append(maybe(x=None, xs=[1, out[0]]))
    out.append(pair(n=n).high)
    nothing(x=out[0])
    out.append(sub(x=out[1]))
    out.append(sub_plan(x=out[2]))
    doubled = map_task(functools.partial(scalars, f=1.0, s="m", b=True, n=0, t=""))(i=[1, 2, 3])
    out.append(maybe(x=0, xs=doubled))
    out.append(
        conditional("pick").if_(out[0] > 1).then(scalars(i=1, f=1.0, s="a", b=True))
        .else_().then(scalars(i=2, f=2.0, s="b", b=False))
    )  # fmt: skip
    return out


@dynamic
def one_promise(n: int) -> int:
    return scalars(i=n, f=0.0, s="", b=True)


@dynamic
def plain_list(n: int) -> list[int]:
    return [1, 2, n]


@dynamic
def two_outputs(n: int) -> tuple[int, int]:
    return scalars(i=n, f=0.0, s="", b=True), n


@dynamic
def no_outputs(n: int) -> None:
    nothing(x=n)
