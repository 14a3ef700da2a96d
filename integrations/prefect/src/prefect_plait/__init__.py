"""Prefect integration of plait: run plait workflows from Prefect flows.

`PlaitConnection` is a block for a plait engine; `run_plait_execution` is a task that launches
a registered workflow or launch plan and waits for its outputs, idempotently on the task run
(retries re-attach) and terminating the execution when the task run is cancelled.
"""

from prefect_plait._block import PlaitConnection, PlaitRun, task_request_id
from prefect_plait._tasks import run_plait_execution

__all__ = ["PlaitConnection", "PlaitRun", "run_plait_execution", "task_request_id"]
