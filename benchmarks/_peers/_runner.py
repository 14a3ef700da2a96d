"""What every peer runner shares: the workload's inputs and the one line it prints.

Runs in a peer's venv, so it uses the standard library and `benchmarks._spec` only.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from benchmarks._peers import ONE_TASK
from benchmarks._spec import by_key


class Clock:
    """Started once the runner's imports are done: what came before is not the peer's work
    (as in plait's figures), and the measuring parent subtracts it from the tree's CPU."""

    def __init__(self) -> None:
        self.cpu0 = time.process_time()
        self.t0 = time.perf_counter()
        self.started: float | None = None

    def engine_started(self) -> None:
        """Mark the end of the peer's own start-up (a cluster, a database, a server)."""
        self.started = time.perf_counter() - self.t0

    def report(self, workload: str, result: Any, **extra: Any) -> None:
        """Print the run's one ``BENCH-JSON`` line: the raw result, verified by the parent."""
        out = {"workload": workload, "wall_s": time.perf_counter() - self.t0,
               "pre_cpu_s": self.cpu0, "start_s": self.started, "result": result,
               **extra}  # fmt: skip
        sys.stdout.write("BENCH-JSON " + json.dumps(out) + "\n")
        sys.stdout.flush()


def workload(argv: list[str], kinds: tuple[str, ...]) -> tuple[str, str, dict[str, Any]]:
    """(workload key, kind, inputs) from a runner's command line (``fanout-1000``,
    ``one-task``), for a runner that has the given kinds (and `ONE_TASK`)."""
    if not argv:
        raise SystemExit("usage: python -m benchmarks._peers.<peer>_run WORKLOAD")
    key = argv[0]
    if key == ONE_TASK:
        return key, ONE_TASK, {"who": "x"}
    wl = by_key(key)
    if wl.kind not in kinds:
        raise SystemExit(f"workload {key!r}: not written for this peer")
    return key, wl.kind, dict(wl.inputs)
