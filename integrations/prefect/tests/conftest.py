"""A real plait engine and worker, and Prefect's test harness, for the prefect-plait tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from plait_servers import Cluster, plait_cluster
from prefect.testing.utilities import prefect_test_harness

FLOWS = Path(__file__).with_name("prefect_flows.py")
PREFIX = "default/development/prefect_flows."
NAMES = ["sum_of_squares", "must_be_positive", "slow_echo", "fails_once"]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """`plait serve` and `plait worker prefect_flows.py`, stopped by PID at the end."""
    folder = tmp_path_factory.mktemp("plait")
    with plait_cluster(folder, FLOWS, [PREFIX + n for n in NAMES]) as running:
        yield running


@pytest.fixture(scope="session", autouse=True)
def prefect_server() -> Iterator[None]:
    """A temporary Prefect API and database for the whole session."""
    with prefect_test_harness(server_startup_timeout=120):
        yield
