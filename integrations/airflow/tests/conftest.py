"""Airflow in a temporary home (SQLite metadata DB, these tests' DAGs), and a real plait engine.

Airflow reads its settings when it is first imported, so they are set here, before any test
module imports it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
_HOME = Path(tempfile.mkdtemp(prefix="airflow-home-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(HERE / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME / 'airflow.db'}",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    }
)
sys.path.insert(0, str(HERE / "dags"))

from plait_servers import Cluster, Secure, plait_cluster  # noqa: E402

FLOWS = HERE / "airflow_flows.py"
PREFIX = "default/development/airflow_flows."
NAMES = ["sum_of_squares", "must_be_positive", "slow_echo", "fails_once"]
CONSOLE = "http://console.test"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """`plait serve` and `plait worker airflow_flows.py`, and the ``plait_default`` connection."""
    folder = tmp_path_factory.mktemp("plait")
    with plait_cluster(folder, FLOWS, [PREFIX + n for n in NAMES]) as running:
        host, port = running.address.rsplit(":", 1)
        conn = {"conn_type": "plait", "host": host, "port": int(port)}
        conn["extra"] = {"console_url": CONSOLE}
        os.environ["AIRFLOW_CONN_PLAIT_DEFAULT"] = json.dumps(conn)
        yield running


@pytest.fixture(scope="session")
def secure_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """An engine with TLS (self-signed) and a token, and the ``plait_secure`` connection.

    The connection holds the CA as PEM text in its extras and the token as its password.
    """
    folder = tmp_path_factory.mktemp("plait-secure")
    secure = Secure.make(folder)
    with plait_cluster(folder, FLOWS, [PREFIX + "sum_of_squares"], secure) as running:
        host, port = running.address.rsplit(":", 1)
        extra = {"ca_cert": secure.cert.read_text()}
        conn = {"conn_type": "plait", "host": host, "port": int(port), "extra": extra}
        os.environ["AIRFLOW_CONN_PLAIT_SECURE"] = json.dumps({**conn, "password": secure.token})
        os.environ["AIRFLOW_CONN_PLAIT_WRONG_TOKEN"] = json.dumps({**conn, "password": "wrong"})
        yield running


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[None]:
    """The metadata database, migrated once for the session; the home is removed after."""
    from airflow.utils import db

    db.initdb()
    yield
    shutil.rmtree(_HOME, ignore_errors=True)
