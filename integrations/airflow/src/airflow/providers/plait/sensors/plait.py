"""`PlaitExecutionSensor`: wait for a plait execution started elsewhere."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowException

from airflow.providers.plait import _steps
from airflow.providers.plait.hooks.plait import PlaitHook
from airflow.providers.plait.triggers.plait import PlaitExecutionTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context


class PlaitExecutionSensor(BaseSensorOperator):
    """Succeeds when a plait execution has succeeded; fails when it failed or was aborted.

    Pairs with ``PlaitExecutionOperator(wait_for_completion=False)``, whose return value is the
    execution's name:
    ``PlaitExecutionSensor(task_id="wait", execution="{{ ti.xcom_pull('launch') }}")``.

    Args:
        execution: ``name`` or ``project/domain/name`` of the execution (templated).
        plait_conn_id: The ``plait`` connection of its engine.
        deferrable: Wait in the triggerer (default) rather than poking from a worker.
        **kwargs: Arguments of `BaseSensorOperator` (``poke_interval``, ``timeout``, ...).
    """

    template_fields: Sequence[str] = ("execution",)

    def __init__(
        self,
        *,
        execution: str,
        plait_conn_id: str = PlaitHook.default_conn_name,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.execution = execution
        self.plait_conn_id = plait_conn_id
        self.deferrable = deferrable

    def poke(self, context: Context) -> bool:
        """Whether the execution succeeded.

        Raises:
            AirflowException: It failed or was aborted (plait's message: node and error).
        """
        with PlaitHook(self.plait_conn_id).get_conn() as client:
            state = client.get(self.execution)
        if state.phase in _steps.FAILED_PHASES:
            raise AirflowException(str(_steps.failed_error(state)))
        return bool(state.phase == _steps.SUCCEEDED)

    def execute(self, context: Context) -> Any:
        """Poke once, then defer to the trigger (or poke on, when not deferrable)."""
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):
            return None
        with PlaitHook(self.plait_conn_id).get_conn() as client:
            state = client.get(self.execution)
        i = state.id
        self.defer(
            # The sensor only watches: killing it leaves the execution running.
            trigger=PlaitExecutionTrigger(
                {"project": i.project, "domain": i.domain, "name": i.name},
                self.plait_conn_id,
                terminate_on_kill=False,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) if self.timeout else None,
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> None:
        """Resume after the trigger fired: succeed, or fail with plait's message."""
        if event["status"] != "SUCCEEDED":
            raise AirflowException(event.get("message") or f"plait execution: {event}")
