"""Task types as plugins, mixed in one workflow: a Python task, a Ray fan-out and a Ray task, a
SQL query and an HTTP call, with typed data flowing between them.

    numbers (python) -> squares (ray_map: one Ray task per element) -> total (ray_task)
        -> stock (sql: the rows with qty <= total, as records) -> report (http: POST them, read
        a typed receipt)

The SQL connection comes from the secret ``warehouse`` and the HTTP call's token from
``api-token``: where each runs (the embedded engine, a worker, or the engine's own plugins) must
provide them (``--secrets-dir`` or ``PLAIT_SECRET_*``). Ray runs on ``$RAY_ADDRESS``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from plait import NonRetryableError, dynamic, task, workflow
from plait.ext.http import HTTPTask
from plait.ext.ray import ray_map, ray_task
from plait.ext.sql import SQLTask


@dataclass
class Item:
    """A row of the ``stock`` table."""

    name: str
    qty: int


@dataclass
class Receipt:
    """What the report service answers."""

    accepted: int
    total: int
    names: list[str]


@task
def numbers(n: int) -> list[int]:
    """1..n."""
    return list(range(1, n + 1))


@task
def square(x: int) -> int:
    """x squared (run on Ray by `squares`)."""
    return x * x


squares = ray_map(square, num_cpus=0.5)


@ray_task(num_cpus=0.5)
def total(xs: list[int]) -> int:
    """The sum, computed on Ray."""
    return sum(xs)


@ray_task(num_cpus=0.5, address=os.environ.get("TASKTYPES_RAY_ADDRESS", ""))
def ray_node() -> str:
    """The GCS address of the cluster it ran on: its configuration's ``address`` when
    ``$TASKTYPES_RAY_ADDRESS`` was set where this module was loaded."""
    import ray

    return str(ray.get_runtime_context().gcs_address)


stock = SQLTask(
    "tasktypes.stock",
    "SELECT name, qty FROM stock WHERE qty <= :limit ORDER BY name",
    connection_secret="warehouse",
    inputs={"limit": int},
    output=list[Item],
)

report = HTTPTask(
    "tasktypes.report",
    "http://127.0.0.1:{port}/report/{label}",
    method="POST",
    headers={"Authorization": "Bearer {secret:api-token}"},
    inputs={"port": int, "label": str, "total": int, "items": list[Item]},
    output=Receipt,
    secrets=["api-token"],
    retries=2,
)


@workflow
def mix(n: int, port: int, label: str = "mix") -> Receipt:
    """Python -> Ray fan-out -> Ray -> SQL -> HTTP."""
    sq = squares(x=numbers(n=n))
    t = total(xs=sq)
    receipt: Receipt = report(port=port, label=label, total=t, items=stock(limit=t))
    return receipt


@dynamic
def mix_dynamic(n: int, port: int) -> Receipt:
    """The same, decided at run time: n known here, the plugin tasks called from a dynamic."""
    t = total(xs=squares(x=list(range(1, n + 1))))
    receipt: Receipt = report(port=port, label=f"dynamic-{n}", total=t, items=stock(limit=t))
    return receipt


# -- Ray's retries and cancellation -------------------------------------------------------------


def _bump(path: str) -> int:
    p = Path(path)
    count = int(p.read_text()) + 1 if p.exists() else 1
    p.write_text(str(count))
    return count


@ray_task(num_cpus=0.5, max_retries=2, retry_exceptions=True)
def flaky_in_ray(path: str) -> int:
    """Fails on its first run: Ray itself retries it, within one plait attempt."""
    count = _bump(path)
    if count < 2:
        raise RuntimeError(f"run {count} fails")
    return count


@ray_task(num_cpus=0.5, retries=1)
def flaky_in_plait(path: str) -> int:
    """Fails on its first run: plait retries the attempt (a new Ray submission)."""
    count = _bump(path)
    if count < 2:
        raise RuntimeError(f"run {count} fails")
    return count


@ray_task(num_cpus=0.5)
def refuses(x: int) -> int:
    """Fails without a retry."""
    raise NonRetryableError(f"no {x}")


@ray_task(num_cpus=0.5)
def sleeper(path: str) -> int:
    """Writes its Ray worker's PID, then sleeps: for cancellation."""
    Path(path).write_text(str(os.getpid()))
    time.sleep(600)
    return 0


@workflow
def retried(path_ray: str, path_plait: str) -> tuple[int, int]:
    """Both kinds of retry."""
    return flaky_in_ray(path=path_ray), flaky_in_plait(path=path_plait)


@workflow
def sleepy(path: str) -> int:
    """A Ray task that runs until cancelled."""
    slept: int = sleeper(path=path)
    return slept
