"""Run the peers: install each (or say why not), run each workload in a fresh process of its
venv under `_tree`, and verify what it returned. Never raises on a peer's failure: every run
becomes a row with a status.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._peers import ONE_TASK, ONE_TASK_RESULT, PEERS, Peer, kind_of
from benchmarks._peers._state import PeerState
from benchmarks._peers._venv import PeerUnavailableError, ensure, given_python, requirement
from benchmarks._spec import by_key

ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass
class PeerOptions:
    """How the peers are installed and run."""

    cache: Path = ROOT / ".bench-peers"
    pins: dict[str, str] = field(default_factory=dict)
    pythons: dict[str, str] = field(default_factory=dict)
    timeout: float = 300.0
    install_timeout: float = 900.0
    startup_runs: int = 3
    dbos_db: str = "postgres"  # or "sqlite"
    log: Callable[[str], None] = field(default=lambda s: print(s, file=sys.stderr, flush=True))


def verify(workload: str, result: Any) -> bool:
    """Whether a peer's run returned the right answer for `workload` (the same check as
    plait's: a fan-out returns [1..N] in order, a chain returns N)."""
    if workload == ONE_TASK:
        return bool(result == ONE_TASK_RESULT)
    return by_key(workload).check(result)


def measured(cmd: list[str], *, timeout: float, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """`cmd` run under `_tree` (it, and all it starts, measured and stopped after)."""
    wrapper = [sys.executable, "-m", "benchmarks._peers._tree", "--timeout", str(timeout), "--",
               *cmd]  # fmt: skip
    proc = subprocess.Popen(wrapper, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**env, "PYTHONPATH": str(ROOT)}, cwd=cwd,
                            start_new_session=True)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout + 60)
    except subprocess.TimeoutExpired:
        # The wrapper itself stops its tree at `timeout`: it is stuck, so its session goes.
        _stop_session(proc)
        return {"error": f"the measuring wrapper did not finish within {timeout + 60:.0f} s"}
    except BaseException:
        # The wrapper stops its tree on SIGTERM; its session is killed if it does not.
        _stop_session(proc)
        raise
    for line in out.splitlines():
        if line.startswith("BENCH-JSON "):
            got: dict[str, Any] = json.loads(line.removeprefix("BENCH-JSON "))
            return got
    tail = (err or out).strip().splitlines()[-3:]
    return {"error": f"measuring failed (exit {proc.returncode}): {' | '.join(tail)}"}


def _stop_session(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def outcome(workload: str, tree: dict[str, Any], timeout: float) -> dict[str, Any]:
    """A row from one measured run: status, and the figures when the run is right."""
    child = tree.get("child")
    row: dict[str, Any] = {"workload": workload, "ok": False, "tree": {
        k: v for k, v in tree.items() if k != "child"}}  # fmt: skip
    if "error" in tree:
        row["status"] = tree["error"]
    elif tree.get("timed_out"):
        row["status"] = f"> {timeout:.0f} s (timeout)"
    elif child is None:
        tail = " | ".join(tree.get("stderr_tail", [])[-2:])[:200]
        row["status"] = f"error (exit {tree.get('returncode')}): {tail}"
    elif not verify(workload, child.get("result")):
        row["status"] = "wrong result"
    else:
        row.update(ok=True, status="ok")
    if child is not None:
        row.update({k: child.get(k) for k in ("wall_s", "start_s", "version", "database")})
        row["pre_cpu_s"] = child.get("pre_cpu_s")
    row["peak_rss_bytes"] = tree.get("peak_pss_bytes")
    row["process_s"] = tree.get("process_s")
    return row


def _one(
    peer: Peer, python: str, workload: str, state: PeerState, opts: PeerOptions
) -> dict[str, Any]:
    cmd = [python, "-m", peer.runner, workload]
    rows = []
    for _ in range(max(1, opts.startup_runs) if workload == ONE_TASK else 1):
        env, folder = state.fresh()
        cpu0 = state.server_cpu()
        try:
            tree = measured(cmd, timeout=opts.timeout, env=env, cwd=folder)
        finally:
            state.done(folder)
        row = outcome(workload, tree, opts.timeout)
        _cpu(row, workload, state.server_cpu() - cpu0)
        rows.append(row)
        if not row["ok"]:
            return row
    if workload != ONE_TASK:
        return rows[0]
    # As plait's start-up figure: the best of several fresh processes, wall and CPU each.
    best = min(rows, key=lambda r: r["wall_s"])
    return {**best, "cpu_s": min(r["cpu_s"] for r in rows), "runs": len(rows)}


def _warm_up(peer: Peer, python: str, state: PeerState, opts: PeerOptions) -> None:
    """One untimed one-task run that makes the peer's schema; runs start from a copy of it."""
    opts.log(f"  warming up {peer.name} (its database schema, untimed) ...")
    env, folder = state.fresh(for_template=True)
    tree = measured([python, "-m", peer.runner, ONE_TASK], timeout=opts.timeout, env=env,
                    cwd=folder)  # fmt: skip
    row = outcome(ONE_TASK, tree, opts.timeout)
    if not row["ok"]:
        opts.log(f"    warm-up: {row['status']}; every run makes its own schema")
        state.drop_template()


def _cpu(row: dict[str, Any], workload: str, server: float) -> None:
    """CPU of the run: the tree's (and a database server's), less the runner's own imports,
    as plait's figures exclude them; a one-task run counts everything, as `plait run` does."""
    tree_cpu = row["tree"].get("tree_cpu_s")
    if tree_cpu is None:
        return
    if workload == ONE_TASK:
        row["cpu_s"] = tree_cpu + server
        row["wall_s"] = row.get("process_s")
    else:
        row["cpu_s"] = tree_cpu - (row.get("pre_cpu_s") or 0.0) + server
    row["server_cpu_s"] = server or None


def run_peers(names: list[str], workloads: list[str], opts: PeerOptions) -> list[dict[str, Any]]:
    """Every workload on every named peer, one row each: "not installed: why" when its venv
    cannot be made, "n/a" for a workload it has no natural form of."""
    rows: list[dict[str, Any]] = []
    for name in names:
        peer = PEERS[name]
        req = requirement(peer, opts.pins)
        base = {"mode": name, "engine": name, "peer": True, "requirement": req,
                "durable": peer.durable}  # fmt: skip
        try:
            python = given_python(peer, opts.pythons) or ensure(
                peer, req, opts.cache, timeout=opts.install_timeout, log=opts.log
            )
        except PeerUnavailableError as exc:
            opts.log(f"  {name}: not installed: {exc}")
            rows += [{**base, "workload": w, "ok": False, "status": f"not installed: {exc}"}
                     for w in workloads]  # fmt: skip
            continue
        rows += _runs(peer, python, workloads, base, opts)
    return rows


def _runs(
    peer: Peer, python: str, workloads: list[str], base: dict[str, Any], opts: PeerOptions
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    runnable = [w for w in workloads if kind_of(w) in peer.kinds]
    state = PeerState(peer, opts.dbos_db, opts.log) if runnable else None
    try:
        if state is not None and peer.warm_up:
            _warm_up(peer, python, state, opts)
        for wl in workloads:
            if state is None or wl not in runnable:
                rows.append({**base, "workload": wl, "ok": False, "status": "n/a"})
                continue
            opts.log(f"  running {wl} on {peer.name} ...")
            t0 = time.perf_counter()
            row = {**base, **_one(peer, python, wl, state, opts)}
            if row.get("version"):
                row["engine"] = f"{peer.name} {row['version']}"
            opts.log(f"    {row['status']}: {time.perf_counter() - t0:.1f} s")
            rows.append(row)
    finally:
        if state is not None:
            state.close()
    return rows
