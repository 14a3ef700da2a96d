"""Fixtures of every tier: a private PostgreSQL server (started on first use, once per session)
and a fresh database on it per test; moto's S3 server and a GCS emulator
(the same way) and a fresh bucket."""

from __future__ import annotations

import pytest

from tests.support.gcs import gcs_server
from tests.support.postgres import STARTUPS, postgres_server, postgres_url
from tests.support.s3 import s3_bucket, s3_server

__all__ = ["gcs_server", "postgres_server", "postgres_url", "s3_bucket", "s3_server"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Tell what starting the private PostgreSQL server cost, when a test needed it."""
    for line in STARTUPS:
        terminalreporter.write_line(line)
