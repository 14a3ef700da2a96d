"""Apache Airflow provider for plait: run plait workflows from DAGs.

`operators.plait.PlaitExecutionOperator` launches a registered workflow or launch plan and
waits for its outputs (deferrable, idempotent on the task instance, terminated when killed);
`sensors.plait.PlaitExecutionSensor` waits for an execution; `hooks.plait.PlaitHook` is the
``plait`` connection type. Nothing is imported here: Airflow loads the modules it needs.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
