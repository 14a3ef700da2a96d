"""What each workload is called with; shared by the plait and flytekit runners."""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Workload:
    """One benchmark: the workflow's attribute name and its inputs."""

    key: str  # e.g. "fanout-10000"
    kind: str  # fanout, chain, mergesort, countchars
    entity: str  # attribute of workloads.py / flyte_workloads.py
    inputs: dict[str, Any]
    label: str

    def check(self, result: object) -> bool:
        """Whether the workflow returned the right answer."""
        if self.kind == "fanout":
            n = int(self.inputs["n"])
            return isinstance(result, list) and result == list(range(1, n + 1))
        if self.kind == "chain":
            return bool(result == self.inputs["n"])
        if self.kind == "mergesort":
            return result == sorted(self.inputs["numbers"])
        if self.kind == "countchars":
            return result == expected_common(self.inputs["s1"], self.inputs["s2"])
        return False


def expected_common(s1: str, s2: str) -> int:
    """What count_characters computes."""
    f1 = [0] * 26
    f2 = [0] * 26
    for c in s1:
        f1[ord(c.lower()) - ord("a")] += 1
    for c in s2:
        f2[ord(c.lower()) - ord("a")] += 1
    return sum(min(a, b) for a, b in zip(f1, f2, strict=True))


def fanout(n: int) -> Workload:
    """N independent no-op tasks yielded by one dynamic."""
    return Workload(f"fanout-{n}", "fanout", "fan_out", {"n": n}, f"fan-out {n:,}")


def chain(n: int) -> Workload:
    """N no-op tasks in a line (latency probe)."""
    return Workload(f"chain-{n}", "chain", "chain", {"n": n}, f"chain {n:,}")


def mergesort(count: int = 5000, local_at: int = 5) -> Workload:
    """The seed merge sort of `count` random ints."""
    rng = random.Random(42)
    numbers = [rng.randint(0, 100_000) for _ in range(count)]
    return Workload(
        f"mergesort-{count}",
        "mergesort",
        "merge_sort",
        {"numbers": numbers, "numbers_count": count, "run_local_at_count": local_at},
        f"merge sort {count:,}",
    )


def countchars(length: int = 200) -> Workload:
    """The seed's count_characters on two random strings of `length` letters."""
    rng = random.Random(7)
    letters = string.ascii_letters
    s1 = "".join(rng.choice(letters) for _ in range(length))
    s2 = "".join(rng.choice(letters) for _ in range(length))
    return Workload(
        f"countchars-{length}", "countchars", "dynamic_wf", {"s1": s1, "s2": s2},
        f"count chars {length}x2",
    )  # fmt: skip


def by_key(key: str) -> Workload:
    """The workload named `key` (``fanout-1000``, ``mergesort-5000``, ...)."""
    kind, _, size = key.partition("-")
    n = int(size) if size else 0
    if kind == "fanout":
        return fanout(n or 1000)
    if kind == "chain":
        return chain(n or 200)
    if kind == "mergesort":
        return mergesort(n or 5000)
    if kind == "countchars":
        return countchars(n or 200)
    raise ValueError(f"unknown workload {key!r}")
