"""Start `plait serve` (and `plait worker`) as real subprocesses for integration tests.

`start_engine(tmp_path)` starts an engine on a free port with data dir ``tmp_path / "engine"``
and returns once it is SERVING; `EngineProcess.kill` (SIGKILL) then `restart` brings it back on
the same data dir and port; `stop` sends SIGTERM and returns the exit code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 20.0


def plait_command(*args: str) -> list[str]:
    """The argv running the `plait` CLI of this checkout with the current interpreter."""
    return [sys.executable, "-m", "plait._cli", *args]


def wait_serving(address: str, timeout: float = STARTUP_TIMEOUT, token: str | None = None) -> None:
    """Block until the engine at `address` reports SERVING on the overall health check."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"engine at {address} not SERVING after {timeout}s")
            time.sleep(0.05)


@dataclass
class EngineProcess:
    """A running `plait serve` subprocess.

    Attributes:
        address: ``127.0.0.1:PORT`` it listens on.
        proc: The process.
        data_dir: Its data dir (SQLite database, blobs, ``engine.addr``).
        args: Extra `plait serve` arguments, reused by `restart`.
        log: File receiving its stdout and stderr.
    """

    address: str
    proc: subprocess.Popen[bytes]
    data_dir: Path
    args: tuple[str, ...] = ()
    log: Path = field(default_factory=lambda: Path(os.devnull))

    def kill(self) -> None:
        """SIGKILL the engine and reap it (a crash: nothing is flushed, nothing cleaned up)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM the engine and wait for it to exit; returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def restart(self) -> EngineProcess:
        """Start the engine again on the same data dir and port (after `kill` or `stop`)."""
        if self.proc.poll() is None:
            self.stop()
        fresh = _spawn(self.data_dir, self.address, self.args, self.log)
        self.proc = fresh.proc
        return self

    def console_address(self) -> str:
        """``HOST:PORT`` of its console (``plait serve --console-address``)."""
        return (self.data_dir / "console.addr").read_text().strip()

    def output(self) -> str:
        """What the engine printed so far (stdout and stderr)."""
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


def _spawn(data_dir: Path, address: str, args: tuple[str, ...], log: Path) -> EngineProcess:
    data_dir.mkdir(parents=True, exist_ok=True)
    addr_file = data_dir / "engine.addr"
    addr_file.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for var in (
        "PLAIT_CONFIG",
        "PLAIT_TOKEN",
        "PLAIT_ENGINE",
        "PLAIT_ADDRESS",
        "PLAIT_DATA_DIR",
        "PLAIT_STORE",
    ):
        env.pop(var, None)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            plait_command("serve", "--address", address, "--data-dir", str(data_dir), *args),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
        )
    deadline = time.monotonic() + STARTUP_TIMEOUT
    # The file is created, then written: wait for its content, not only for it to exist.
    while not (addr_file.exists() and addr_file.read_text().strip()):
        if proc.poll() is not None:
            raise RuntimeError(f"plait serve exited with {proc.returncode}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"plait serve did not start:\n{log.read_text()}")
        time.sleep(0.05)
    bound = addr_file.read_text().strip()
    engine = EngineProcess(bound, proc, data_dir, args, log)
    wait_serving(bound)
    return engine


def start_engine(tmp_path: Path, *extra_args: str) -> EngineProcess:
    """Start `plait serve` on a free port with data dir ``tmp_path / "engine"``.

    Returns once the engine answers SERVING to a health check.

    Args:
        tmp_path: A per-test directory.
        *extra_args: More `plait serve` flags (e.g. ``"--token", "s3cret"``).
    """
    data_dir = tmp_path / "engine"
    data_dir.mkdir(parents=True, exist_ok=True)
    return _spawn(data_dir, "127.0.0.1:0", tuple(extra_args), tmp_path / "engine.log")


def start_worker(
    address: str, *paths: str, extra_args: tuple[str, ...] = (), log: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start `plait worker --engine ADDRESS [EXTRA_ARGS] PATH...`; the caller stops it.

    Its output goes to `log` (appended) when given, and is discarded otherwise.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PLAIT_ENGINE", "PLAIT_TOKEN")}
    with open(log or os.devnull, "ab") as out:
        return subprocess.Popen(
            plait_command("worker", "--engine", address, *extra_args, *paths),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**env, "PYTHONUNBUFFERED": "1"},
        )
