"""A Google Cloud Storage API server for tests: `gcp-storage-emulator` (in memory) on a free port.

`gcs_server` (session scope) starts it once and stops it by PID at the end, also when a test
fails; gcsfs reaches it through ``STORAGE_EMULATOR_HOST`` (`GcsServer.env`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.postgres import free_port

STARTUP_TIMEOUT = 30.0


@dataclass
class GcsServer:
    """A running emulator.

    Attributes:
        endpoint: Its ``http://127.0.0.1:PORT`` URL.
        proc: The process.
        log: Where its output goes.
    """

    endpoint: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def env(self) -> dict[str, str]:
        """The variable that points gcsfs at this server."""
        return {"STORAGE_EMULATOR_HOST": self.endpoint}

    def create_bucket(self) -> str:
        """A new empty bucket; returns its name."""
        import fsspec

        name = f"plait-{uuid.uuid4().hex[:12]}"
        fs = fsspec.filesystem("gs", endpoint_url=self.endpoint, skip_instance_cache=True)
        fs.mkdir(name)
        return name

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and reap it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_gcs(log: Path) -> GcsServer:
    """Start the emulator on a free port of 127.0.0.1; returns once it answers.

    Raises:
        RuntimeError: It exited, or did not answer in time (its output is in the message).
    """
    port = free_port()
    cmd = [sys.executable, "-m", "gcp_storage_emulator", "start", "--in-memory", "--quiet",
           "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    server = GcsServer(f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(f"{server.endpoint}/storage/v1/b", timeout=1):
                return server
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"the GCS emulator did not start:\n{log.read_text()}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsServer]:
    """The GCS emulator, for the whole session; its variable set in this process."""
    server = start_gcs(tmp_path_factory.mktemp("gcs") / "emulator.log")
    saved = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ.update(server.env)
    try:
        yield server
    finally:
        server.stop()
        if saved is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = saved
