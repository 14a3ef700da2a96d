"""One real plait engine and worker for the dagster-plait tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from plait_servers import Cluster, plait_cluster

FLOWS = Path(__file__).with_name("dagster_flows.py")
PREFIX = "default/development/dagster_flows."
NAMES = ["sum_of_squares", "must_be_positive", "slow_echo", "fails_once"]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """`plait serve` and `plait worker dagster_flows.py`, stopped by PID at the end."""
    folder = tmp_path_factory.mktemp("plait")
    with plait_cluster(folder, FLOWS, [PREFIX + n for n in NAMES]) as running:
        yield running
