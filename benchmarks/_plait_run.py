"""Run one workload on plait; prints one ``BENCH-JSON {...}`` line.

Usage::

    python -m benchmarks._plait_run embedded WORKLOAD_KEY [--data-dir DIR]
    python -m benchmarks._plait_run embedded-pg WORKLOAD_KEY   # $PLAIT_BENCH_PG or a private
                                                               # PostgreSQL server
    python -m benchmarks._plait_run grpc WORKLOAD_KEY [--workers 2] [--slots N]
        [--server-prefix 'py-spy record -o out.json --format speedscope --']

Each run uses a fresh data dir (a temporary one unless given) and, embedded, a fresh process:
its peak RSS is the engine's. ``embedded-pg`` keeps the engine's state in PostgreSQL: a fresh
database on the server of ``$PLAIT_BENCH_PG`` (a ``postgresql://`` URL whose user may create
databases), or on a private server started for the run (durable settings: fsync and
synchronous commits on), stopped after it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._events import analyze, dir_bytes, percentile
from benchmarks._spec import Workload, by_key

_FIGURES = True


def _figures(
    wl: Workload, data_dir: Path, execution: str | None, store_url: str | None = None
) -> dict[str, Any]:
    if not _FIGURES:
        return {}
    figs = analyze(data_dir, execution, store_url)
    out: dict[str, Any] = {
        "phase": figs.phase,
        "nodes": figs.nodes,
        "task_nodes": figs.task_nodes,
        "events": figs.events,
        "event_span_s": figs.last_event - figs.first_event,
        "data_dir_bytes": dir_bytes(data_dir),
        "first_child_s": (
            figs.first_child - figs.exec_running
            if figs.first_child is not None and figs.exec_running
            else None
        ),
    }
    for name, values in (
        ("ready_to_dispatch", figs.ready_to_dispatch),
        ("dispatch_to_done", figs.dispatch_to_done),
        ("ready_to_done", figs.ready_to_done),
        ("s2s", figs.dispatch_to_start),
    ):
        out[f"{name}_p50_s"] = percentile(values, 0.5)
        out[f"{name}_p99_s"] = percentile(values, 0.99)
    out["latency_samples"] = len(figs.dispatch_to_start)
    return out


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _max_nodes(wl: Workload) -> int:
    """A server's limit for the workload: its protective default (10,000 nodes per spec),
    raised for larger fan-outs (the embedded engine's default allows 1,000,000)."""
    return max(10_000, int(wl.inputs.get("n", 0)) + 10)


def _warm_imports() -> None:
    """Import what a run uses before the clock starts: imports are not the engine's work."""
    import plait._embedded
    import plait._runtime
    import plait_engine.app

    from benchmarks import workloads

    del plait, plait_engine, workloads


async def _embedded_async(
    wl: Workload, data_dir: Path, store_url: str, out: dict[str, Any]
) -> None:
    # What `plait run` does (`_embedded.run`), with the embedded engine's default limits. The
    # results go to `out`: a coroutine returning them would have asyncio's runner repr() them.
    from plait import _runtime, _serialize
    from plait._embedded import embedded_config, inputs_to_literals
    from plait_engine.app import build_engine

    from benchmarks import workloads

    entity = getattr(workloads, wl.entity)
    config = embedded_config(data_dir, store=store_url)
    engine = build_engine(config, task_runner=_runtime.execute, runner_checks_outputs=True)
    await engine.start()
    try:
        bundle = _serialize.collect(entity)
        await engine.registry.register(bundle.tasks, bundle.workflows, bundle.launch_plans)
        rec = await engine.executions.create(
            workflow_id=bundle.root, inputs=inputs_to_literals(entity, wl.inputs)
        )
        final = await engine.executions.wait(rec)
        _, outputs = await engine.executions.data(final)
        out.update(entity=entity, final=final, outputs=outputs)
    finally:
        await engine.stop()


def run_embedded(
    wl: Workload, data_dir: Path, store_url: str = "", server_cpu: Any = None
) -> dict[str, Any]:
    """The workload on an embedded engine in this process (durable SQLite, or the PostgreSQL
    database of `store_url`, whose server's CPU seconds `server_cpu()` tells when given)."""
    from plait import _serialize
    from plaitidl.core.v1 import errors_pb2, execution_pb2

    _warm_imports()
    rss_before = _maxrss()
    db_before = _database_bytes(store_url) if store_url else 0
    server0 = server_cpu() if server_cpu else None
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    got: dict[str, Any] = {}
    asyncio.run(_embedded_async(wl, data_dir, store_url, got))
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    server = server_cpu() - server0 if server_cpu and server0 is not None else None
    peak = _maxrss()
    final = got["final"]
    ok = final.phase == execution_pb2.EXECUTION_PHASE_SUCCEEDED
    status = "ok"
    if ok:
        ok = wl.check(_serialize.outputs_to_python(got["entity"], got["outputs"]))
        status = "ok" if ok else "wrong result"
    else:
        err = errors_pb2.ExecutionError.FromString(final.error)
        status = f"failed: {err.code}: {err.message[:80]}"
    del got
    out = {"engine": "plait", "mode": "embedded-pg" if store_url else "embedded",
           "workload": wl.key, "wall_s": wall, "ok": ok, "status": status,
           "peak_rss_bytes": peak, "rss_before_run_bytes": rss_before, "engine_cpu_s": cpu,
           "server_cpu_s": server}  # fmt: skip
    # CPU of the whole run: the engine process (with its in-process tasks) plus, on PostgreSQL,
    # the server's processes (unknown for a server of $PLAIT_BENCH_PG).
    out["cpu_s"] = cpu + server if server is not None else (None if store_url else cpu)
    out.update(_figures(wl, data_dir, final.name, store_url or None))
    if store_url:
        # What the run added to the database (an empty one is several MiB of catalogs).
        grown = _database_bytes(store_url) - db_before
        out["data_dir_bytes"] = out.get("data_dir_bytes", 0) + grown
    return out


def _database_bytes(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


def run_embedded_pg(wl: Workload, data_dir: Path) -> dict[str, Any]:
    """The workload on an embedded engine over PostgreSQL: a fresh database on the server of
    ``$PLAIT_BENCH_PG``, or on a private server started (and stopped) for the run."""
    import psycopg

    given = os.environ.get("PLAIT_BENCH_PG", "")
    if given:
        name = f"plait_bench_{os.getpid()}"
        with psycopg.connect(given, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        url = given.rsplit("/", 1)[0] + "/" + name
        try:
            return {**run_embedded(wl, data_dir, url), "pg": "PLAIT_BENCH_PG"}
        finally:
            with psycopg.connect(given, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    from tests.support.postgres import bindir, private_postgres

    # Durable, as a production server: fsync and synchronous commits on.
    with private_postgres({"max_connections": "50"}) as pg:
        url = pg.create_database("bench")
        out = run_embedded(wl, data_dir, url, pg.cpu_seconds)
    return {**out, "pg": f"private PostgreSQL {bindir().parent.name}"}


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) a live process has used; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _vm(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _wait_for(pred: Any, timeout: float, what: str, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{what}: a process exited with {p.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} took more than {timeout}s")
        time.sleep(0.02)


def _plait_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("plait")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("plait")
    return [found] if found else [sys.executable, "-c", "from plait._cli import main; main()"]


def run_grpc(
    wl: Workload,
    data_dir: Path,
    *,
    workers: int = 2,
    slots: int | None = None,
    timeout: float = 300,
    server_prefix: list[str] | None = None,
) -> dict[str, Any]:
    """The workload on `plait serve` with `workers` worker processes, submitted over gRPC."""
    from plait._client import Client

    from benchmarks import workloads

    logs = data_dir.parent / (data_dir.name + "-logs")
    logs.mkdir(parents=True, exist_ok=True)
    addr_file = data_dir / "engine.addr"
    procs: list[subprocess.Popen[bytes]] = []
    server_cmd = [*(server_prefix or []), *_plait_cmd(), "serve", "--address", "127.0.0.1:0",
                  "--data-dir", str(data_dir), "--max-nodes", str(_max_nodes(wl))]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    with (logs / "server.log").open("wb") as slog:
        server = subprocess.Popen(server_cmd, stdout=slog, stderr=subprocess.STDOUT, env=env)
    procs.append(server)
    try:
        _wait_for(addr_file.exists, 60, "engine start", procs)
        address = addr_file.read_text().strip()
        wlogs = []
        for i in range(workers):
            path = logs / f"worker-{i}.log"
            with path.open("wb") as f:
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "benchmarks._worker",
                            address,
                            *([] if slots is None else ["--slots", str(slots)]),
                        ],
                        stdout=f,
                        stderr=subprocess.STDOUT,
                        env=env,
                    )
                )
            wlogs.append(path)
        _wait_for(lambda: all("connected to" in p.read_text() for p in wlogs), 60, "workers", procs)
        entity = getattr(workloads, wl.entity)
        pids = _served_pids(server, procs[1:])
        cpu0 = sum(_cpu(p) for p in pids)
        with Client(address, timeout=120) as client:
            client_cpu0 = time.process_time()
            t0 = time.perf_counter()
            handle = client.execute(entity, wl.inputs)
            try:
                result = client.wait(handle, timeout)
                wall = time.perf_counter() - t0
                ok = wl.check(result)
                status = "ok" if ok else "wrong result"
            except TimeoutError:
                wall, ok, status = timeout, False, "timeout"
            except Exception as exc:
                wall, ok, status = time.perf_counter() - t0, False, f"error: {exc}"
            client_cpu = time.process_time() - client_cpu0
        cpu = sum(_cpu(p) for p in pids) - cpu0
        serve_pid = pids[0]
        peak = _vm(serve_pid, "VmHWM")
        rss_end = _vm(serve_pid, "VmRSS")
    finally:
        if server_prefix and server.poll() is None:
            # The server runs under a wrapper (a profiler): stop the server itself, so the
            # wrapper sees it exit and writes its output.
            for child in _children(server.pid):
                os.kill(child, signal.SIGTERM)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                pass
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    out: dict[str, Any] = {"engine": "plait", "mode": "grpc", "workload": wl.key, "wall_s": wall,
           "ok": ok, "status": status, "peak_rss_bytes": peak, "rss_end_bytes": rss_end,
           "workers": workers, "slots": slots, "cpu_s": cpu,
           "client_cpu_s": client_cpu}  # fmt: skip
    out.update(_figures(wl, data_dir, handle.name))
    return out


def _served_pids(
    server: subprocess.Popen[bytes], workers: list[subprocess.Popen[bytes]]
) -> list[int]:
    """`plait serve` (the process under a wrapper such as py-spy) and the workers: whose CPU
    the run costs."""
    serve = server.pid
    children = _children(serve)
    command = Path(f"/proc/{serve}/cmdline").read_bytes().decode(errors="replace")
    if children and "py-spy" in command:
        serve = children[0]
    return [serve, *(w.pid for w in workers)]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks._plait_run")
    p.add_argument("mode", choices=["embedded", "embedded-pg", "grpc"])
    p.add_argument("workload")
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--slots", type=int, help="slots per worker (default: the worker's)")
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--server-prefix", default="", help="command to wrap `plait serve` with")
    p.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    p.add_argument("--no-figures", action="store_true", help="skip reading the events (profiling)")
    args = p.parse_args(argv)
    wl = by_key(args.workload)
    global _FIGURES  # noqa: PLW0603
    _FIGURES = not args.no_figures
    tmp = Path(tempfile.mkdtemp(prefix=f"plait-bench-{wl.key}-"))
    data_dir = args.data_dir or tmp / "data"
    try:
        if args.mode == "embedded":
            out = run_embedded(wl, data_dir)
        elif args.mode == "embedded-pg":
            out = run_embedded_pg(wl, data_dir)
        else:
            out = run_grpc(
                wl, data_dir, workers=args.workers, slots=args.slots, timeout=args.timeout,
                server_prefix=shlex.split(args.server_prefix),
            )  # fmt: skip
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print("BENCH-JSON " + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
