"""`PlaitExecutionOperator`: run a registered plait workflow or launch plan from a DAG."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator, BaseOperatorLink
from airflow.sdk.exceptions import AirflowException, TaskDeferralTimeout
from airflow.sdk.execution_time.xcom import XCom
from plait import ExecutionFailedError

from airflow.providers.plait import _inputs, _steps, _watch
from airflow.providers.plait.hooks.plait import PlaitHook
from airflow.providers.plait.triggers.plait import PlaitExecutionTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.types import TaskInstanceKey

# XCom key of ``{project, domain, name, request_id, target, url}`` of the task's execution.
XCOM_EXECUTION = "plait_execution"


class PlaitExecutionLink(BaseOperatorLink):
    """A link from the task to its execution's page in the plait console.

    The console's base URL is the connection's ``console_url`` extra; without it there is no
    link.
    """

    name = "plait execution"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """``{console_url}/executions/{project}/{domain}/{name}``, or "" before launch."""
        value = XCom.get_value(ti_key=ti_key, key=XCOM_EXECUTION)
        return str(value.get("url") or "") if isinstance(value, Mapping) else ""


def step_request_id(context: Context, namespace: str = "") -> str:
    """The request id of a task instance: dag id, task id, run id and map index.

    Every try of the task instance has the same one, so a retry finds the execution an
    earlier try started.
    """
    ti = context["ti"]
    return _steps.step_request_id(
        "airflow", ti.dag_id, ti.task_id, ti.run_id, ti.map_index, namespace=namespace
    )


class PlaitExecutionOperator(BaseOperator):
    """Launch a registered plait workflow or launch plan and wait for its outputs.

    The outputs are the task's return value (XCom ``return_value``): one output as is, several
    as a dict by name. The execution's ``{project, domain, name, request_id, target, url}`` is
    pushed under the XCom key ``plait_execution``, and the task links to the execution in the
    plait console.

    **Retries re-attach.** The execution's request id is made of the dag id, task id, run id
    and map index, so a retried try re-attaches to the execution of an earlier try while it is
    queued, running or succeeded. When that execution failed or was aborted, the retry starts
    a fresh one (request id ``<id>#2``, ``#3``, ...).

    **Waiting.** Deferrable by default: the task hands the wait to `PlaitExecutionTrigger` in
    the triggerer and holds no worker slot. With ``deferrable=False`` it waits in the worker.
    With ``wait_for_completion=False`` it returns the execution's name once launched (wait for
    it with `PlaitExecutionSensor`).

    **Cancellation.** A killed task (mark failed, clear, ``execution_timeout``) terminates the
    execution: ``on_kill`` in the worker, the trigger's ``on_kill`` while deferred.

    Args:
        target: ``project/domain/name[@version]`` of a registered workflow or launch plan
            (templated; no version means the newest).
        inputs: Inputs by name (templated). A rendered string for a non-string input is parsed
            as JSON (or ISO text for datetimes).
        plait_conn_id: The ``plait`` connection of the engine.
        request_id: Overrides the request id derived from the task instance (templated).
        labels: Labels of a new execution (templated).
        deferrable: Wait in the triggerer (default) rather than in the worker.
        wait_for_completion: Wait for the execution to end (default) or only launch it.
        **kwargs: Arguments of `BaseOperator` (``retries``, ``execution_timeout``, ...).
    """

    template_fields: Sequence[str] = ("target", "inputs", "request_id", "labels")
    template_fields_renderers: ClassVar[dict[str, str]] = {"inputs": "json", "labels": "json"}
    operator_extra_links = (PlaitExecutionLink(),)
    ui_color = "#d6e4f0"

    def __init__(
        self,
        *,
        target: str,
        inputs: Mapping[str, Any] | None = None,
        plait_conn_id: str = PlaitHook.default_conn_name,
        request_id: str | None = None,
        labels: Mapping[str, str] | None = None,
        deferrable: bool = True,
        wait_for_completion: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if "{{" not in target:
            _steps.parse_target(target)  # a malformed target fails when the DAG is parsed
        self.target = target
        self.inputs = dict(inputs or {})
        self.plait_conn_id = plait_conn_id
        self.request_id = request_id
        self.labels = dict(labels or {})
        self.deferrable = deferrable
        self.wait_for_completion = wait_for_completion
        self._launched: dict[str, str] | None = None
        self._kill_reason = "the Airflow task was killed"

    def launch(self, context: Context) -> dict[str, Any]:
        """Start the task instance's execution, or re-attach to it.

        Returns:
            ``{project, domain, name, request_id, target, url}`` of the execution, also pushed
            under the XCom key ``plait_execution``.
        """
        return self._launch(context)[1]

    def _launch(self, context: Context) -> tuple[_steps.Connection, dict[str, Any], Any]:
        conn = PlaitHook(self.plait_conn_id).get_connection_params()
        ti = context["ti"]
        self._kill_reason = (
            f"Airflow task {ti.dag_id}.{ti.task_id} (run {ti.run_id}, try {ti.try_number}) "
            "was killed"
        )
        labels = {"airflow-dag": ti.dag_id, "airflow-task": ti.task_id, "airflow-run": ti.run_id}
        with conn.client() as client:
            target = _steps.resolve_target(client, self.target)
            launched = _steps.start_or_attach(
                client,
                target,
                _inputs.typed_inputs(target.interface, self.inputs),
                request_id=self.request_id or step_request_id(context, conn.namespace),
                orchestrator="airflow",
                labels={**labels, **self.labels},
            )
        url = _steps.execution_url(conn.console_url, launched.execution)
        info: dict[str, Any] = {**launched.key, "url": url, "target": target.display}
        info["request_id"] = launched.request_id
        ti.xcom_push(key=XCOM_EXECUTION, value=info)
        self._launched = launched.key
        if url:
            self.log.info("plait execution %s: %s", launched.name, url)
        return conn, info, launched

    def execute(self, context: Context) -> Any:
        """Launch (or re-attach to) the execution, then wait for it or defer."""
        conn, _, launched = self._launch(context)
        if not self.wait_for_completion:
            return launched.name
        if self.deferrable and launched.execution.phase not in _steps.TERMINAL_PHASES:
            self.defer(
                trigger=PlaitExecutionTrigger(launched.key, self.plait_conn_id, self._kill_reason),
                method_name="execute_complete",
                timeout=self.execution_timeout,
            )
        with conn.client() as client:
            try:
                return _steps.wait_for(client, launched, reason=self._kill_reason)
            except ExecutionFailedError as err:
                raise AirflowException(str(err)) from None

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Resume after the trigger fired: return the outputs, or fail with plait's message."""
        self._launched = event["execution"]
        name = event["execution"]["name"]
        if event["status"] != "SUCCEEDED":
            raise AirflowException(event.get("message") or f"plait execution {name}: {event}")
        self.log.info("plait execution %s succeeded; nodes: %s", name, event.get("nodes"))
        conn = PlaitHook(self.plait_conn_id).get_connection_params()
        with conn.client() as client:
            return client.outputs("/".join(event["execution"][k] for k in _KEY))

    def resume_execution(
        self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context
    ) -> Any:
        """Terminate the execution when the deferral timed out (``execution_timeout``)."""
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except TaskDeferralTimeout:
            ti = context["ti"]
            key = ti.xcom_pull(task_ids=ti.task_id, key=XCOM_EXECUTION, map_indexes=ti.map_index)
            if isinstance(key, Mapping):
                self._launched = {k: key[k] for k in _KEY}
                self._kill_reason = f"Airflow task {ti.dag_id}.{ti.task_id} timed out"
                self.on_kill()
            raise

    def on_kill(self) -> None:
        """Terminate the execution: the task was killed or timed out."""
        if self._launched is None:
            return
        conn = PlaitHook(self.plait_conn_id).get_connection_params()
        with conn.client(timeout=10) as client:
            eid = _watch.execution_id(self._launched)
            _steps.terminate_quietly(client, eid, self._kill_reason)


_KEY = ("project", "domain", "name")
