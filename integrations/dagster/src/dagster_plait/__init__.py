"""Dagster integration of plait: run plait workflows as Dagster assets and ops.

`PlaitResource` connects to a plait engine and runs executions idempotently on the step's
identity (retries re-attach), terminating them when the step is interrupted; `plait_asset` and
`plait_op` wrap a registered workflow or launch plan as an asset or an op.
"""

from dagster_plait._definitions import plait_asset, plait_op
from dagster_plait._resource import PlaitResource, PlaitResult, PlaitRun

__all__ = ["PlaitResource", "PlaitResult", "PlaitRun", "plait_asset", "plait_op"]
