"""`run_plait_execution`: the Prefect task that launches a plait execution and waits for it."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_link_artifact

from prefect_plait._block import PlaitConnection


@task(name="run-plait-execution")
def run_plait_execution(
    connection: PlaitConnection,
    target: str,
    inputs: dict[str, Any] | None = None,
    request_id: str | None = None,
    labels: dict[str, str] | None = None,
) -> Any:
    """Run a registered plait workflow or launch plan and return its outputs.

    The execution is identified by the task run (flow run, task key, dynamic key): a retry
    (``run_plait_execution.with_options(retries=2)``) re-attaches to the execution while it runs
    or after it succeeded, and starts a fresh one when it failed or was aborted. A cancelled
    or timed-out task run terminates the execution. When the connection has a ``console_url``,
    the execution's page is linked as an artifact.

    Args:
        connection: The plait engine.
        target: ``project/domain/name[@version]`` of a registered workflow or launch plan.
        inputs: Python values by input name, converted with the registered interface.
        request_id: Overrides the request id derived from the task run.
        labels: Labels for a new execution.

    Returns:
        The outputs: one output as is, several as a dict by name, none as None.

    Raises:
        plait.ExecutionFailedError: The execution failed or was aborted; the message names the
            node and the task's error.
    """
    run = connection.launch(target, inputs, request_id=request_id, labels=labels)
    if run.url:
        create_link_artifact(
            run.url,
            link_text=f"plait execution {run.name}",
            description=f"{run.target} (request id {run.request_id})",
        )
    return connection.wait(run)
