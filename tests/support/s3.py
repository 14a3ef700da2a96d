"""A real S3 API server for tests: moto's server (`python -m moto.server`) on a free port.

`s3_server` (session scope) starts it once and stops it by PID at the end, also when a test
fails; `s3_bucket` creates a fresh bucket per test and yields its ``s3://`` URL. The engine and
the tests reach it through the standard AWS variables (`S3Server.env`), never a real account.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.emulators import Emulator, serving, spawn, wait_until_answering
from tests.support.postgres import free_port


class S3Server(Emulator):
    """A running moto server."""

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


def start_s3(log: Path) -> S3Server:
    """Start moto's S3 server on a free port of 127.0.0.1; returns once it answers.

    Raises:
        RuntimeError: It exited, or did not answer in time (its output is in the message).
    """
    port = free_port()
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    proc = spawn(cmd, log, {**os.environ, "PYTHONUNBUFFERED": "1"})
    server = S3Server(f"http://127.0.0.1:{port}", proc, log)
    wait_until_answering(server, "/moto-api/", "moto's S3 server")
    return server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server, for the whole session; its variables set in this process."""
    with serving(start_s3(tmp_path_factory.mktemp("s3") / "moto.log")) as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A fresh bucket's ``s3://BUCKET/plait`` URL."""
    return f"s3://{s3_server.create_bucket()}/plait"
