"""One workload on Ray (a local cluster of its own); prints one ``BENCH-JSON`` line.

Usage: ``python -m benchmarks._peers.ray_run WORKLOAD`` in a Python that has Ray. The cluster
is started by ``ray.init`` in this process (its GCS, raylet and workers are this process's
children, measured with it) and shut down before the line is printed. Ray keeps results in
memory only: not durable.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from benchmarks._peers._runner import Clock, workload

# No usage report (this machine reaches no such service); set before Ray is imported.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray


@ray.remote
def inc(x: int) -> int:
    """A no-op task: its input plus one."""
    return x + 1


@ray.remote
def greet(who: str) -> str:
    """Say hello."""
    return f"hello {who}"


def _run(kind: str, inputs: dict[str, Any]) -> Any:
    n = int(inputs.get("n", 0))
    if kind == "fanout":
        return ray.get([inc.remote(i) for i in range(n)])
    if kind == "chain":
        # Each task takes the previous one's ObjectRef: Ray resolves the dependency itself,
        # without a round trip through the driver.
        x = inc.remote(0)
        for _ in range(n - 1):
            x = inc.remote(x)
        return ray.get(x)
    return ray.get(greet.remote(inputs["who"]))


def main(argv: list[str]) -> int:
    key, kind, inputs = workload(argv, ("fanout", "chain"))
    clock = Clock()
    # Ray's documented local set-up: one node, no dashboard (a web server of its own).
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=False)  # fmt: skip
    clock.engine_started()
    try:
        result = _run(kind, inputs)
    finally:
        ray.shutdown()
    clock.report(key, result, version=ray.__version__)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
