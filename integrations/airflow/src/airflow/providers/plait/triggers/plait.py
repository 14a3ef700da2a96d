"""`PlaitExecutionTrigger`: waits for a plait execution in the triggerer, holding no worker slot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow.providers.plait import _steps, _watch
from airflow.providers.plait.hooks.plait import PlaitHook

# `status` of an event when the engine refused a call (not a phase of the execution).
ERROR = "ERROR"


def final_event(execution: _steps.Execution) -> dict[str, Any]:
    """What the trigger fires for an ended execution (JSON-friendly).

    ``status`` is the phase (``SUCCEEDED``, ``FAILED``, ``ABORTED``); ``message`` plait's
    error (the node and the task's message) when it did not succeed; ``nodes`` its counts.
    """
    i = execution.id
    event: dict[str, Any] = {
        "status": _steps.phase_name(execution.phase),
        "execution": {"project": i.project, "domain": i.domain, "name": i.name},
        "nodes": _steps.counts_dict(execution.nodes),
    }
    if execution.phase in _steps.FAILED_PHASES:
        event["message"] = str(_steps.failed_error(execution))
    return event


class PlaitExecutionTrigger(BaseTrigger):
    """Fires once the plait execution has ended (succeeded, failed or aborted).

    It follows the execution's event stream over `grpc.aio` and resumes it when the engine
    restarts. When a user kills the deferred task (mark failed, clear), it terminates the
    execution; a triggerer restart does not.

    Args:
        execution: ``{"project", "domain", "name"}`` of the execution.
        plait_conn_id: The ``plait`` connection of its engine.
        reason: Recorded on the execution when the task is killed.
        terminate_on_kill: Whether killing the task terminates the execution (a sensor that
            only watches it passes False).
    """

    def __init__(
        self,
        execution: dict[str, str],
        plait_conn_id: str = PlaitHook.default_conn_name,
        reason: str = "the Airflow task was killed",
        terminate_on_kill: bool = True,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.execution = dict(execution)
        self.plait_conn_id = plait_conn_id
        self.reason = reason
        self.terminate_on_kill = terminate_on_kill

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The class path and arguments that rebuild this trigger in the triggerer."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "execution": self.execution,
                "plait_conn_id": self.plait_conn_id,
                "reason": self.reason,
                "terminate_on_kill": self.terminate_on_kill,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Wait for the execution to end, then fire `final_event` (or an ``ERROR`` event)."""
        eid = _watch.execution_id(self.execution)
        try:
            conn = await PlaitHook(self.plait_conn_id).aget_connection_params()
            execution = await _watch.wait_until_done(conn, eid)
        except (_watch.WatchError, ValueError) as err:
            message = f"cannot follow plait execution {eid.name}: {err}"
            error = {"status": ERROR, "execution": self.execution, "message": message}
            yield TriggerEvent(error)  # type: ignore[no-untyped-call]
            return
        yield TriggerEvent(final_event(execution))  # type: ignore[no-untyped-call]

    async def on_kill(self) -> None:
        """Terminate the execution: the user killed the deferred task."""
        if not self.terminate_on_kill:
            return
        conn = await PlaitHook(self.plait_conn_id).aget_connection_params()
        state = await _watch.terminate(conn, _watch.execution_id(self.execution), self.reason)
        self.log.info(
            "terminated plait execution %s (%s)", state.id.name, _steps.phase_name(state.phase)
        )
