"""Run a command and measure it with every process it starts; prints one ``BENCH-JSON`` line.

Usage::

    python -m benchmarks._peers._tree [--timeout 300] [--sample 0.5] -- CMD ARGS...

This process makes itself the *child subreaper* of what it starts (``PR_SET_CHILD_SUBREAPER``):
a process that detaches from its parent (a server, a daemon that double-forks, Ray's raylet)
is re-parented here instead of to init, so it stays in the tree, is stopped at the end, and its
CPU time reaches ``RUSAGE_CHILDREN`` when it is reaped. Figures:

- ``process_s``: from the start of CMD to its exit;
- ``tree_cpu_s``: user + system CPU of every process of the tree (CMD and all its descendants,
  including what they did after CMD exited and before they were stopped);
- ``peak_pss_bytes``: the largest sum of the tree's proportional set sizes (PSS: shared pages
  split between the processes that share them), sampled every ``--sample`` seconds (0.5 by default;
  this process runs at the lowest priority so sampling does not slow the tree);
- ``child``: CMD's own ``BENCH-JSON`` line, if it printed one.

Past ``--timeout`` the whole tree is stopped (SIGTERM, then SIGKILL) and ``timed_out`` is set;
after CMD exits, what it left running has ``--grace`` seconds to exit by itself, then is stopped
the same way. Nothing it started outlives this process.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import resource
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"


def descendants(root: int) -> list[int]:
    """Every live (not zombie) descendant of `root`, from ``/proc/<pid>/task/*/children``."""
    out: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                kids = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            todo += kids
            out += [k for k in kids if _state(k) not in ("Z", "X")]
    return out


def pss_bytes(pid: int) -> int:
    """A process's proportional set size (its RSS when smaps_rollup is unreadable)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGESIZE")
    except (OSError, ValueError, IndexError):
        return 0


class _Reaper:
    """Reaps whatever child has exited (CMD, or an orphan re-parented here)."""

    def __init__(self, main: int) -> None:
        self.main = main
        self.main_status: int | None = None
        self.main_exit: float | None = None

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.main and self.main_status is None:
                self.main_status = os.waitstatus_to_exitcode(status)
                self.main_exit = time.perf_counter()


def stop_tree(reaper: _Reaper, grace: float, term_wait: float = 5.0) -> int:
    """Stop every descendant of this process: `grace` seconds to exit by itself, then SIGTERM,
    then SIGKILL. Returns how many had to be signalled."""
    me = os.getpid()
    deadline = time.monotonic() + grace
    while descendants(me) and time.monotonic() < deadline:
        reaper.reap()
        time.sleep(0.05)
    signalled: set[int] = set()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        reaper.reap()
        pids = descendants(me)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, sig)
                signalled.add(pid)
            except ProcessLookupError:
                pass
        end = time.monotonic() + (term_wait if sig == signal.SIGTERM else 10.0)
        while descendants(me) and time.monotonic() < end:
            reaper.reap()
            time.sleep(0.05)
    reaper.reap()
    return len(signalled)


def _bench_line(path: Path) -> dict[str, Any] | None:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("BENCH-JSON "):
            out: dict[str, Any] = json.loads(line.removeprefix("BENCH-JSON "))
            return out
    return None


def measure(
    cmd: list[str],
    *,
    timeout: float,
    sample: float = 0.5,
    grace: float = 10.0,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run `cmd` to its end (or `timeout`), measured with all it starts; then stop the tree.

    Must run in a process that started nothing else: it reaps every child.
    """
    _become_subreaper()
    with tempfile.TemporaryDirectory(prefix="plait-bench-tree-") as logs:
        return _measure(cmd, Path(logs), timeout, sample, grace, cwd, env)


def _measure(
    cmd: list[str],
    logs: Path,
    timeout: float,
    sample: float,
    grace: float,
    cwd: str | None,
    env: dict[str, str] | None,
) -> dict[str, Any]:
    out_path, err_path = logs / "stdout", logs / "stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=cwd, env=env)
    # Sampling reads /proc (a PSS sum costs milliseconds a process): at the lowest priority, so
    # on a busy machine the measured tree comes first. CMD was started before, at ours.
    os.nice(19)
    reaper = _Reaper(proc.pid)
    pidfd = os.pidfd_open(proc.pid)
    peak = most = 0
    timed_out = False
    try:
        while reaper.main_status is None:
            tree = [proc.pid, *descendants(proc.pid)]
            peak = max(peak, sum(pss_bytes(p) for p in tree))
            most = max(most, len(tree))
            left = t0 + timeout - time.perf_counter()
            if left <= 0:
                timed_out = True
                break
            select.select([pidfd], [], [], min(sample, left))
            reaper.reap()
    finally:
        # Stopping the tree is not to be cut short by a second signal, nor slowed by our low
        # priority (raised back where allowed).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, 0)
        os.close(pidfd)
        proc.returncode = reaper.main_status  # reaped here, not by Popen
        stopped = stop_tree(reaper, 0.0 if timed_out else grace)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    end = reaper.main_exit
    result = {
        "returncode": reaper.main_status,
        "timed_out": timed_out,
        "process_s": (end - t0) if end is not None and not timed_out else None,
        "tree_cpu_s": ru.ru_utime + ru.ru_stime,
        "peak_pss_bytes": peak,
        "processes": most,
        "left_running": stopped,
        "child": _bench_line(out_path),
        "stderr_tail": err_path.read_text(errors="replace").strip().splitlines()[-5:],
    }
    return result


def _on_term(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks._peers._tree")
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--sample", type=float, default=0.5, help="memory sampling period, seconds")
    p.add_argument("--grace", type=float, default=10.0,
                   help="seconds left to what CMD leaves running before it is stopped")  # fmt: skip
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        p.error("no command given (after --)")
    # Stopped from outside (the bench's own timeout, ^C): the finally blocks stop the tree.
    signal.signal(signal.SIGTERM, _on_term)
    out = measure(cmd, timeout=args.timeout, sample=args.sample, grace=args.grace)
    print("BENCH-JSON " + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
