"""A `plait worker` serving `benchmarks/workloads.py` that logs when its session opens.

Usage: ``python -m benchmarks._worker ADDRESS [--slots N]``.
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str]) -> int:
    from plait._worker import run_worker

    p = argparse.ArgumentParser()
    p.add_argument("address")
    p.add_argument("--slots", type=int, help="slots (default: the worker's own)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("plait.worker").setLevel(logging.INFO)
    # By module name, as the benchmark's client imports it: a worker serves exactly the task
    # versions it loaded, and a file loaded by path would be named `workloads.*` instead.
    extra = {} if args.slots is None else {"slots": args.slots}
    run_worker(args.address, ["benchmarks.workloads"], **extra)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
