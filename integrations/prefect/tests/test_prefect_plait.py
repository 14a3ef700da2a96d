"""prefect-plait against a real `plait serve` and `plait worker`, in `prefect_test_harness`."""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import PREFIX
from plait import ExecutionFailedError
from plait_servers import Cluster, wait_phase
from plaitidl.core.v1 import execution_pb2
from prefect import flow, task
from prefect.artifacts import Artifact
from prefect.context import TaskRunContext
from prefect.runtime import flow_run
from prefect.settings import PREFECT_API_URL

from prefect_plait import PlaitConnection, run_plait_execution, task_request_id

EP = execution_pb2.ExecutionPhase


def connection(cluster: Cluster) -> PlaitConnection:
    return PlaitConnection(address=cluster.address, console_url="http://console.test")


def test_task_returns_the_outputs_and_links_the_execution(cluster: Cluster) -> None:
    connection(cluster).save("plait-test", overwrite=True)

    @flow
    def squares(numbers: list[int]) -> tuple[Any, str]:
        conn = PlaitConnection.load("plait-test")
        assert isinstance(conn, PlaitConnection)
        outputs = run_plait_execution(conn, PREFIX + "sum_of_squares", {"numbers": numbers})
        return outputs, str(flow_run.id)

    outputs, flow_run_id = squares([1, 2, 3])

    assert outputs == {"squares": [1, 4, 9], "total": 14}
    [execution] = cluster.executions(**{"prefect-flow-run": flow_run_id})
    assert execution.phase == EP.EXECUTION_PHASE_SUCCEEDED
    name = execution.id.name
    artifact = Artifact.get()  # the newest one
    assert artifact is not None
    assert not inspect.isawaitable(artifact)
    assert f"http://console.test/executions/default/development/{name}" in str(artifact.data)


def test_failed_execution_fails_the_task_with_plaits_message(cluster: Cluster) -> None:
    @flow
    def check() -> Any:
        return run_plait_execution(connection(cluster), PREFIX + "must_be_positive", {"x": -3})

    with pytest.raises(ExecutionFailedError) as failed:
        check()

    assert "failed (node n0): NonRetryableError: x must be positive, got -3" in str(failed.value)
    assert failed.value.node == "n0"


def test_bad_target_and_inputs_are_clear_errors(cluster: Cluster) -> None:
    @flow
    def bad(target: str, inputs: dict[str, Any]) -> Any:
        return run_plait_execution(connection(cluster), target, inputs)

    with pytest.raises(ValueError, match="target 'no-slashes': expected 'project/domain/name'"):
        bad("no-slashes", {})
    with pytest.raises(TypeError, match="x: expected int, got str 'three'"):
        bad(PREFIX + "must_be_positive", {"x": "three"})


def test_retried_task_reattaches_to_the_running_execution(cluster: Cluster) -> None:
    seen: list[tuple[int, str, str]] = []

    @task(retries=2)
    def echo(conn: PlaitConnection) -> Any:
        run = conn.launch(PREFIX + "slow_echo", {"seconds": 1.0, "text": "once"})
        context = TaskRunContext.get()
        assert context is not None
        seen.append((context.task_run.run_count, run.name, task_request_id()))
        if context.task_run.run_count == 1:
            raise RuntimeError("the task died after launching")
        return conn.wait(run)

    @flow
    def reattach() -> tuple[Any, str]:
        return echo(connection(cluster)), str(flow_run.id)

    outputs, flow_run_id = reattach()

    assert outputs == "once"
    assert [count for count, _, _ in seen] == [1, 2]
    assert seen[0][1:] == seen[1][1:]
    [execution] = cluster.executions(**{"prefect-flow-run": flow_run_id})
    assert execution.labels["orchestrator-step"] == seen[0][2]
    assert execution.phase == EP.EXECUTION_PHASE_SUCCEEDED


def test_retry_after_a_failed_execution_starts_a_fresh_one(
    cluster: Cluster, tmp_path: Path
) -> None:
    @flow
    def once(marker: str) -> tuple[Any, str]:
        retried = run_plait_execution.with_options(retries=1)
        return retried(connection(cluster), PREFIX + "fails_once", {"marker": marker}), str(
            flow_run.id
        )

    outputs, flow_run_id = once(str(tmp_path / "marker"))

    assert outputs == "the second execution succeeded"
    executions = cluster.executions(**{"prefect-flow-run": flow_run_id})
    by_phase = {e.phase: e for e in executions}
    assert sorted(by_phase) == [EP.EXECUTION_PHASE_SUCCEEDED, EP.EXECUTION_PHASE_FAILED]
    first = by_phase[EP.EXECUTION_PHASE_FAILED].labels["orchestrator-step"]
    assert by_phase[EP.EXECUTION_PHASE_SUCCEEDED].labels["orchestrator-step"] == first


def test_cancelled_flow_run_terminates_the_execution(cluster: Cluster, tmp_path: Path) -> None:
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    script = Path(__file__).with_name("sigterm_flow.py")
    args = [sys.executable, str(script), cluster.address, PREFIX + "slow_echo", "sigterm"]
    with open(tmp_path / "flow.log", "wb") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        name = _running_execution(cluster, "sigterm", proc)
        # What a Prefect runner sends the flow run's process to cancel it.
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)

    assert proc.returncode == -signal.SIGTERM
    wait_phase(cluster, name, [EP.EXECUTION_PHASE_ABORTED], timeout=10)
    with cluster.client() as client:
        assert "the Prefect task run run-plait-execution" in client.get(name).error.message


def _running_execution(cluster: Cluster, label: str, proc: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        for e in cluster.executions(test=label):
            if e.phase == EP.EXECUTION_PHASE_RUNNING:
                return str(e.id.name)
        time.sleep(0.1)
    raise AssertionError(f"no execution labelled {label} ran (flow exit code {proc.poll()})")


def test_timed_out_task_terminates_the_execution(cluster: Cluster) -> None:
    @flow
    def long_echo() -> Any:
        timed = run_plait_execution.with_options(timeout_seconds=2)
        inputs = {"seconds": 60.0, "text": "never"}
        return timed(connection(cluster), PREFIX + "slow_echo", inputs, labels={"test": "timeout"})

    with pytest.raises(TimeoutError):
        long_echo()

    [execution] = cluster.executions(test="timeout")
    wait_phase(cluster, execution.id.name, [EP.EXECUTION_PHASE_ABORTED], timeout=10)
    with cluster.client() as client:
        message = client.get(execution.id.name).error.message
    assert "the Prefect task run run-plait-execution" in message
    assert "was interrupted" in message
