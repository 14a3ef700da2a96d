"""`python -m benchmarks`: plait (embedded on SQLite, embedded on PostgreSQL, over gRPC)
against flytekit local execution.

Prints one fixed-width table (and the targets, met or not) and never fails on a figure.
See README.md for the definitions and the options.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

FULL = ["fanout-1000", "fanout-10000", "mergesort-5000", "countchars-200", "chain-200"]
QUICK = ["fanout-1000", "countchars-200", "chain-200"]
SCALING = ["fanout-1000", "fanout-10000", "fanout-100000"]
MODES = ["embedded", "embedded-pg", "grpc", "grpc-pg-1", "grpc-pg-2", "flytekit"]
# Replicas over PostgreSQL (one, then two sharing the work): the two large workloads only.
REPLICAS = {"grpc-pg-1": 1, "grpc-pg-2": 2}
REPLICA_WORKLOADS = ["fanout-1000", "fanout-10000", "mergesort-5000"]
MIB = 1024 * 1024


def _child(cmd: list[str], timeout: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "ok": False, "wall_s": None, "timeout_s": timeout}
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH-JSON "):
            out: dict[str, Any] = json.loads(line.removeprefix("BENCH-JSON "))
            out.setdefault("status", "ok" if out.get("ok") else "wrong result")
            out["process_s"] = time.perf_counter() - t0
            return out
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"status": f"error (exit {proc.returncode}): {' | '.join(tail)}", "ok": False,
            "wall_s": None}  # fmt: skip


def run_one(mode: str, workload: str, args: argparse.Namespace) -> dict[str, Any]:
    """One workload in one mode, in a fresh process."""
    py = sys.executable
    if mode == "flytekit":
        out = _child([py, "-m", "benchmarks._flyte_run", workload], args.flyte_timeout)
    elif mode in REPLICAS:
        cmd = [py, "-m", "benchmarks._replicas", workload, "--replicas", str(REPLICAS[mode]),
               "--timeout", str(args.plait_timeout), "--workers", str(args.workers),
               "--slots", str(args.slots)]  # fmt: skip
        out = _child(cmd, args.plait_timeout + 90)
    else:
        cmd = [py, "-m", "benchmarks._plait_run", mode, workload, "--timeout",
               str(args.plait_timeout), "--workers", str(args.workers),
               "--slots", str(args.slots)]  # fmt: skip
        out = _child(cmd, args.plait_timeout + 60)
    out["mode"] = mode
    out["workload"] = workload
    return out


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.1f}"


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(results: list[dict[str, Any]]) -> str:
    """The fixed-width table of every run."""
    flyte = {r["workload"]: r for r in results if r["mode"] == "flytekit"}
    head = ("workload", "mode", "wall s", "nodes", "nodes/s", "CPU ms/node", "s2s p50 ms",
            "s2s p99 ms", "disp p50 ms", "peak RSS MiB", "B/node", "plait/fk",
            "status")  # fmt: skip
    rows: list[tuple[str, ...]] = []
    for r in results:
        wall = r.get("wall_s")
        nodes = r.get("nodes")
        rate = nodes / wall if nodes and wall else None
        fk = flyte.get(r["workload"])
        ratio = None
        if r["mode"] != "flytekit" and fk is not None and wall:
            ratio = wall / fk["wall_s"] if fk.get("wall_s") and fk.get("ok") else None
        rss = r.get("peak_rss_bytes")
        per_node = r.get("data_dir_bytes", 0) / nodes if nodes else None
        status = r.get("status", "")
        if r["mode"] != "flytekit" and fk is not None and fk.get("status") == "timeout":
            status += " (fk timeout)"
        cpu = r["cpu_s"] * 1000 / nodes if r.get("cpu_s") and nodes else None
        rows.append((
            r["workload"], r["mode"], _fmt(wall, ".2f"), _fmt(nodes, ","), _fmt(rate, ",.0f"),
            _fmt(cpu, ".3f"), _ms(r.get("s2s_p50_s")), _ms(r.get("s2s_p99_s")),
            _ms(r.get("ready_to_dispatch_p50_s")),
            _fmt(rss / MIB if rss else None, ".0f"), _fmt(per_node, ",.0f"),
            _fmt(ratio, ".2f"), status,
        ))  # fmt: skip
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    left = {0, 1, 12}

    def line(cells: tuple[str, ...]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return (
            "| " + " | ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in pairs) + " |"
        )

    sep = "|" + "|".join(("-" * (w + 2)) for w in widths) + "|"
    return "\n".join([line(head), sep, *(line(row) for row in rows)])


def targets(results: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(target, measured, met / not met / n/a) for each target of the issue."""
    by = {(r["mode"], r["workload"]): r for r in results}
    out: list[tuple[str, str, str]] = []

    def rate(mode: str, wl: str) -> float | None:
        r = by.get((mode, wl))
        if not r or not r.get("wall_s") or not r.get("nodes") or not r.get("ok"):
            return None
        return float(r["nodes"]) / float(r["wall_s"])

    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("met" if ok else "NOT MET")

    v = rate("embedded", "fanout-10000")
    out.append(("embedded fan-out 10,000 >= 5,000 nodes/s", _fmt(v, ",.0f"),
                verdict(None if v is None else v >= 5000)))  # fmt: skip
    v = rate("grpc", "fanout-10000")
    out.append(("gRPC fan-out 10,000 >= 2,000 nodes/s", _fmt(v, ",.0f"),
                verdict(None if v is None else v >= 2000)))  # fmt: skip
    for wl in ("fanout-10000", "mergesort-5000"):
        sq, pg = rate("embedded", wl), rate("embedded-pg", wl)
        if sq is not None and pg is not None:
            out.append((f"embedded on PostgreSQL vs SQLite: {wl}",
                        f"{pg:,.0f} vs {sq:,.0f} nodes/s ({pg / sq:.2f}x)", "info"))  # fmt: skip
    for mode in ("embedded", "grpc"):
        wls = sorted({r["workload"] for r in results if r["mode"] == mode})
        for wl in wls:
            fk, pl = by.get(("flytekit", wl)), by.get((mode, wl))
            if fk is None or pl is None:
                continue
            if fk.get("status") == "timeout" and pl.get("ok"):
                out.append((f"{mode} faster than flytekit: {wl}", "flytekit timed out", "met"))
                continue
            if not (fk.get("ok") and pl.get("ok")):
                out.append((f"{mode} faster than flytekit: {wl}", "failed run", "n/a"))
                continue
            ratio = pl["wall_s"] / fk["wall_s"]
            out.append((f"{mode} faster than flytekit: {wl}", f"{1 / ratio:.1f}x faster"
                        if ratio < 1 else f"{ratio:.1f}x slower", verdict(ratio < 1)))  # fmt: skip
    r = by.get(("embedded", "fanout-100000"))
    rss = r.get("peak_rss_bytes") if r else None
    out.append(("fan-out 100,000 under 1 GiB engine RSS", _fmt(rss / MIB if rss else None, ",.0f")
                + " MiB", verdict(None if rss is None else rss < 1024 * MIB)))  # fmt: skip
    for wl in ("chain-200", "fanout-1000"):
        r = by.get(("grpc", wl))
        if r and r.get("s2s_p50_s") is not None:
            p50 = float(r["s2s_p50_s"])
            out.append((f"gRPC p50 schedule-to-start < 5 ms ({wl})", f"{p50 * 1000:.1f} ms",
                        verdict(p50 < 0.005)))  # fmt: skip
    return out


def scaling(results: list[dict[str, Any]]) -> list[str]:
    """How embedded fan-out time and RSS grow with N."""
    rs = [r for r in results if r["mode"] == "embedded" and r["workload"].startswith("fanout-")
          and r.get("ok")]  # fmt: skip
    rs.sort(key=lambda r: int(r["workload"].split("-")[1]))
    lines = []
    prev: dict[str, Any] | None = None
    for r in rs:
        n = int(r["workload"].split("-")[1])
        s = (f"  N={n:>7,}: {r['wall_s']:7.2f} s, {n / r['wall_s']:>7,.0f} tasks/s, peak RSS "
             f"{r['peak_rss_bytes'] / MIB:6.0f} MiB")  # fmt: skip
        if prev is not None:
            pn = int(prev["workload"].split("-")[1])
            s += (f"  (x{n / pn:.0f} N -> x{r['wall_s'] / prev['wall_s']:.1f} time, "
                  f"x{r['peak_rss_bytes'] / prev['peak_rss_bytes']:.1f} RSS)")  # fmt: skip
        lines.append(s)
        prev = r
    return lines


FOOTNOTES = """\
embedded-pg: the embedded engine with its state in PostgreSQL (a private server started per run
  with durable settings, or $PLAIT_BENCH_PG); blobs stay in the data dir.
CPU ms/node: CPU seconds of the run / nodes. embedded: the engine process (its in-process tasks
  included); embedded-pg: that plus the PostgreSQL server's processes (postmaster, backends,
  writers, from /proc; unknown with $PLAIT_BENCH_PG).
nodes: every node of the execution (task, dynamic, subworkflow and branch nodes), counted from
  its events; nodes/s = nodes / wall. wall: embedded = `_embedded.run` (register, compile, run,
  engine start/stop), gRPC = `Client.execute` + `Client.wait`, flytekit = the workflow call;
  imports are excluded everywhere.
s2s (schedule-to-start, task nodes, attempt 1): the attempt's RUNNING event (the engine commits
  the dispatch) -> NodeTransition.started_at (the worker, or the in-process executor, reports
  when it started the attempt). It holds the commit, the hand-off to the executor, waiting for a
  free slot, the trip to the worker and its pick-up. In a wide fan-out it is dominated by
  waiting for a slot behind the other tasks; chain-200 (one task at a time) shows the per-hop
  latency.
disp: ready -> RUNNING event (the engine's own scheduling delay before dispatch).
peak RSS: embedded = ru_maxrss of the fresh process running the engine (includes the SDK and
  the in-process tasks); gRPC = VmHWM of the `plait serve` process; flytekit = ru_maxrss.
B/node: size of the data dir (sqlite db + wal + blobs; embedded-pg: blobs + what the run added
  to pg_database_size) after the run / nodes.
plait/fk: plait wall / flytekit wall (< 1: plait is faster)."""


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true", help="N=1,000 only, no 100k (< 1 minute)")
    p.add_argument("--workloads", help=f"comma-separated (default: {','.join(FULL)})")
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated: " + ",".join(MODES))
    p.add_argument("--no-scaling", action="store_true", help="skip the embedded 100k fan-out")
    p.add_argument("--workers", type=int, default=2, help="gRPC worker processes (default 2)")
    p.add_argument("--slots", type=int, default=8, help="slots per worker (default 8)")
    p.add_argument("--flyte-timeout", type=float, default=300)
    p.add_argument("--plait-timeout", type=float, default=300)
    p.add_argument("--json", type=Path, help="save every raw figure here")
    args = p.parse_args(argv)
    workloads = args.workloads.split(",") if args.workloads else (QUICK if args.quick else FULL)
    modes = [m for m in args.modes.split(",") if m]
    plan = [
        (wl, m)
        for wl in workloads
        for m in modes
        if m not in REPLICAS or wl in REPLICA_WORKLOADS or args.workloads
    ]
    if not args.quick and not args.no_scaling and "embedded" in modes:
        plan += [(wl, "embedded") for wl in SCALING if wl not in workloads]
    results = []
    started = time.perf_counter()
    for wl, mode in plan:
        print(f"  running {wl} on {mode} ...", file=sys.stderr, flush=True)
        r = run_one(mode, wl, args)
        print(f"    {r.get('status')}: {_fmt(r.get('wall_s'), '.2f')} s", file=sys.stderr)
        results.append(r)
    total = time.perf_counter() - started
    print(table(results))
    print()
    for t, measured, verdict in targets(results):
        print(f"  [{verdict:^7}] {t}: {measured}")
    lines = scaling(results)
    if lines:
        print("\nembedded fan-out scaling:")
        print("\n".join(lines))
    print(f"\ngRPC: {args.workers} worker processes x {args.slots} slots; total bench time "
          f"{total:.0f} s\n")  # fmt: skip
    print(FOOTNOTES)
    if args.json:
        args.json.write_text(json.dumps({"results": results, "targets": targets(results),
                                         "seconds": total}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
