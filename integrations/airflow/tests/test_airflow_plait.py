"""The plait provider against a real `plait serve` and `plait worker`, through `dag.test()`."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
from pathlib import Path
from typing import Any

import plait_dags
import pytest
from airflow.models.dagrun import DagRun
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
from airflow.utils.state import DagRunState, TaskInstanceState
from conftest import CONSOLE, PREFIX
from plait_servers import Cluster, wait_phase
from plaitidl.core.v1 import execution_pb2, interface_pb2, types_pb2

from airflow.providers.plait import _steps
from airflow.providers.plait._inputs import typed_inputs
from airflow.providers.plait.hooks.plait import PlaitHook
from airflow.providers.plait.operators.plait import PlaitExecutionOperator
from airflow.providers.plait.triggers.plait import PlaitExecutionTrigger

EP = execution_pb2.ExecutionPhase
pytestmark = pytest.mark.usefixtures("cluster", "airflow_db")


def xcoms(run: DagRun, task_id: str, key: str = "return_value") -> list[Any]:
    with create_session() as session:
        query = XComModel.get_many(run_id=run.run_id, dag_ids=run.dag_id, task_ids=task_id, key=key)
        rows: list[Any] = sorted(session.scalars(query).all(), key=lambda row: row.map_index)
        return [XComModel.deserialize_value(row) for row in rows]


def xcom(run: DagRun, task_id: str, key: str = "return_value") -> Any:
    found = xcoms(run, task_id, key)
    return found[0] if found else None


def states(run: DagRun) -> dict[str, Any]:
    with create_session() as session:
        return {ti.task_id: ti.state for ti in run.get_task_instances(session=session)}


def step_executions(cluster: Cluster, run: DagRun, task_id: str) -> list[Any]:
    labels = {"airflow-dag": run.dag_id, "airflow-run": run.run_id, "airflow-task": task_id}
    return cluster.executions(**labels)


def test_outputs_go_to_xcom_deferred_or_blocking_and_the_sensor_waits(cluster: Cluster) -> None:
    run = plait_dags.outputs_dag.test()

    assert run.state == DagRunState.SUCCESS, states(run)
    assert xcom(run, "deferred") == {"squares": [1, 4, 9], "total": 14}
    assert xcom(run, "blocking") == {"squares": [16, 25], "total": 41}
    info = xcom(run, "deferred", "plait_execution")
    url = f"{CONSOLE}/executions/default/development/{info['name']}"
    assert info["url"] == url
    assert xcom(run, "deferred", "_link_PlaitExecutionLink") == url
    assert info["target"].startswith(PREFIX + "sum_of_squares@")
    [execution] = step_executions(cluster, run, "deferred")
    assert execution.id.name == info["name"]
    assert execution.labels["orchestrator-step"] == info["request_id"]
    assert info["request_id"] == _steps.step_request_id(
        "airflow", run.dag_id, "deferred", run.run_id, -1
    )
    # The sensor waited for the execution the launch-only task started.
    launched = xcom(run, "launch")
    with cluster.client() as client:
        assert client.outputs(launched) == run.run_id
    # Each mapped task instance has its own execution: the map index is in the request id.
    assert xcoms(run, "mapped") == ["a", "b"]
    mapped = step_executions(cluster, run, "mapped")
    assert sorted(e.labels["orchestrator-step"][-2:] for e in mapped) == [":0", ":1"]


def test_failed_execution_fails_the_task_with_plaits_message(cluster: Cluster) -> None:
    run = plait_dags.failure_dag.test()

    assert states(run) == {"negative": TaskInstanceState.FAILED}
    message = plait_dags.FAILURES["negative"]
    assert "failed (node n0): NonRetryableError: x must be positive, got -3" in message
    [execution] = step_executions(cluster, run, "negative")
    assert execution.phase == EP.EXECUTION_PHASE_FAILED


def test_retries_reattach_or_start_fresh_after_a_failure(cluster: Cluster, tmp_path: Path) -> None:
    run = plait_dags.retry_dag.test(run_conf={"marker": str(tmp_path / "marker")})

    assert run.state == DagRunState.SUCCESS, states(run)
    # The first try died after launching; the second re-attached to the same execution.
    assert xcom(run, "crash_once") == "once"
    [execution] = step_executions(cluster, run, "crash_once")
    assert execution.phase == EP.EXECUTION_PHASE_SUCCEEDED
    # The first execution failed; the retry started a fresh one under the next request id.
    assert xcom(run, "fails_once") == "the second execution succeeded"
    by_phase = {e.phase: e for e in step_executions(cluster, run, "fails_once")}
    assert sorted(by_phase) == [EP.EXECUTION_PHASE_SUCCEEDED, EP.EXECUTION_PHASE_FAILED]
    base = by_phase[EP.EXECUTION_PHASE_FAILED].labels["orchestrator-step"]
    assert xcom(run, "fails_once", "plait_execution")["request_id"] == base + "#2"


def test_timed_out_task_terminates_the_execution(cluster: Cluster) -> None:
    run = plait_dags.timeout_dag.test()

    assert states(run) == {"too_slow": TaskInstanceState.FAILED}
    [execution] = step_executions(cluster, run, "too_slow")
    wait_phase(cluster, execution.id.name, [EP.EXECUTION_PHASE_ABORTED], timeout=10)
    with cluster.client() as client:
        assert "plait_timeout.too_slow" in client.get(execution.id.name).error.message


def test_killing_a_deferred_task_terminates_the_execution(cluster: Cluster) -> None:
    with cluster.client() as client:
        target = _steps.resolve_target(client, PREFIX + "slow_echo")
        launched = _steps.start_or_attach(
            client,
            target,
            {"seconds": 60.0, "text": "never"},
            request_id=f"trigger-on-kill-{time.time_ns()}",
            orchestrator="airflow",
        )
    trigger = PlaitExecutionTrigger(launched.key, reason="killed from the test")
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow.providers.plait.triggers.plait.PlaitExecutionTrigger"

    async def run_then_kill() -> None:
        # What the triggerer does when a user marks the deferred task failed.
        rebuilt = PlaitExecutionTrigger(**kwargs)
        waiting = asyncio.ensure_future(anext(rebuilt.run()))
        await asyncio.to_thread(wait_phase, cluster, launched.name, [EP.EXECUTION_PHASE_RUNNING])
        assert not waiting.done()
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        await rebuilt.on_kill()

    asyncio.run(run_then_kill())

    with cluster.client() as client:
        execution = client.get(launched.name)
    assert execution.phase == EP.EXECUTION_PHASE_ABORTED
    assert "killed from the test" in execution.error.message


def test_bad_targets_fail_clearly(cluster: Cluster) -> None:
    with pytest.raises(ValueError, match="target 'nope': expected 'project/domain/name'"):
        PlaitExecutionOperator(task_id="bad", target="nope")
    run = plait_dags.missing_dag.test()
    assert states(run) == {"missing": TaskInstanceState.FAILED}
    assert "no workflow or launch plan" in plait_dags.FAILURES["missing"]


def test_tls_with_a_pem_ca_in_the_connection_and_a_token(secure_cluster: Cluster) -> None:
    run = plait_dags.secure_dag.test()

    assert run.state == DagRunState.SUCCESS, states(run)
    assert xcom(run, "deferred") == {"squares": [4], "total": 4}  # the trigger, over grpc.aio
    assert xcom(run, "blocking") == {"squares": [9], "total": 9}  # plait.Client
    assert PlaitHook("plait_secure").test_connection() == (True, "plait engine reachable")
    ok, message = PlaitHook("plait_wrong_token").test_connection()
    assert not ok
    assert message.startswith("UNAUTHENTICATED")


def test_rendered_strings_become_the_declared_types(cluster: Cluster) -> None:
    with cluster.client() as client:
        squares = _steps.resolve_target(client, PREFIX + "sum_of_squares").interface
        echo = _steps.resolve_target(client, PREFIX + "slow_echo").interface
    assert typed_inputs(squares, {"numbers": "[1, 2]"}) == {"numbers": [1, 2]}
    assert typed_inputs(echo, {"seconds": "0.5", "text": "[1, 2]"}) == {
        "seconds": 0.5,
        "text": "[1, 2]",  # a string input keeps the text
    }
    assert typed_inputs(echo, {"seconds": "soon"}) == {"seconds": "soon"}  # plait names it

    when = interface_pb2.TypedInterface()
    var = when.inputs.variables.add(name="at")
    var.type.simple = types_pb2.SimpleType.SIMPLE_TYPE_DATETIME
    expected = datetime.datetime(2026, 11, 30, 12, tzinfo=datetime.UTC)
    assert typed_inputs(when, {"at": "2026-11-30T12:00:00+00:00"}) == {"at": expected}
