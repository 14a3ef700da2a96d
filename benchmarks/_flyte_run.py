"""Run one workload on flytekit's local execution; prints one JSON line.

Usage: ``python -m benchmarks._flyte_run WORKLOAD_KEY``. Run in its own process so flytekit's
imports and memory stay out of plait's figures.
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import time


def main(argv: list[str]) -> int:
    from benchmarks._spec import by_key

    wl = by_key(argv[0])
    logging.disable(logging.WARNING)
    t0 = time.perf_counter()
    from benchmarks import flyte_workloads

    import_s = time.perf_counter() - t0
    wf = getattr(flyte_workloads, wl.entity)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    result = wf(**wl.inputs)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    out = {
        "engine": "flytekit",
        "workload": wl.key,
        "wall_s": wall,
        "cpu_s": cpu,
        "import_s": import_s,
        "ok": wl.check(result),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    print("BENCH-JSON " + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
