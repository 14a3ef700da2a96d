"""Profile plait with py-spy and print the top hot spots.

Usage::

    python -m benchmarks.profile [--mode embedded|grpc|both] [--workload fanout-10000]
        [--out DIR] [--top 10] [--rate 200] [--speedscope]

Embedded: py-spy runs the whole `python -m benchmarks._plait_run embedded WORKLOAD` process
(engine and in-process tasks). gRPC: py-spy wraps `plait serve` only (the workers are not
profiled). The raw collapsed stacks are kept in DIR (default ./profiles) for flamegraph.pl or
speedscope; `--speedscope` also writes a speedscope JSON per mode (a second, separate run).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path


def _py_spy() -> str:
    exe = Path(sys.executable).with_name("py-spy")
    found = str(exe) if exe.exists() else shutil.which("py-spy")
    if not found:
        raise SystemExit("py-spy is not installed: pip install -e '.[bench]'")
    return found


def record(mode: str, workload: str, out: Path, rate: int, fmt: str = "raw") -> Path:
    """Run `workload` in `mode` under py-spy; returns the output file."""
    suffix = "txt" if fmt == "raw" else "speedscope.json"
    path = out / f"{mode}-{workload}.{suffix}"
    spy = [_py_spy(), "record", "--nonblocking", "--rate", str(rate), "--format", fmt,
           "-o", str(path)]  # fmt: skip
    run = [sys.executable, "-m", "benchmarks._plait_run", mode, workload, "--no-figures"]
    if mode == "embedded":
        cmd = [*spy, "--", *run]
    else:
        cmd = [*run, "--server-prefix", " ".join([*spy, "--"])]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return path


def _frame(f: str) -> str:
    # "func (/abs/engine/plait_engine/x.py:123)" -> "func (plait_engine/x.py)": per function,
    # not per line (py-spy reports the line being run, which splits a function's samples).
    head, _, where = f.partition(" (")
    where = where.rstrip(")").rpartition(":")[0] or where.rstrip(")")
    for marker in ("/engine/", "/sdk/", "/site-packages/", "/lib/python3.11/"):
        i = where.find(marker)
        if i != -1:
            where = where[i + len(marker) :]
            break
    return f"{head} ({where})"


def hot_spots(path: Path, top: int) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """(samples, top frames by self time, top plait frames by inclusive time)."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";") if f]
        if frames:
            own[frames[-1]] += n
        for f in set(frames):
            if "plait" in f and "benchmarks" not in f:
                incl[f] += n
    return total, own.most_common(top), incl.most_common(top)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    p.add_argument("--mode", choices=["embedded", "grpc", "both"], default="both")
    p.add_argument("--workload", default="fanout-10000")
    p.add_argument("--out", type=Path, default=Path("profiles"))
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--rate", type=int, default=200, help="samples per second")
    p.add_argument("--speedscope", action="store_true", help="also write speedscope JSON")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for mode in ["embedded", "grpc"] if args.mode == "both" else [args.mode]:
        path = record(mode, args.workload, args.out, args.rate)
        total, own, incl = hot_spots(path, args.top)
        print(f"\n== {mode} {args.workload}: {total} samples ({path})")
        print(f"  top {args.top} by self time:")
        for f, n in own:
            print(f"    {100 * n / max(total, 1):5.1f}%  {f}")
        print(f"  top {args.top} plait functions by inclusive time:")
        for f, n in incl:
            print(f"    {100 * n / max(total, 1):5.1f}%  {f}")
        if args.speedscope:
            print("  speedscope:", record(mode, args.workload, args.out, args.rate, "speedscope"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
