"""Local API servers standing in for cloud services in tests (moto's S3, the GCS emulator):
started on a free port of 127.0.0.1, ready once they answer over HTTP, stopped by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

STARTUP_TIMEOUT = 30.0


@dataclass
class Emulator:
    """A running local server.

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
        """The variables that point clients at this server."""
        return {}

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and reap it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def spawn(
    cmd: list[str], log: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `cmd` with its output appended to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(env) if env else None
        )


def wait_until_answering(server: Emulator, path: str, what: str) -> None:
    """Return once ``GET endpoint + path`` answers.

    Raises:
        RuntimeError: The server exited, or did not answer in time (its output is in the
            message); it is stopped.
    """
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(f"{server.endpoint}{path}", timeout=1):
                return
        except OSError:
            pass
        if server.proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"{what} did not start:\n{server.log.read_text()}")
        time.sleep(0.1)


_E = TypeVar("_E", bound=Emulator)


@contextmanager
def serving(server: _E) -> Iterator[_E]:
    """Set the server's variables in this process while it runs; stop it at the end."""
    saved = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)
    try:
        yield server
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
