"""Start-up costs: `import plait` and a one-task `plait run`, each the best of several fresh
processes (the minimum is the figure least disturbed by other work on the machine).

Usage: ``python -m benchmarks._startup [--runs 7]``; prints one ``BENCH-JSON {...}`` line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _best(cmd: list[str], runs: int, env: dict[str, str]) -> tuple[float, float]:
    """(best wall, best CPU) seconds of `runs` runs of `cmd`."""
    walls: list[float] = []
    cpus: list[float] = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=env, cwd=ROOT)  # fmt: skip
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return min(walls), min(cpus)


def measure(runs: int = 7) -> dict[str, float]:
    """The start-up figures, in seconds."""
    py = sys.executable
    plait = Path(py).with_name("plait")
    run_cmd = [str(plait)] if plait.exists() else [py, "-m", "plait._cli"]
    with tempfile.TemporaryDirectory(prefix="plait-bench-startup-") as tmp:
        # As a user's install has them: compiled modules (pip writes them at install time), so
        # the first, untimed runs write what PYTHONDONTWRITEBYTECODE would prevent.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PLAIT_DATA_DIR"] = tmp
        warm = "import plait, plait._cli, plait._embedded, plait._runtime, plait_engine.app"
        subprocess.run([py, "-c", warm], check=True, env=env, cwd=ROOT)
        out: dict[str, float] = {}
        out["python_s"], _ = _best([py, "-c", "pass"], runs, env)
        out["import_s"], out["import_cpu_s"] = _best([py, "-c", "import plait"], runs, env)
        out["import_decorators_s"], _ = _best(
            [py, "-c", "from plait import task, workflow, dynamic"], runs, env
        )
        cmd = [*run_cmd, "run", "benchmarks/hello.py", "hello", "--who", "x"]
        subprocess.run(cmd, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)  # fmt: skip
        out["run_one_task_s"], out["run_one_task_cpu_s"] = _best(cmd, runs, env)
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks._startup")
    p.add_argument("--runs", type=int, default=7)
    args = p.parse_args(argv)
    print("BENCH-JSON " + json.dumps({"mode": "startup", "ok": True, **measure(args.runs)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
