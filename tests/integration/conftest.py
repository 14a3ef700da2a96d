"""Shared fixtures of the integration tests: real engine processes on free ports."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import EngineProcess, start_engine

# Small enough that a test can exceed it cheaply, large enough for every normal request.
SHARED_MAX_MESSAGE_BYTES = 1 << 20
# The process targets of these tests run bash scripts, whose dynamic specs run cp; a server
# allows only the programs it is told to.
BASH = shutil.which("bash") or "/bin/bash"
CP = shutil.which("cp") or "/bin/cp"
ALLOW_BASH_AND_CP = ("--allow-process", BASH, "--allow-process", CP)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    """One `plait serve` per test module (max message size 1 MiB, bash allowed as a process
    target), stopped with SIGTERM."""
    proc = start_engine(
        tmp_path_factory.mktemp("engine"),
        "--max-message-bytes",
        str(SHARED_MAX_MESSAGE_BYTES),
        *ALLOW_BASH_AND_CP,
    )
    try:
        yield proc
    finally:
        if proc.stop() != 0:
            print(proc.output())


@pytest.fixture
def engine_factory(tmp_path: Path) -> Iterator[list[EngineProcess]]:
    """Start extra engines with `start_engine(tmp_path, ...)`; append them here to reap them."""
    started: list[EngineProcess] = []
    yield started
    for proc in started:
        proc.kill()
