"""A Google Cloud Storage API server for tests: `gcp-storage-emulator` (in memory) on a free port.

`gcs_server` (session scope) starts it once and stops it by PID at the end, also when a test
fails; gcsfs reaches it through ``STORAGE_EMULATOR_HOST`` (`GcsServer.env`).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.emulators import Emulator, serving, spawn, wait_until_answering
from tests.support.postgres import free_port


class GcsServer(Emulator):
    """A running emulator."""

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


def start_gcs(log: Path) -> GcsServer:
    """Start the emulator on a free port of 127.0.0.1; returns once it answers.

    Raises:
        RuntimeError: It exited, or did not answer in time (its output is in the message).
    """
    port = free_port()
    cmd = [sys.executable, "-m", "gcp_storage_emulator", "start", "--in-memory", "--quiet",
           "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    server = GcsServer(f"http://127.0.0.1:{port}", spawn(cmd, log), log)
    wait_until_answering(server, "/storage/v1/b", "the GCS emulator")
    return server


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsServer]:
    """The GCS emulator, for the whole session; its variable set in this process."""
    with serving(start_gcs(tmp_path_factory.mktemp("gcs") / "emulator.log")) as server:
        yield server
