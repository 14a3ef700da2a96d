"""A real `plait serve` and `plait worker` for the integrations' tests.

Each integration's pytest puts this folder on ``sys.path`` (``pythonpath`` in its
pyproject). `plait_cluster` starts an engine on a free port and a worker serving one
workflows file, waits until the workflows are registered, and stops both by PID when the
block ends, also when a test fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from plait import Client, NotFoundError
from plaitidl.core.v1 import identifier_pb2
from plaitidl.service.v1 import execution_service_pb2

STARTUP_TIMEOUT = 30.0


def plait_executable() -> str:
    """The `plait` console script installed next to the running interpreter."""
    found = Path(sys.executable).with_name("plait")
    if not found.exists():
        raise RuntimeError(f"plait is not installed in {Path(sys.executable).parent}")
    return str(found)


@dataclass(frozen=True)
class Secure:
    """TLS with a self-signed certificate for ``localhost``/``127.0.0.1``, and a token.

    Attributes:
        cert: The certificate (PEM), also the CA clients trust.
        key: Its private key.
        token: What every call must carry.
    """

    cert: Path
    key: Path
    token: str

    @staticmethod
    def make(folder: Path, token: str = "s3cret-token") -> Secure:
        """A fresh certificate and key in `folder` (with the ``openssl`` command)."""
        openssl = shutil.which("openssl")
        if openssl is None:
            raise RuntimeError("openssl is needed to make a test certificate")
        key, cert = folder / "key.pem", folder / "cert.pem"
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        return Secure(cert, key, token)


@dataclass
class Cluster:
    """A running engine and worker.

    Attributes:
        address: ``127.0.0.1:PORT`` of the engine.
        engine: The `plait serve` process.
        worker: The `plait worker` process.
        folder: Holds the engine's data dir and both logs.
    """

    address: str
    engine: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]
    folder: Path
    secure: Secure | None = None

    def client(self) -> Client:
        """A new client of the engine (close it, or use it as a context manager)."""
        if self.secure is None:
            return Client(self.address)
        return Client(self.address, ca_cert=self.secure.cert, token=self.secure.token)

    def logs(self) -> str:
        """What the engine and the worker printed so far."""
        return "\n".join(
            f"--- {name} ---\n{(self.folder / name).read_text(errors='replace')}"
            for name in ("engine.log", "worker.log")
            if (self.folder / name).exists()
        )

    def executions(self, **labels: str) -> list[execution_service_pb2.Execution]:
        """Every execution of the engine whose labels include `labels`."""
        with self.client() as client:
            found = client.list_executions(page_size=1000)
        return [e for e in found if all(e.labels.get(k) == v for k, v in labels.items())]


def _stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout)


def _spawn(args: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env["PYTHONUNBUFFERED"] = "1"
    with open(log, "ab") as out:
        return subprocess.Popen(
            [plait_executable(), *args], stdout=out, stderr=subprocess.STDOUT, env=env
        )


def _wait_address(proc: subprocess.Popen[bytes], addr_file: Path, log: Path) -> str:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not addr_file.exists() or not addr_file.read_text().strip():
        if proc.poll() is not None:
            raise RuntimeError(f"plait serve exited with {proc.returncode}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"plait serve did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return addr_file.read_text().strip()


def wait_registered(cluster: Cluster, names: Sequence[str]) -> None:
    """Block until the worker has registered every ``project/domain/name`` in `names`."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with cluster.client() as client:
        for text in names:
            project, domain, name = text.split("/")
            ident = identifier_pb2.Identifier(project=project, domain=domain, name=name)
            while True:
                try:
                    client.get_workflow(ident)
                    break
                except NotFoundError:
                    if cluster.worker.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"workflow {text} was not registered:\n{cluster.logs()}"
                        ) from None
                    time.sleep(0.1)


@contextmanager
def plait_cluster(
    folder: Path, workflows: Path, names: Sequence[str], secure: Secure | None = None
) -> Iterator[Cluster]:
    """Run an engine and a worker serving `workflows` until the block ends.

    Args:
        folder: Where the data dir and logs go.
        workflows: The Python file of workflows the worker imports and registers.
        names: ``project/domain/name`` of workflows to wait for before yielding.
        secure: Serve TLS and require a token (the worker uses both).
    """
    folder.mkdir(parents=True, exist_ok=True)
    data_dir = folder / "engine"
    engine_log, worker_log = folder / "engine.log", folder / "worker.log"
    serve_args = ["--address", "127.0.0.1:0", "--data-dir", str(data_dir)]
    worker_args = ["--slots", "8"]
    if secure is not None:
        serve_args += ["--tls-cert", str(secure.cert), "--tls-key", str(secure.key)]
        serve_args += ["--token", secure.token]
        worker_args += ["--ca-cert", str(secure.cert), "--token", secure.token]
    engine = _spawn(["serve", *serve_args], engine_log)
    worker: subprocess.Popen[bytes] | None = None
    try:
        address = _wait_address(engine, data_dir / "engine.addr", engine_log)
        worker = _spawn(["worker", "--engine", address, *worker_args, str(workflows)], worker_log)
        cluster = Cluster(address, engine, worker, folder, secure)
        wait_registered(cluster, names)
        yield cluster
    finally:
        if worker is not None:
            # A worker drains its running tasks on SIGTERM; tests leave some sleeping.
            _stop(worker, timeout=3.0)
        _stop(engine)


def wait_phase(cluster: Cluster, name: str, phases: Sequence[int], timeout: float = 30) -> int:
    """Block until execution `name` is in one of `phases`; returns the phase."""
    deadline = time.monotonic() + timeout
    with cluster.client() as client:
        while True:
            phase = client.get(name).phase
            if phase in phases:
                return int(phase)
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {name} still in phase {phase} after {timeout}s")
            time.sleep(0.05)
