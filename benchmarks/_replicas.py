"""Run one workload on `plait serve` replicas over PostgreSQL; prints one ``BENCH-JSON`` line.

Usage::

    python -m benchmarks._replicas WORKLOAD_KEY [--replicas 2] [--workers 2] [--slots 16]

A private PostgreSQL server (durable: fsync and synchronous commits on) is started for the run
and stopped after it. ``--replicas`` `plait serve --cluster true` processes share its database
and one blob folder; the workers are spread over the replicas (worker ``i`` connects to replica
``i mod N``) and the client submits to the first, so with two replicas half of the tasks reach
their owner through the store's work queue. CPU is the sum over the replicas, the workers and
the PostgreSQL server.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._plait_run import _cpu, _figures, _max_nodes, _plait_cmd, _vm, _wait_for
from benchmarks._spec import Workload, by_key


def _spawn(cmd: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in reversed(procs):
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class _Run:
    """Replicas and workers on one database; every process stopped by `close`."""

    def __init__(self, wl: Workload, root: Path, url: str) -> None:
        self.wl, self.root, self.url = wl, root, url
        self.env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        self.replicas: list[subprocess.Popen[bytes]] = []
        self.workers: list[subprocess.Popen[bytes]] = []
        self.addresses: list[str] = []

    def start(self, replicas: int, workers: int, slots: int) -> None:
        for i in range(replicas):
            data = self.root / f"replica{i}"
            cmd = [*_plait_cmd(), "serve", "--address", "127.0.0.1:0", "--data-dir", str(data),
                   "--store", self.url, "--cluster", "true", "--blob-url",
                   str(self.root / "blobs"), "--max-nodes", str(_max_nodes(self.wl))]  # fmt: skip
            self.replicas.append(_spawn(cmd, self.root / f"replica{i}.log", self.env))
            addr = data / "engine.addr"
            _wait_for(addr.exists, 60, f"replica {i} start", self.replicas)
            self.addresses.append(addr.read_text().strip())
        logs = []
        for i in range(workers):
            log = self.root / f"worker{i}.log"
            target = self.addresses[i % replicas]
            cmd = [sys.executable, "-m", "benchmarks._worker", target, "--slots", str(slots)]
            self.workers.append(_spawn(cmd, log, self.env))
            logs.append(log)
        every = self.replicas + self.workers
        _wait_for(lambda: all("connected to" in p.read_text() for p in logs), 120, "workers", every)

    def cpu(self) -> float:
        return sum(_cpu(p.pid) for p in self.replicas + self.workers)

    def close(self) -> None:
        _stop(self.workers + self.replicas)


def _submit(wl: Workload, address: str, timeout: float) -> tuple[str, float, bool, str]:
    from plait._client import Client

    from benchmarks import workloads

    entity = getattr(workloads, wl.entity)
    with Client(address, timeout=120) as client:
        t0 = time.perf_counter()
        handle = client.execute(entity, wl.inputs)
        try:
            ok = wl.check(client.wait(handle, timeout))
            return handle.name, time.perf_counter() - t0, ok, "ok" if ok else "wrong result"
        except TimeoutError:
            return handle.name, timeout, False, "timeout"
        except Exception as exc:  # reported in the table, as the other modes do
            return handle.name, time.perf_counter() - t0, False, f"error: {exc}"


def run_replicas(
    wl: Workload, root: Path, *, replicas: int, workers: int, slots: int, timeout: float
) -> dict[str, Any]:
    """The workload on `replicas` replicas over a private PostgreSQL server."""
    from tests.support.postgres import bindir, private_postgres

    with private_postgres({"max_connections": "100"}) as pg:
        url = pg.create_database("bench")
        run = _Run(wl, root, url)
        try:
            run.start(replicas, workers, slots)
            cpu0, pg0 = run.cpu(), pg.cpu_seconds()
            name, wall, ok, status = _submit(wl, run.addresses[0], timeout)
            cpu, pg_cpu = run.cpu() - cpu0, pg.cpu_seconds() - pg0
            peak = max(_vm(p.pid, "VmHWM") or 0 for p in run.replicas)
        finally:
            run.close()
        out: dict[str, Any] = {"engine": "plait", "mode": f"grpc-pg-{replicas}",
               "workload": wl.key, "wall_s": wall, "ok": ok, "status": status,
               "cpu_s": cpu + pg_cpu, "engine_cpu_s": cpu, "pg_cpu_s": pg_cpu,
               "peak_rss_bytes": peak, "replicas": replicas, "workers": workers,
               "slots": slots, "pg": f"private PostgreSQL {bindir().parent.name}"}  # fmt: skip
        out.update(_figures(wl, root, name, url))  # the blobs are in root / "blobs"
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks._replicas")
    p.add_argument("workload")
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--slots", type=int, default=16)
    p.add_argument("--timeout", type=float, default=300)
    args = p.parse_args(argv)
    wl = by_key(args.workload)
    root = Path(tempfile.mkdtemp(prefix=f"plait-bench-replicas-{wl.key}-"))
    try:
        out = run_replicas(wl, root, replicas=args.replicas, workers=args.workers,
                           slots=args.slots, timeout=args.timeout)  # fmt: skip
    finally:
        if os.environ.get("PLAIT_BENCH_KEEP") is None:
            shutil.rmtree(root, ignore_errors=True)
    print("BENCH-JSON " + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
