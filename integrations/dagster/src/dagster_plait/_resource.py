"""`PlaitResource`: run plait executions from Dagster assets and ops."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from plait import ExecutionFailedError
from plaitidl.core.v1 import identifier_pb2
from pydantic import Field

from dagster_plait import _steps

# What a step's context is in Dagster: an op's, or an asset's (which wraps one).
StepContext = dg.OpExecutionContext | dg.AssetExecutionContext


@dataclass
class PlaitRun:
    """A plait execution started (or re-attached to) by a Dagster step.

    Attributes:
        name: The execution's name.
        target: The workflow or launch plan it runs, ``project/domain/name@version``.
        request_id: The request id that found or created it.
        generation: 1 for the step's first execution, n when n-1 earlier ones failed.
        url: Its page in the plait console, when ``console_url`` is configured.
    """

    name: str
    target: str
    request_id: str
    generation: int
    url: str | None
    launched: _steps.Launched = field(repr=False)


@dataclass
class PlaitResult:
    """A succeeded plait execution.

    Attributes:
        outputs: Its outputs as Python values: one output as is, several as a dict by name.
        run: The execution.
        nodes: Its node counts by phase (``total``, ``succeeded``, ``cached``, ...).
    """

    outputs: Any
    run: PlaitRun
    nodes: dict[str, int]

    def metadata(self) -> dict[str, dg.MetadataValue]:
        """The execution's name, target, request id, node counts and link, as metadata."""
        return _metadata(self.run, self.nodes)


def _metadata(run: PlaitRun, nodes: Mapping[str, int]) -> dict[str, dg.MetadataValue]:
    meta: dict[str, dg.MetadataValue] = {
        "plait_execution": dg.MetadataValue.text(run.name),
        "plait_target": dg.MetadataValue.text(run.target),
        "plait_request_id": dg.MetadataValue.text(run.request_id),
    }
    meta.update({f"plait_nodes_{k}": dg.MetadataValue.int(v) for k, v in nodes.items()})
    if run.url:
        meta["plait_url"] = dg.MetadataValue.url(run.url)
    return meta


class PlaitResource(dg.ConfigurableResource["PlaitResource"]):
    """A plait engine, and how Dagster steps run executions on it.

    A step's execution is identified by the Dagster run id, the step key and the partition key:
    a retried step (``RetryPolicy``) re-attaches to the execution its earlier attempt started
    while it runs or after it succeeded, and starts a fresh one when it failed or was aborted.
    When the step is interrupted (the run is terminated), the execution is terminated.

    Example:
        ```python
        defs = dg.Definitions(
            assets=[...],
            resources={"plait": PlaitResource(address="127.0.0.1:8089")},
        )
        ```
    """

    address: str = Field(description="HOST:PORT of the plait engine (`plait serve --address`).")
    token: str | None = Field(default=None, description="Bearer token, when the engine wants one.")
    tls: bool = Field(default=False, description="Connect with TLS (system root certificates).")
    ca_cert: str | None = Field(
        default=None, description="PEM text or file of a private CA to trust (implies TLS)."
    )
    console_url: str | None = Field(
        default=None, description="Base URL of the plait console, for links to executions."
    )
    namespace: str = Field(
        default="", description="Request id prefix, when several Dagster instances share an engine."
    )

    def connection(self) -> _steps.Connection:
        """The engine's address and credentials."""
        return _steps.Connection(
            self.address, self.token, self.tls, self.ca_cert, self.console_url, self.namespace
        )

    def step_request_id(self, context: StepContext) -> str:
        """The request id of the step `context` runs: run id, step key and partition key."""
        op_context = _op_context(context)
        partition = op_context.partition_key if op_context.has_partition_key else ""
        step_key = op_context.get_step_execution_context().step.key
        return _steps.step_request_id(
            "dagster", op_context.run.run_id, step_key, partition, namespace=self.namespace
        )

    def launch(
        self,
        context: StepContext,
        target: str | identifier_pb2.Identifier,
        inputs: Mapping[str, Any] | None = None,
        *,
        request_id: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> PlaitRun:
        """Start the step's execution of `target`, or re-attach to it.

        Args:
            context: The asset's or op's context (its identity makes the request id).
            target: ``project/domain/name[@version]`` of a registered workflow or launch plan.
            inputs: Python values by input name, converted with the registered interface.
            request_id: Overrides the request id derived from the step.
            labels: Labels for a new execution.
        """
        op_context = _op_context(context)
        conn = self.connection()
        step_labels = {"dagster-job": op_context.job_name, "dagster-run": op_context.run.run_id}
        with conn.client() as client:
            resolved = _steps.resolve_target(client, target)
            launched = _steps.start_or_attach(
                client,
                resolved,
                inputs,
                request_id=request_id or self.step_request_id(context),
                orchestrator="dagster",
                labels={**step_labels, **(labels or {})},
            )
        run = PlaitRun(
            name=launched.name,
            target=resolved.display,
            request_id=launched.request_id,
            generation=launched.generation,
            url=_steps.execution_url(conn.console_url, launched.execution),
            launched=launched,
        )
        op_context.log.info(
            f"plait execution {run.name} of {run.target} (request id {run.request_id})"
            + (f": {run.url}" if run.url else "")
        )
        return run

    def wait(self, context: StepContext, run: PlaitRun) -> PlaitResult:
        """Wait for `run` to end; terminate it when the step is interrupted.

        Raises:
            dagster.Failure: The execution failed or was aborted; the description is plait's
                message (the node and the task's error).
        """
        op_context = _op_context(context)
        reason = f"Dagster step {op_context.get_step_execution_context().step.key} was interrupted"
        with self.connection().client() as client:
            try:
                outputs = _steps.wait_for(client, run.launched, reason=reason)
            except ExecutionFailedError as err:
                final = client.get(run.launched.handle)
                raise dg.Failure(
                    description=str(err),
                    metadata=_metadata(run, _steps.counts_dict(final.nodes)),
                ) from None
            final = client.get(run.launched.handle)
        return PlaitResult(outputs, run, _steps.counts_dict(final.nodes))

    def run(
        self,
        context: StepContext,
        target: str | identifier_pb2.Identifier,
        inputs: Mapping[str, Any] | None = None,
        *,
        request_id: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> PlaitResult:
        """Launch (or re-attach to) the step's execution of `target` and wait for it.

        See `launch` for the arguments and `wait` for the errors.
        """
        launched = self.launch(context, target, inputs, request_id=request_id, labels=labels)
        return self.wait(context, launched)


def _op_context(context: StepContext) -> dg.OpExecutionContext:
    if isinstance(context, dg.AssetExecutionContext):
        return context.op_execution_context
    return context
