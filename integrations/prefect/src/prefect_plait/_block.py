"""`PlaitConnection`: a Prefect block for a plait engine, and how tasks run executions on it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from plaitidl.core.v1 import identifier_pb2
from prefect.blocks.core import Block
from prefect.context import TaskRunContext
from prefect.logging import get_run_logger
from pydantic import Field, SecretStr

from prefect_plait import _steps


@dataclass
class PlaitRun:
    """A plait execution started (or re-attached to) by a Prefect task.

    Attributes:
        name: The execution's name.
        target: The workflow or launch plan it runs, ``project/domain/name@version``.
        request_id: The request id that found or created it.
        generation: 1 for the task's first execution, n when n-1 earlier ones failed.
        url: Its page in the plait console, when ``console_url`` is set.
    """

    name: str
    target: str
    request_id: str
    generation: int
    url: str | None
    launched: _steps.Launched = field(repr=False)


def _task_context() -> TaskRunContext:
    context = TaskRunContext.get()
    if context is None:
        raise RuntimeError(
            "PlaitConnection.launch runs inside a Prefect task (its identity makes the request "
            "id); outside one, pass request_id"
        )
    return context


def task_request_id(namespace: str = "") -> str:
    """The request id of the running task: its flow run, task key and dynamic key.

    Retries of a task keep its task run, so they keep its request id.
    """
    run = _task_context().task_run
    return _steps.step_request_id(
        "prefect", run.flow_run_id or run.id, run.task_key, run.dynamic_key, namespace=namespace
    )


class PlaitConnection(Block):
    """A plait engine (``plait serve``): its address, credentials and console.

    Example:
        ```python
        PlaitConnection(address="127.0.0.1:8089").save("plait")
        connection = PlaitConnection.load("plait")
        ```
    """

    _block_type_name = "plait Connection"
    _description = "Connects Prefect tasks to a plait engine to run plait workflows."

    address: str = Field(description="HOST:PORT of the plait engine (`plait serve --address`).")
    token: SecretStr | None = Field(
        default=None, description="Bearer token, if the engine wants one."
    )
    tls: bool = Field(default=False, description="Connect with TLS (system root certificates).")
    ca_cert: str | None = Field(
        default=None, description="PEM text or file of a private CA to trust (implies TLS)."
    )
    console_url: str | None = Field(
        default=None, description="Base URL of the plait console, for links to executions."
    )
    namespace: str = Field(
        default="", description="Request id prefix, when several Prefect servers share an engine."
    )

    def connection(self) -> _steps.Connection:
        """The engine's address and credentials."""
        token = self.token.get_secret_value() if self.token else None
        return _steps.Connection(
            self.address, token, self.tls, self.ca_cert, self.console_url, self.namespace
        )

    def launch(
        self,
        target: str | identifier_pb2.Identifier,
        inputs: Mapping[str, Any] | None = None,
        *,
        request_id: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> PlaitRun:
        """Start the running task's execution of `target`, or re-attach to it.

        A retry re-attaches to the execution an earlier run of the task started while it runs
        or after it succeeded, and starts a fresh one when it failed or was aborted.

        Args:
            target: ``project/domain/name[@version]`` of a registered workflow or launch plan.
            inputs: Python values by input name, converted with the registered interface.
            request_id: Overrides the request id derived from the task run.
            labels: Labels for a new execution.
        """
        conn = self.connection()
        task_labels: dict[str, str] = {}
        context = TaskRunContext.get()
        if context is not None and context.task_run.flow_run_id:
            task_labels["prefect-flow-run"] = str(context.task_run.flow_run_id)
        with conn.client() as client:
            resolved = _steps.resolve_target(client, target)
            launched = _steps.start_or_attach(
                client,
                resolved,
                inputs,
                request_id=request_id or task_request_id(self.namespace),
                orchestrator="prefect",
                labels={**task_labels, **(labels or {})},
            )
        url = _steps.execution_url(conn.console_url, launched.execution)
        get_run_logger().info(
            "plait execution %s of %s (request id %s)%s",
            launched.name,
            resolved.display,
            launched.request_id,
            f": {url}" if url else "",
        )
        return PlaitRun(
            launched.name, resolved.display, launched.request_id, launched.generation, url, launched
        )

    def wait(self, run: PlaitRun) -> Any:
        """Wait for `run` to end and return its outputs; terminate it when interrupted.

        One output is returned as is, several as a dict by name.

        Raises:
            plait.ExecutionFailedError: It failed or was aborted; the message names the node
                and the task's error.
        """
        context = TaskRunContext.get()
        who = f" task run {context.task_run.name}" if context is not None else ""
        reason = f"the Prefect{who} was interrupted"
        with self.connection().client() as client:
            return _steps.wait_for(client, run.launched, reason=reason)

    def run(
        self,
        target: str | identifier_pb2.Identifier,
        inputs: Mapping[str, Any] | None = None,
        *,
        request_id: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Any:
        """Launch (or re-attach to) the task's execution of `target` and wait for its outputs.

        See `launch` for the arguments and `wait` for the errors.
        """
        return self.wait(self.launch(target, inputs, request_id=request_id, labels=labels))
