"""A real S3 API server for tests: moto's server (`python -m moto.server`) on a free port.

`s3_server` (session scope) starts it once and stops it by PID at the end, also when a test
fails; `s3_bucket` creates a fresh bucket per test and yields its ``s3://`` URL. The engine and
the tests reach it through the standard AWS variables (`S3Server.env`), never a real account.
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
class S3Server:
    """A running moto server.

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
        """The variables that point AWS clients (s3fs, boto3) at this server."""
        return {
            "AWS_ACCESS_KEY_ID": "plait-test",
            "AWS_SECRET_ACCESS_KEY": "plait-test-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": self.endpoint,
        }

    def create_bucket(self) -> str:
        """A new empty bucket; returns its name."""
        import boto3

        name = f"plait-{uuid.uuid4().hex[:12]}"
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="plait-test",
            aws_secret_access_key="plait-test-secret",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=name)
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


def start_s3(log: Path) -> S3Server:
    """Start moto's S3 server on a free port of 127.0.0.1; returns once it answers.

    Raises:
        RuntimeError: It exited, or did not answer in time (its output is in the message).
    """
    port = free_port()
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    server = S3Server(f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(f"{server.endpoint}/moto-api/", timeout=1):
                return server
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"moto's S3 server did not start:\n{log.read_text()}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server, for the whole session; its variables set in this process."""
    server = start_s3(tmp_path_factory.mktemp("s3") / "moto.log")
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


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A fresh bucket's ``s3://BUCKET/plait`` URL."""
    return f"s3://{s3_server.create_bucket()}/plait"
