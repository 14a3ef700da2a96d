"""A private Ray cluster for tests: ``ray start --head --block`` on 127.0.0.1, small resources.

Ray binds every service to the node's address; ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` makes
that address 127.0.0.1 (instead of the machine's own interface), for the cluster and for the
drivers that connect to it (`RayCluster.env`). The head is stopped by its PID (SIGTERM: it
stops the processes it started), then its process group is killed, even when a test fails.

Nothing is skipped: when Ray is not installed or does not start, `start_ray` raises.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

STARTUP_TIMEOUT = 120.0
# RAY_AUTH_MODE: Ray 2.5x turns token authentication on for a head when ~/.ray/auth_token exists
# (a local `ray.init()` writes one), and drivers of this private cluster would then be refused.
LOOPBACK_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RayCluster:
    """A running head node.

    Attributes:
        address: ``127.0.0.1:PORT`` of its GCS (what ``ray.init(address=...)`` takes).
        proc: The ``ray start --block`` process.
        temp_dir: Ray's session folder (logs).
        startup_seconds: How long it took to start.
    """

    address: str
    proc: subprocess.Popen[bytes]
    temp_dir: Path
    startup_seconds: float
    log: Path = field(default_factory=lambda: Path(os.devnull))

    @property
    def env(self) -> dict[str, str]:
        """Environment of a process that runs Ray tasks on this cluster."""
        return {**os.environ, **LOOPBACK_ENV, "RAY_ADDRESS": self.address}

    def output(self) -> str:
        """What ``ray start`` printed."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        """Stop the head and everything it started, by PID and process group."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own group: start_new_session
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


def start_ray(num_cpus: int = 2) -> RayCluster:
    """Start a head node on 127.0.0.1 with `num_cpus` CPUs and a small object store.

    Raises:
        RuntimeError: Ray is not installed, or the head did not start.
    """
    ray = Path(sys.executable).with_name("ray")
    if not ray.exists():
        raise RuntimeError(
            f"ray is not installed next to {sys.executable} (pip install 'plait[ray]')"
        )
    # Unix sockets live under the temp dir: keep its path short.
    temp_dir = Path(tempfile.mkdtemp(prefix="plait-ray-", dir="/tmp"))
    port = _free_port()
    log = temp_dir / "ray-start.log"
    args = [
        str(ray), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
        f"--num-cpus={num_cpus}", "--num-gpus=0", "--include-dashboard=false",
        "--disable-usage-stats", f"--temp-dir={temp_dir}", "--object-store-memory=100000000",
        f"--ray-client-server-port={_free_port()}", f"--dashboard-agent-listen-port={_free_port()}",
    ]  # fmt: skip
    started = time.monotonic()
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **LOOPBACK_ENV},
            start_new_session=True,
        )
    cluster = RayCluster(f"127.0.0.1:{port}", proc, temp_dir, 0.0, log)
    try:
        while "Ray runtime started" not in cluster.output():
            if proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {proc.returncode}:\n{cluster.output()}")
            if time.monotonic() - started > STARTUP_TIMEOUT:
                raise RuntimeError(
                    f"ray start did not start in {STARTUP_TIMEOUT}s:\n{cluster.output()}"
                )
            time.sleep(0.2)
    except BaseException:
        cluster.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    cluster.startup_seconds = time.monotonic() - started
    return cluster


@contextlib.contextmanager
def ray_cluster(num_cpus: int = 2) -> Iterator[RayCluster]:
    """A head node for the duration of the block; stopped (and its files removed) after."""
    cluster = start_ray(num_cpus)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.temp_dir, ignore_errors=True)
