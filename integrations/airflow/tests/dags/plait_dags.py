"""DAGs the provider's tests run with `dag.test()` against a real engine and worker."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, Context
from airflow.sdk.exceptions import AirflowException

from airflow.providers.plait.operators.plait import PlaitExecutionOperator
from airflow.providers.plait.sensors.plait import PlaitExecutionSensor

PREFIX = "default/development/airflow_flows."
# What failed tasks said, by task id (filled by `on_failure_callback` in the test process).
FAILURES: dict[str, str] = {}


def record_failure(context: Context) -> None:
    FAILURES[context["ti"].task_id] = str(context.get("exception"))


class CrashAfterLaunch(PlaitExecutionOperator):
    """Dies on its first try right after launching, as a lost worker would."""

    def execute(self, context: Context) -> Any:
        if context["ti"].try_number == 1:
            self.launch(context)
            raise AirflowException("the worker died after launching")
        return super().execute(context)


NO_WAIT = {"retry_delay": timedelta(0), "on_failure_callback": record_failure}

with DAG("plait_outputs", schedule=None, params={"numbers": [1, 2, 3]}) as outputs_dag:
    PlaitExecutionOperator(
        task_id="deferred",
        target=PREFIX + "sum_of_squares",
        inputs={"numbers": "{{ params.numbers }}"},
    )
    PlaitExecutionOperator(
        task_id="blocking",
        target=PREFIX + "sum_of_squares",
        inputs={"numbers": [4, 5]},
        deferrable=False,
    )
    launch = PlaitExecutionOperator(
        task_id="launch",
        target=PREFIX + "slow_echo",
        inputs={"seconds": 0.5, "text": "{{ run_id }}"},
        wait_for_completion=False,
    )
    sense = PlaitExecutionSensor(task_id="sense", execution="{{ ti.xcom_pull('launch') }}")
    launch >> sense
    PlaitExecutionOperator.partial(task_id="mapped", target=PREFIX + "slow_echo").expand(
        inputs=[{"seconds": 0.0, "text": "a"}, {"seconds": "0.1", "text": "b"}]
    )

with DAG("plait_failure", schedule=None, default_args=NO_WAIT) as failure_dag:
    PlaitExecutionOperator(task_id="negative", target=PREFIX + "must_be_positive", inputs={"x": -3})

with DAG(
    "plait_retry", schedule=None, default_args=NO_WAIT, params={"marker": "unset"}
) as retry_dag:
    CrashAfterLaunch(
        task_id="crash_once",
        target=PREFIX + "slow_echo",
        inputs={"seconds": 1.0, "text": "once"},
        retries=1,
    )
    PlaitExecutionOperator(
        task_id="fails_once",
        target=PREFIX + "fails_once",
        inputs={"marker": "{{ params.marker }}"},
        retries=1,
    )

with DAG("plait_timeout", schedule=None, default_args=NO_WAIT) as timeout_dag:
    PlaitExecutionOperator(
        task_id="too_slow",
        target=PREFIX + "slow_echo",
        inputs={"seconds": 60.0, "text": "never"},
        deferrable=False,
        execution_timeout=timedelta(seconds=3),
    )

with DAG("plait_missing", schedule=None, default_args=NO_WAIT) as missing_dag:
    PlaitExecutionOperator(task_id="missing", target=PREFIX + "no_such_workflow")

with DAG("plait_secure", schedule=None, default_args=NO_WAIT) as secure_dag:
    PlaitExecutionOperator(
        task_id="deferred",
        plait_conn_id="plait_secure",
        target=PREFIX + "sum_of_squares",
        inputs={"numbers": [2]},
    )
    PlaitExecutionOperator(
        task_id="blocking",
        plait_conn_id="plait_secure",
        target=PREFIX + "sum_of_squares",
        inputs={"numbers": [3]},
        deferrable=False,
    )
