"""dagster-plait against a real `plait serve` and `plait worker`, through `dagster.materialize`."""

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from conftest import PREFIX
from plait_servers import Cluster, wait_phase
from plaitidl.core.v1 import execution_pb2

from dagster_plait import PlaitResource, plait_asset, plait_op

EP = execution_pb2.ExecutionPhase


def resources(cluster: Cluster) -> dict[str, Any]:
    return {"plait": PlaitResource(address=cluster.address, console_url="http://console.test")}


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failures, "no step failed"
    info = failures[-1].step_failure_data.error
    messages = []
    while info is not None:
        messages.append(info.message)
        info = info.cause
    return "\n".join(messages)


def test_asset_value_is_the_outputs_with_name_and_counts_as_metadata(cluster: Cluster) -> None:
    @dg.asset
    def raw_numbers() -> list[int]:
        return [1, 2, 3]

    squares = plait_asset(
        PREFIX + "sum_of_squares", name="squares", ins={"numbers": dg.AssetIn("raw_numbers")}
    )

    result = dg.materialize([raw_numbers, squares], resources=resources(cluster))

    assert result.success
    assert result.output_for_node("squares") == {"squares": [1, 4, 9], "total": 14}
    [mat] = result.asset_materializations_for_node("squares")
    meta: dict[str, Any] = {k: v.value for k, v in mat.metadata.items()}
    name = meta["plait_execution"]
    # start-node aside: the generator, its three squares and the sum.
    assert meta["plait_nodes_total"] >= 5
    assert meta["plait_nodes_succeeded"] == meta["plait_nodes_total"]
    assert meta["plait_nodes_failed"] == 0
    assert meta["plait_url"] == f"http://console.test/executions/default/development/{name}"
    assert meta["plait_target"].startswith(PREFIX + "sum_of_squares@")
    with cluster.client() as client:
        execution = client.get(name)
    assert execution.phase == EP.EXECUTION_PHASE_SUCCEEDED
    assert execution.labels["dagster-run"] == result.run_id


def test_op_and_partitioned_asset(cluster: Cluster) -> None:
    echo = plait_op(
        PREFIX + "slow_echo", name="echo", inputs={"seconds": 0.0, "text": "from an op"}
    )

    @dg.job(resource_defs=resources(cluster))
    def echo_job() -> None:
        echo()

    assert echo_job.execute_in_process().output_for_node("echo") == "from an op"

    days = dg.StaticPartitionsDefinition(["mon", "tue"])
    by_day = plait_asset(
        PREFIX + "slow_echo",
        name="by_day",
        partitions_def=days,
        inputs=lambda context: {"seconds": 0.0, "text": f"day {context.partition_key}"},
    )
    for day in ("mon", "tue"):
        result = dg.materialize([by_day], partition_key=day, resources=resources(cluster))
        assert result.output_for_node("by_day") == f"day {day}"
        [execution] = cluster.executions(**{"dagster-run": result.run_id})
        assert execution.labels["orchestrator-step"].endswith(f":by_day:{day}")


def test_failed_execution_fails_the_step_with_plaits_message(cluster: Cluster) -> None:
    checked = plait_asset(PREFIX + "must_be_positive", name="checked", inputs={"x": -3})

    result = dg.materialize([checked], resources=resources(cluster), raise_on_error=False)

    assert not result.success
    message = failure_message(result)
    assert "failed (node n0): NonRetryableError: x must be positive, got -3" in message
    [execution] = cluster.executions(**{"dagster-run": result.run_id})
    assert execution.phase == EP.EXECUTION_PHASE_FAILED


def test_bad_inputs_fail_the_step_naming_the_input(cluster: Cluster) -> None:
    checked = plait_asset(PREFIX + "must_be_positive", name="checked", inputs={"x": "three"})

    result = dg.materialize([checked], resources=resources(cluster), raise_on_error=False)

    assert not result.success
    assert "x: expected int, got str 'three'" in failure_message(result)
    assert cluster.executions(**{"dagster-run": result.run_id}) == []


def test_retried_step_reattaches_to_the_running_execution(cluster: Cluster) -> None:
    attempts: list[tuple[int, str]] = []

    @dg.asset(retry_policy=dg.RetryPolicy(max_retries=2))
    def echoed(context: dg.AssetExecutionContext, plait: PlaitResource) -> str:
        run = plait.launch(context, PREFIX + "slow_echo", {"seconds": 1.0, "text": "once"})
        attempts.append((context.retry_number, run.name))
        if context.retry_number == 0:
            raise RuntimeError("the step died after launching")
        return str(plait.wait(context, run).outputs)

    result = dg.materialize([echoed], resources=resources(cluster))

    assert result.success
    assert result.output_for_node("echoed") == "once"
    assert [n for n, _ in attempts] == [0, 1]
    assert attempts[0][1] == attempts[1][1]
    [execution] = cluster.executions(**{"dagster-run": result.run_id})
    assert execution.phase == EP.EXECUTION_PHASE_SUCCEEDED


def test_retry_after_a_failed_execution_starts_a_fresh_one(
    cluster: Cluster, tmp_path: Path
) -> None:
    once = plait_asset(
        PREFIX + "fails_once",
        name="once",
        inputs={"marker": str(tmp_path / "marker")},
        retry_policy=dg.RetryPolicy(max_retries=1),
    )

    result = dg.materialize([once], resources=resources(cluster))

    assert result.success
    assert result.output_for_node("once") == "the second execution succeeded"
    executions = cluster.executions(**{"dagster-run": result.run_id})
    assert sorted(e.phase for e in executions) == [
        EP.EXECUTION_PHASE_SUCCEEDED,
        EP.EXECUTION_PHASE_FAILED,
    ]
    assert len({e.labels["orchestrator-step"] for e in executions}) == 1


def _interrupt_when_running(cluster: Cluster, text: str, found: list[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for e in cluster.executions(orchestrator="dagster"):
            if e.phase == EP.EXECUTION_PHASE_RUNNING and e.labels.get("test") == text:
                found.append(e.id.name)
                # What a run worker gets when the run is terminated from the UI.
                os.kill(os.getpid(), signal.SIGINT)
                return
        time.sleep(0.05)


def test_interrupted_step_terminates_the_execution(cluster: Cluster) -> None:
    @dg.asset
    def long_echo(context: dg.AssetExecutionContext, plait: PlaitResource) -> str:
        inputs = {"seconds": 60.0, "text": "never"}
        return str(plait.run(context, PREFIX + "slow_echo", inputs, labels={"test": "cancel"}))

    found: list[str] = []
    watcher = threading.Thread(target=_interrupt_when_running, args=(cluster, "cancel", found))
    watcher.start()
    try:
        result = dg.materialize([long_echo], resources=resources(cluster), raise_on_error=False)
    finally:
        watcher.join()

    assert found, "the execution never ran"
    assert not result.success
    assert wait_phase(cluster, found[0], [EP.EXECUTION_PHASE_ABORTED], timeout=10)
    with cluster.client() as client:
        execution = client.get(found[0])
    message = execution.error.message
    assert "Dagster step long_echo was interrupted (DagsterExecutionInterruptedError)" in message


def test_unknown_target_and_bad_address_are_clear_errors(cluster: Cluster) -> None:
    missing = plait_asset(PREFIX + "no_such_workflow", name="missing")
    result = dg.materialize([missing], resources=resources(cluster), raise_on_error=False)
    assert "no workflow or launch plan default/development/dagster_flows.no_such_workflow" in (
        failure_message(result)
    )
    with pytest.raises(ValueError, match="address 'nowhere': expected HOST:PORT"):
        PlaitResource(address="nowhere").connection()
