"""Fixtures of every tier: a private PostgreSQL server (started on first use, once per session)
and a fresh database on it per test."""

from __future__ import annotations

import pytest

from tests.support.postgres import STARTUPS, postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Tell what starting the private PostgreSQL server cost, when a test needed it."""
    for line in STARTUPS:
        terminalreporter.write_line(line)
