"""`python -m benchmarks`: plait (embedded on SQLite, embedded on PostgreSQL, over gRPC)
against flytekit's local execution and its peers (Prefect 3, Ray, DBOS Transact, each in a venv
of its own), and the start-up costs.

Prints one fixed-width table, plait beside its peers with ratios, the targets of issue 17 (met
or not, with the figure) and never fails on a figure. See README.md for the definitions and the
options.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._peers import ALL_PEERS, ONE_TASK, PEERS
from benchmarks._peers import _table as peer_table
from benchmarks._peers._run import PeerOptions, run_peers

ALL_MODES = ("embedded", "embedded-pg", "grpc", "grpc-pg-1", "grpc-pg-2", "flytekit")
# Replicas over PostgreSQL (one, then two sharing the work): a few workloads only.
REPLICAS = {"grpc-pg-1": 1, "grpc-pg-2": 2}
SINGLE = ("embedded", "embedded-pg", "grpc", "flytekit")
# (workload, modes it runs in): the biggest runs skip the slowest modes.
FULL: list[tuple[str, tuple[str, ...]]] = [
    ("fanout-1000", ALL_MODES),
    ("fanout-10000", ALL_MODES),
    ("fanout-100000", ("embedded", "embedded-pg", "grpc")),
    ("mergesort-5000", ALL_MODES),
    ("mergesort-20000", ("embedded", "embedded-pg", "grpc")),
    ("countchars-200", SINGLE),
    ("chain-200", SINGLE),
]
QUICK: list[tuple[str, tuple[str, ...]]] = [
    ("fanout-1000", ALL_MODES),
    ("fanout-10000", ("embedded", "grpc")),
    ("chain-200", ("embedded", "grpc")),
]
MILLION: list[tuple[str, tuple[str, ...]]] = [("fanout-1000000", ("embedded",))]
# The peers are slow (Prefect 3 takes minutes for a fan-out of 10,000, and about a second a
# subflow, so the merge sort of 5,000 would take over half an hour): a few workloads only;
# --peer-workloads for more (mergesort-1000 on Prefect: minutes).
PEER_FULL = ["fanout-1000", "fanout-10000", "chain-200"]
PEER_QUICK = ["fanout-1000"]
MIB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent


def _child(cmd: list[str], timeout: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                              cwd=ROOT)  # fmt: skip
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


def flyte_python() -> str:
    """The Python that has flytekit: ``$PLAIT_BENCH_FLYTE_PYTHON``, ``.venv-flyte`` (`make
    flyte-env`), or this one."""
    given = os.environ.get("PLAIT_BENCH_FLYTE_PYTHON")
    if given:
        return given
    venv = ROOT / ".venv-flyte" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def run_one(mode: str, workload: str, args: argparse.Namespace) -> dict[str, Any]:
    """One workload in one mode, in a fresh process."""
    py = sys.executable
    if mode == "flytekit":
        out = _child([flyte_python(), "-m", "benchmarks._flyte_run", workload], args.flyte_timeout)
    elif mode in REPLICAS:
        cmd = [py, "-m", "benchmarks._replicas", workload, "--replicas", str(REPLICAS[mode]),
               "--timeout", str(args.plait_timeout), "--workers", str(args.workers)]  # fmt: skip
        if args.slots:
            cmd += ["--slots", str(args.slots)]
        out = _child(cmd, args.plait_timeout + 90)
    else:
        cmd = [py, "-m", "benchmarks._plait_run", mode, workload, "--timeout",
               str(args.plait_timeout), "--workers", str(args.workers)]  # fmt: skip
        if args.slots:
            cmd += ["--slots", str(args.slots)]
        out = _child(cmd, args.plait_timeout + 120)
    out["mode"] = mode
    out["workload"] = workload
    return out


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.1f}"


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def cpu_us(r: dict[str, Any]) -> float | None:
    """CPU microseconds per node of a run (None when unknown)."""
    nodes = r.get("nodes")
    return r["cpu_s"] * 1e6 / nodes if r.get("cpu_s") and nodes else None


def bytes_per_node(r: dict[str, Any]) -> float | None:
    """Stored bytes per node of a run."""
    nodes = r.get("nodes")
    return r.get("data_dir_bytes", 0) / nodes if nodes else None


def table(results: list[dict[str, Any]]) -> str:
    """The fixed-width table of every run."""
    flyte = {r["workload"]: r for r in results if r["mode"] == "flytekit"}
    head = ("workload", "mode", "wall s", "nodes", "CPU µs/node", "peak RSS MiB", "B/node",
            "1st child s", "hop p50 ms", "s2s p50 ms", "plait/fk", "status")  # fmt: skip
    rows: list[tuple[str, ...]] = []
    for r in results:
        wall = r.get("wall_s")
        fk = flyte.get(r["workload"])
        ratio = None
        if r["mode"] != "flytekit" and fk is not None and wall:
            ratio = wall / fk["wall_s"] if fk.get("wall_s") and fk.get("ok") else None
        rss = r.get("peak_rss_bytes")
        status = r.get("status", "")
        if r["mode"] != "flytekit" and fk is not None and fk.get("status") == "timeout":
            status += " (fk timeout)"
        rows.append((
            r["workload"], r["mode"], _fmt(wall, ".2f"), _fmt(r.get("nodes"), ","),
            _fmt(cpu_us(r), ",.0f"), _fmt(rss / MIB if rss else None, ".0f"),
            _fmt(bytes_per_node(r), ",.0f"), _fmt(r.get("first_child_s"), ".2f"),
            _ms(r.get("ready_to_done_p50_s")), _ms(r.get("s2s_p50_s")),
            _fmt(ratio, ".3f"), status,
        ))  # fmt: skip
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    left = {0, 1, len(head) - 1}

    def line(cells: tuple[str, ...]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return (
            "| " + " | ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in pairs) + " |"
        )

    sep = "|" + "|".join(("-" * (w + 2)) for w in widths) + "|"
    return "\n".join([line(head), sep, *(line(row) for row in rows)])


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT MET")


class _Targets:
    """The targets of issue 17, each with its figure from this run."""

    def __init__(self, results: list[dict[str, Any]]) -> None:
        self.by = {(r["mode"], r["workload"]): r for r in results}
        self.out: list[tuple[str, str, str]] = []

    def ok_run(self, mode: str, wl: str) -> dict[str, Any] | None:
        r = self.by.get((mode, wl))
        return r if r and r.get("ok") else None

    def add(self, what: str, value: float | None, fmt: str, limit: float) -> None:
        shown = "-" if value is None else fmt.format(value)
        self.out.append((what, shown, _verdict(None if value is None else value <= limit)))

    def figure(self, mode: str, wl: str, fn: Any) -> float | None:
        r = self.ok_run(mode, wl)
        return None if r is None else fn(r)


def targets(results: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(target, measured, met / NOT MET / n/a / info) for each target of issue 17."""
    t = _Targets(results)
    t.add("embedded fan-out 10,000: CPU per node <= 65 µs",
          t.figure("embedded", "fanout-10000", cpu_us), "{:,.0f} µs", 65)  # fmt: skip
    t.add("gRPC fan-out 10,000, 2 workers: CPU per node (server + workers) <= 200 µs",
          t.figure("grpc", "fanout-10000", cpu_us), "{:,.0f} µs", 200)  # fmt: skip
    million = "fanout-1000000"
    t.add("1,000,000 nodes in one dynamic: peak RSS < 1 GiB",
          t.figure("embedded", million, lambda r: r["peak_rss_bytes"] / MIB), "{:,.0f} MiB",
          1024)  # fmt: skip
    t.add(
        "1,000,000 nodes in one dynamic: first nodes committed within 5 s",
        t.figure("embedded", million, lambda r: r.get("first_child_s")),
        "{:.2f} s",
        5,
    )
    t.add("1,000,000 nodes in one dynamic: done within 120 s",
          t.figure("embedded", million, lambda r: r["wall_s"]), "{:.1f} s", 120)  # fmt: skip
    t.add("100,000 nodes in one dynamic: peak RSS < 200 MB",
          t.figure("embedded", "fanout-100000", lambda r: r["peak_rss_bytes"] / 1e6),
          "{:,.0f} MB", 200)  # fmt: skip
    t.add("at most 250 bytes stored per node (embedded fan-out 10,000)",
          t.figure("embedded", "fanout-10000", bytes_per_node), "{:,.0f} B", 250)  # fmt: skip
    for mode in ("embedded", "grpc"):
        t.add(f"a hop under 2 ms ({mode} chain-200, ready -> done p50)",
              t.figure(mode, "chain-200", lambda r: r.get("ready_to_done_p50_s", 0) * 1000),
              "{:.2f} ms", 2)  # fmt: skip
    t.add(
        "merge sort of 20,000 (embedded) within 10 s",
        t.figure("embedded", "mergesort-20000", lambda r: r["wall_s"]),
        "{:.1f} s",
        10,
    )
    start = t.by.get(("startup", "startup"))
    ok = start if start and start.get("ok") else None
    t.add("`import plait` under 150 ms", ok["import_s"] * 1000 if ok else None, "{:.0f} ms", 150)
    t.add("a one-task `plait run` under 0.4 s", ok["run_one_task_s"] if ok else None, "{:.2f} s",
          0.4)  # fmt: skip
    r = t.ok_run("embedded", "fanout-100000") or t.ok_run("embedded", million)
    t.out.append(("no ceiling: the embedded default runs a fan-out over 10,000",
                  "fan-out " + (r["workload"].split("-")[1] if r else "-") + " ran",
                  _verdict(None if r is None else True)))  # fmt: skip
    for wl in sorted({w for (m, w) in t.by if m == "embedded-pg"}):
        sq, pg = t.ok_run("embedded", wl), t.ok_run("embedded-pg", wl)
        if sq and pg and cpu_us(pg) and cpu_us(sq):
            t.out.append((f"PostgreSQL vs SQLite, {wl}: CPU µs/node (engine + server)",
                          f"{cpu_us(pg):,.0f} vs {cpu_us(sq):,.0f}; wall {pg['wall_s']:.2f} vs "
                          f"{sq['wall_s']:.2f} s", "info"))  # fmt: skip
    return t.out


FOOTNOTES = """\
embedded: `plait run`'s engine in one process (SQLite, tasks in threads); embedded-pg: the same
  with its state in PostgreSQL (a private server started per run with durable settings, or
  $PLAIT_BENCH_PG); grpc: `plait serve` + 2 `plait worker` processes (their default slots).
CPU µs/node: CPU time of the run / nodes, imports excluded. embedded: the engine process (its
  in-process tasks included); embedded-pg: plus the PostgreSQL server's processes; grpc: the
  server plus the workers, from the start of the execution to its end.
nodes: every node of the execution (task, dynamic, subworkflow and branch nodes), from its
  events. wall: embedded = register, compile, run (engine start/stop included), gRPC =
  `Client.execute` + `Client.wait`, flytekit = the workflow call; imports excluded everywhere.
peak RSS: embedded = ru_maxrss of the process running engine, SDK and tasks; gRPC = VmHWM of
  the `plait serve` process; flytekit = ru_maxrss.
B/node: the data dir (SQLite db + WAL + blobs; embedded-pg: blobs + what the run added to
  pg_database_size) after the run / nodes.
1st child s: from the execution's RUNNING event to the first committed event of a node inside
  a sub-graph (for a fan-out: the first nodes of the dynamic's spec).
hop p50 ms: ready -> done of task nodes (ready: the upstream's SUCCEEDED or the frame's start;
  done: its own result committed); in chain-200 that is one hop of a chain of no-op tasks.
s2s: schedule-to-start: the RUNNING event -> when the worker (or thread) started the task.
plait/fk: plait wall / flytekit wall (< 1: plait is faster)."""


def _plan(args: argparse.Namespace) -> list[tuple[str, str]]:
    chosen: list[tuple[str, tuple[str, ...]]]
    if args.workloads:
        chosen = [(w, ALL_MODES) for w in args.workloads.split(",")]
    elif args.million:
        chosen = MILLION
    else:
        chosen = QUICK if args.quick else FULL
    modes = set(args.modes.split(",")) if args.modes else set(ALL_MODES)
    return [(wl, m) for wl, ms in chosen for m in ms if m in modes]


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values or []:
        name, sep, value = v.partition("=")
        if not sep or name not in PEERS or not value:
            raise SystemExit(f"{what} {v!r}: expected PEER=VALUE, PEER one of {', '.join(PEERS)}")
        out[name] = value
    return out


def peer_plan(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """(peers, workloads) to run on them."""
    names = [] if args.no_peers else [n for n in args.peers.split(",") if n]
    for n in names:
        if n not in PEERS:
            raise SystemExit(f"--peers: unknown peer {n!r} (one of {', '.join(PEERS)})")
    if args.peer_workloads:
        workloads = args.peer_workloads.split(",")
    elif args.workloads:
        workloads = args.workloads.split(",")
    elif args.million:
        workloads = []
    else:
        workloads = list(PEER_QUICK if args.quick else PEER_FULL)
    if not (args.no_startup or args.million or args.quick) and ONE_TASK not in workloads:
        workloads.append(ONE_TASK)
    return (names, workloads) if names and workloads else ([], [])


def _peer_options(args: argparse.Namespace) -> PeerOptions:
    return PeerOptions(cache=args.peer_cache, pins=_pairs(args.peer_pin, "--peer-pin"),
                       pythons=_pairs(args.peer_python, "--peer-python"),
                       timeout=args.peer_timeout, startup_runs=args.peer_startup_runs,
                       dbos_db=args.dbos_db)  # fmt: skip


def _peer_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("peers (each in a venv of its own under --peer-cache)")
    g.add_argument("--peers", default=",".join(ALL_PEERS),
                   help="comma-separated peers to run (default: all: %(default)s)")  # fmt: skip
    g.add_argument("--no-peers", action="store_true", help="run no peer")
    g.add_argument(
        "--peer-workloads",
        help="workloads for the peers (default: fan-out 1,000 and "
        "10,000, chain-200, one-task; --quick: fan-out 1,000)",
    )
    g.add_argument(
        "--peer-timeout",
        type=float,
        default=300,
        help="seconds per peer run before its processes are killed (default 300)",
    )
    g.add_argument(
        "--peer-pin",
        action="append",
        metavar="PEER=REQUIREMENT",
        help="pip requirement for a peer's venv (or $PLAIT_BENCH_PIN_<PEER>)",
    )
    g.add_argument(
        "--peer-python",
        action="append",
        metavar="PEER=PYTHON",
        help="run a peer with this Python, no venv made ($PLAIT_BENCH_PYTHON_<PEER>)",
    )
    g.add_argument(
        "--peer-cache",
        type=Path,
        default=ROOT / ".bench-peers",
        help="where the peers' venvs are kept (default .bench-peers)",
    )
    g.add_argument(
        "--peer-startup-runs",
        type=int,
        default=3,
        help="fresh processes for a peer's one-task figure (best of; default 3)",
    )
    g.add_argument(
        "--dbos-db",
        choices=("postgres", "sqlite"),
        default="postgres",
        help="DBOS's system database (default: a private PostgreSQL server)",
    )


def _on_term(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true", help="fan-out 1,000 / 10,000 and chain-200")
    p.add_argument("--million", action="store_true",
                   help="only the 1,000,000-node fan-out, embedded (minutes)")  # fmt: skip
    p.add_argument("--workloads", help="comma-separated workload keys (every mode)")
    p.add_argument("--modes", help="comma-separated subset of: " + ",".join(ALL_MODES))
    p.add_argument("--no-startup", action="store_true", help="skip the start-up figures")
    p.add_argument("--workers", type=int, default=2, help="gRPC worker processes (default 2)")
    p.add_argument("--slots", type=int, help="slots per worker (default: the worker's)")
    p.add_argument("--flyte-timeout", type=float, default=300)
    p.add_argument("--plait-timeout", type=float, default=600)
    p.add_argument("--json", type=Path, help="save every raw figure here")
    _peer_args(p)
    args = p.parse_args(argv)
    # Stopped from outside: unwind, so every server and peer process it started is stopped.
    signal.signal(signal.SIGTERM, _on_term)
    peers, peer_workloads = peer_plan(args)
    results = []
    started = time.perf_counter()
    if not args.no_startup and not args.million:
        print("  measuring start-up ...", file=sys.stderr, flush=True)
        s = _child([sys.executable, "-m", "benchmarks._startup"], 300)
        results.append({**s, "mode": "startup", "workload": "startup"})
    for wl, mode in _plan(args):
        print(f"  running {wl} on {mode} ...", file=sys.stderr, flush=True)
        r = run_one(mode, wl, args)
        print(f"    {r.get('status')}: {_fmt(r.get('wall_s'), '.2f')} s", file=sys.stderr)
        results.append(r)
    peer_rows = run_peers(peers, peer_workloads, _peer_options(args)) if peers else []
    total = time.perf_counter() - started
    runs = [r for r in results if r["mode"] != "startup"]
    print(table(runs))
    if peer_rows:
        print("\nplait beside its peers (each run a fresh process; ratios over plait embedded):")
        print(peer_table.table(results, peer_rows))
    start = results[0] if results and results[0]["mode"] == "startup" else None
    if start and start.get("ok"):
        print(f"\nstart-up (best of 7): python {start['python_s'] * 1000:.0f} ms, "
              f"`import plait` {start['import_s'] * 1000:.0f} ms, `from plait import task, "
              f"workflow, dynamic` {start['import_decorators_s'] * 1000:.0f} ms, one-task "
              f"`plait run` {start['run_one_task_s']:.2f} s")  # fmt: skip
    print("\ntargets (issue 17):")
    for what, measured, verdict in targets(results):
        print(f"  [{verdict:^7}] {what}: {measured}")
    print(f"\ngRPC: {args.workers} worker processes; total bench time {total:.0f} s\n")
    print(FOOTNOTES)
    if peer_rows:
        print("\n" + peer_table.notes(peer_rows))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "peers": peer_rows,
                                         "targets": targets(results), "seconds": total},
                                        indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
