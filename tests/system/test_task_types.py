"""Task types on real systems: a workflow mixing a Python task, a Ray fan-out, a Ray task, a SQL
query and an HTTP call (tests/workflows/tasktypes.py), run embedded (`plait run`) and on a
server (`plait serve` running the ``http`` plugin itself, a `plait worker` running Python,
Ray and SQL tasks), against a Ray cluster started here on 127.0.0.1, SQLite and PostgreSQL,
and a local web service. Ray's retries and cancellation are checked on the cluster, and a
Ray task's configured `address` is shown to win over `$RAY_ADDRESS`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from plait import Client
from plaitidl.core.v1 import execution_pb2

from tests.support.postgres import PrivatePostgres, free_port
from tests.support.ray import RayCluster, ray_cluster
from tests.support.servers import ROOT, EngineProcess, plait_command, start_engine
from tests.support.webservice import WebService, web_service
from tests.workflows import tasktypes as tt

TOKEN = "api-9d2e71b0c4"
WORKFLOWS = "tests/workflows/tasktypes.py"
ROWS = [("apple", 5), ("bolt", 30), ("cog", 100), ("dial", 31)]
# numbers(4) = 1..4 -> squares 1, 4, 9, 16 -> total 30 -> rows with qty <= 30
RECEIPT = tt.Receipt(accepted=2, total=30, names=["apple", "bolt"])


@pytest.fixture(scope="module")
def ray() -> Iterator[RayCluster]:
    with ray_cluster(num_cpus=2) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def service() -> Iterator[WebService]:
    with web_service(TOKEN) as s:
        yield s


def _sqlite_warehouse(path: Path) -> str:
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE stock (name TEXT, qty INTEGER)")
        db.executemany("INSERT INTO stock VALUES (?, ?)", ROWS)
    return f"sqlite:///{path}"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_the_mix_runs_embedded(ray: RayCluster, service: WebService, tmp_path: Path) -> None:
    env = {
        **ray.env,
        "PLAIT_SECRET_WAREHOUSE": _sqlite_warehouse(tmp_path / "warehouse.db"),
        "PLAIT_SECRET_API_TOKEN": TOKEN,
    }
    argv = plait_command("run", "--data-dir", str(tmp_path / "data"), WORKFLOWS, "mix")
    run = subprocess.run(
        [*argv, "--n", "4", "--port", str(service.port), "--label", "embedded"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert run.returncode == 0, f"{run.stderr}\n{ray.output()}"
    assert json.loads(run.stdout) == {"accepted": 2, "total": 30, "names": ["apple", "bolt"]}
    # numbers, squares (one node: its 4 elements are Ray tasks), total, stock, report.
    assert "(5 nodes: 5 succeeded" in run.stderr, run.stderr
    sent = [r for r in service.requests if r.path == "/report/embedded"]
    assert len(sent) == 1 and sent[0].body["total"] == 30
    assert sent[0].headers["Authorization"] == f"Bearer {TOKEN}"
    stored = b"".join(p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file())
    assert TOKEN.encode() not in stored and b"warehouse.db" not in stored


def test_a_ray_task_reaches_the_cluster_its_configuration_names(
    ray: RayCluster, tmp_path: Path
) -> None:
    # $RAY_ADDRESS names a port nothing listens on: only the task's own address finds Ray.
    env = {
        **ray.env,
        "RAY_ADDRESS": f"127.0.0.1:{free_port()}",
        "TASKTYPES_RAY_ADDRESS": ray.address,
    }
    argv = plait_command("run", "--data-dir", str(tmp_path / "data"), WORKFLOWS, "ray_node")
    run = subprocess.run(
        argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False
    )
    assert run.returncode == 0, f"{run.stderr}\n{ray.output()}"
    assert run.stdout.strip() == ray.address


@dataclass
class Stack:
    """`plait serve` (running the http plugin) and a `plait worker` (Python, Ray, SQL)."""

    engine: EngineProcess
    worker: subprocess.Popen[bytes]
    logs: Path
    pg_url: str

    def output(self) -> str:
        return self.engine.output() + "\n--- worker ---\n" + (self.logs / "worker.log").read_text()


@pytest.fixture(scope="module")
def stack(
    ray: RayCluster, postgres_server: PrivatePostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    import psycopg

    tmp = tmp_path_factory.mktemp("stack")
    url = postgres_server.create_database()
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE TABLE stock (name text, qty bigint)")
        db.cursor().executemany("INSERT INTO stock VALUES (%s, %s)", ROWS)
    # Each side holds only the secrets of what it runs.
    engine_secrets = tmp / "engine-secrets"
    engine_secrets.mkdir()
    (engine_secrets / "api-token").write_text(TOKEN + "\n")
    worker_secrets = tmp / "worker-secrets"
    worker_secrets.mkdir()
    (worker_secrets / "warehouse").write_text(url)
    engine = start_engine(tmp, "--plugins", "http", "--secrets-dir", str(engine_secrets))
    worker: subprocess.Popen[bytes] | None = None
    try:
        env = {k: v for k, v in ray.env.items() if not k.startswith("PLAIT_SECRET")}
        with open(tmp / "worker.log", "ab") as out:
            argv = plait_command("worker", "--engine", engine.address)
            worker = subprocess.Popen(
                [*argv, "--secrets-dir", str(worker_secrets), WORKFLOWS],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**env, "PYTHONUNBUFFERED": "1"},
            )
        yield Stack(engine, worker, tmp, url)
    finally:
        if worker is not None:
            _stop(worker)
        engine.kill()
        postgres_server.drop_database(url)


def test_the_mix_runs_on_a_server_with_workers(stack: Stack, service: WebService) -> None:
    with Client(stack.engine.address) as client:
        run = client.execute(tt.mix, {"n": 4, "port": service.port, "label": "served"})
        assert client.wait(run, timeout=240) == RECEIPT, stack.output()
        nodes = {n.id.node_id: n for n in client.node_executions(run)}
        assert all(n.phase == execution_pb2.NODE_PHASE_SUCCEEDED for n in nodes.values())
        assert {n.name for n in nodes.values()} >= {
            "numbers",
            "ray_map",
            "total",
            "stock",
            "report",
        }
        dyn = client.execute(tt.mix_dynamic, {"n": 4, "port": service.port})
        assert client.wait(dyn, timeout=240) == RECEIPT, stack.output()
    # The http plugin ran in the engine (only it has the token), SQL on the worker (only it has
    # the connection); neither secret is in what the engine stored or logged.
    assert service.hits("served") == 1 and service.hits("dynamic-4") == 1
    stored = b"".join(p.read_bytes() for p in stack.engine.data_dir.rglob("*") if p.is_file())
    for secret in (TOKEN, stack.pg_url):
        assert secret.encode() not in stored
        assert secret not in stack.output()


def _node(client: Client, run: object, name: str) -> object:
    return next(n for n in client.node_executions(run) if n.name == name)  # type: ignore[arg-type]


def test_ray_retries_and_cancellation_reach_ray(stack: Stack, tmp_path: Path) -> None:
    with Client(stack.engine.address) as client:
        paths = {
            "path_ray": str(tmp_path / "ray.count"),
            "path_plait": str(tmp_path / "plait.count"),
        }
        run = client.execute(tt.retried, paths)
        assert client.wait(run, timeout=240) == (2, 2), stack.output()
        # Ray retried the first within one plait attempt; plait retried the second.
        by_name = {n.name: n for n in client.node_executions(run)}
        assert by_name["flaky_in_ray"].attempt == 1
        assert by_name["flaky_in_plait"].attempt == 2

        pid_file = tmp_path / "sleeper.pid"
        run = client.execute(tt.sleepy, {"path": str(pid_file)})
        deadline = time.monotonic() + 120
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, stack.output()
            time.sleep(0.2)
        pid = int(pid_file.read_text())
        os.kill(pid, 0)  # the Ray worker running the task is alive
        client.terminate(run, reason="enough")
        deadline = time.monotonic() + 60
        while _alive(pid):
            assert time.monotonic() < deadline, f"Ray task {pid} still runs\n{stack.output()}"
            time.sleep(0.2)
        assert client.get(run).phase == execution_pb2.EXECUTION_PHASE_ABORTED


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return (
        Path(f"/proc/{pid}/status").exists()
        and "zombie" not in Path(f"/proc/{pid}/status").read_text()
    )
