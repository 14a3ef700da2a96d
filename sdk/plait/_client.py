"""A synchronous client of a remote plait engine."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from plaitidl.core.v1 import (
    execution_pb2,
    identifier_pb2,
    interface_pb2,
    literals_pb2,
    workflow_pb2,
)
from plaitidl.service.v1 import execution_service_pb2 as es
from plaitidl.service.v1 import execution_service_pb2_grpc as es_grpc
from plaitidl.service.v1 import registry_service_pb2 as rs
from plaitidl.service.v1 import registry_service_pb2_grpc as rs_grpc
from plaitidl.service.v1 import schedule_service_pb2 as ss
from plaitidl.service.v1 import schedule_service_pb2_grpc as ss_grpc

from plait import _serialize, _types
from plait._channels import Endpoint, message_options
from plait._constants import MAX_MESSAGE_BYTES
from plait._data import INLINE_LIMIT, DataClient
from plait._errors import (
    AlreadyExistsError,
    ExecutionFailedError,
    InvalidArgumentError,
    NotFoundError,
    RpcError,
    UnauthenticatedError,
    UnavailableError,
)

EP = execution_pb2
TERMINAL = (EP.EXECUTION_PHASE_SUCCEEDED, EP.EXECUTION_PHASE_FAILED, EP.EXECUTION_PHASE_ABORTED)
_ERRORS: dict[grpc.StatusCode, type[RpcError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
}
T = TypeVar("T")
# Seconds between attempts to resume a watch while the engine is unreachable.
_RECONNECT_DELAY = 0.5


def map_rpc_error(err: grpc.RpcError) -> RpcError:
    """The typed SDK exception of a failed call: the one place gRPC errors are translated.

    Args:
        err: What grpc raised (a `grpc.Call` too, for status, message and trailers).

    Returns:
        An `RpcError` subclass carrying the status code's name, the message and the field
        violations of a ``google.rpc.BadRequest`` detail.
    """
    code = err.code() if isinstance(err, grpc.Call) else grpc.StatusCode.UNKNOWN
    message = err.details() if isinstance(err, grpc.Call) else str(err)
    violations: list[tuple[str, str]] = []
    if isinstance(err, grpc.Call):
        try:
            status = rpc_status.from_call(err)
        except ValueError:
            status = None
        for detail in status.details if status is not None else ():
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations += [(v.field, v.description) for v in bad.field_violations]
    cls = _ERRORS.get(code, RpcError)
    return cls(code.name, message or "", violations)


def resume_sequence(batch: es.WatchExecutionResponse, seq: int) -> int:
    """Where a watch resumes after `batch`: its `sequence`, or the last event's from a server
    that does not set it; `seq` when it carries neither."""
    if batch.sequence:
        return batch.sequence
    return batch.events[-1].sequence if batch.events else seq


@dataclass
class RemoteExecution:
    """A handle on an execution of a remote engine.

    Attributes:
        id: The execution's id.
        execution: Its state when the handle was made (call `Client.get` for fresh state).
        entity: The SDK object it runs, when known: outputs then decode to its Python types.
    """

    id: identifier_pb2.ExecutionIdentifier
    execution: es.Execution
    entity: Any = None

    @property
    def name(self) -> str:
        """The execution's name."""
        return str(self.id.name)


# What methods taking an execution accept: a handle, an `Execution`, an `ExecutionIdentifier` or
# a name ("name" or "project/domain/name").
ExecutionRef = RemoteExecution | es.Execution | identifier_pb2.ExecutionIdentifier | str


class Client:
    """A synchronous client of a plait engine (``plait serve``).

    Every gRPC failure surfaces as an `RpcError` subclass (`NotFoundError`,
    `InvalidArgumentError`, ...). Use as a context manager, or call `close`.

    Args:
        address: ``HOST:PORT`` of the engine.
        token: Sent as ``authorization: Bearer <token>`` when the engine requires one.
        tls: Connect with TLS (system root certificates).
        ca_cert: A PEM file of the CA to trust (implies TLS), for a private certificate.
        timeout: Seconds each unary call may take.
        max_message_bytes: The largest message sent or accepted (the engine's default).
    """

    def __init__(
        self,
        address: str,
        *,
        token: str | None = None,
        tls: bool = False,
        ca_cert: str | Path | None = None,
        timeout: float = 30,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        endpoint = Endpoint(address, token=token, tls=tls, ca_cert=ca_cert)
        self._channel = endpoint.channel(message_options(max_message_bytes))
        self.address = address
        self._metadata = endpoint.metadata
        self._timeout = timeout
        self.registry = rs_grpc.RegistryServiceStub(self._channel)
        self.executions = es_grpc.ExecutionServiceStub(self._channel)
        self.schedules = ss_grpc.ScheduleServiceStub(self._channel)
        self._data = DataClient(self._channel, self._metadata, on_error=map_rpc_error)

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, rpc: Callable[..., T], request: Any, timeout: float | None = None) -> T:
        try:
            return rpc(request, timeout=timeout or self._timeout, metadata=self._metadata)
        except grpc.RpcError as err:
            raise map_rpc_error(err) from None

    # -- registry ------------------------------------------------------------------------
    def register(self, *entities: Any) -> list[identifier_pb2.Identifier]:
        """Register tasks, workflows and launch plans with everything they reference.

        Args:
            *entities: ``@task``, ``@dynamic``, ``@workflow`` or `LaunchPlan` objects.

        Returns:
            The identifiers of every template sent (created or already identical).
        """
        tasks, workflows, lps = _serialize.closure(list(entities))
        if not (tasks or workflows or lps):
            return []
        response = self.register_templates(
            rs.RegisterRequest(tasks=tasks, workflows=workflows, launch_plans=lps)
        )
        return [*response.created, *response.unchanged]

    def register_templates(self, request: rs.RegisterRequest) -> rs.RegisterResponse:
        """Send a `RegisterRequest` as it is (templates built by hand or by another SDK)."""
        return self._call(self.registry.Register, request)

    def get_workflow(self, id: identifier_pb2.Identifier) -> workflow_pb2.WorkflowTemplate:
        """A registered workflow (empty version: the newest)."""
        return self._call(self.registry.GetWorkflow, rs.GetWorkflowRequest(id=id)).workflow

    def get_launch_plan(self, id: identifier_pb2.Identifier) -> workflow_pb2.LaunchPlan:
        """A registered launch plan (empty version: the newest)."""
        request = rs.GetLaunchPlanRequest(id=id)
        return self._call(self.registry.GetLaunchPlan, request).launch_plan

    def _interface(self, execution: es.Execution) -> interface_pb2.TypedInterface:
        return self.get_workflow(execution.workflow_id).interface

    # -- executions ----------------------------------------------------------------------
    def execute(
        self,
        entity_or_identifier: Any,
        inputs: Mapping[str, object] | literals_pb2.LiteralMap | None = None,
        *,
        request_id: str | None = None,
        name: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> RemoteExecution:
        """Start an execution.

        Args:
            entity_or_identifier: A ``@workflow``/`LaunchPlan` (registered first, with what it
                references) or the `Identifier` of a registered workflow or launch plan.
            inputs: Python values by input name, or a ready `LiteralMap`. With an identifier,
                values are converted using the interface registered on the engine.
            request_id: Idempotency key; a retried call with the same key returns the first
                execution. Generated when omitted.
            name: The execution's name; generated by the engine when empty.
            labels: Free-form labels.

        Returns:
            A handle on the execution.
        """
        entity = None
        if isinstance(entity_or_identifier, identifier_pb2.Identifier):
            ident = entity_or_identifier
        else:
            entity = entity_or_identifier
            bundle = _serialize.collect(entity)
            self.register_templates(bundle.register_request())
            ident = bundle.root
        is_lp = ident.resource_type == identifier_pb2.RESOURCE_TYPE_LAUNCH_PLAN
        if isinstance(inputs, literals_pb2.LiteralMap):
            literal_inputs = inputs
        elif entity is not None:
            from plait._embedded import inputs_to_literals

            literal_inputs = inputs_to_literals(entity, inputs or {})
        else:
            wf_id = self.get_launch_plan(ident).workflow_id if is_lp else ident
            iface = self.get_workflow(wf_id).interface
            literal_inputs = _types.to_literal_map_by_type(iface.inputs, inputs or {})
        request = es.CreateExecutionRequest(
            request_id=request_id or uuid.uuid4().hex,
            inputs=literal_inputs,
            name=name,
            labels=dict(labels or {}),
        )
        (request.launch_plan_id if is_lp else request.workflow_id).CopyFrom(ident)
        if literal_inputs.ByteSize() > INLINE_LIMIT:
            self._offload_inputs(request, ident, is_lp)
        response = self._call(self.executions.CreateExecution, request)
        return RemoteExecution(response.execution.id, response.execution, entity)

    def _offload_inputs(
        self, request: es.CreateExecutionRequest, ident: identifier_pb2.Identifier, is_lp: bool
    ) -> None:
        """Upload the inputs above the inline limit for the execution about to be created.

        The uploads belong to the execution by name, so a name is chosen here when none was
        given (derived from the request id: a retried call reuses it).
        """
        if not request.name:
            request.name = "x" + hashlib.sha256(request.request_id.encode()).hexdigest()[:16]
        wf_id = self.get_launch_plan(ident).workflow_id if is_lp else ident
        types = {v.name: v.type for v in self.get_workflow(wf_id).interface.inputs.variables}
        eid = identifier_pb2.ExecutionIdentifier(
            project=request.project or ident.project,
            domain=request.domain or ident.domain,
            name=request.name,
        )
        offloaded = self._data.offload_map(eid, request.inputs, types)
        request.inputs.CopyFrom(offloaded)

    @staticmethod
    def _id(execution: ExecutionRef) -> identifier_pb2.ExecutionIdentifier:
        if isinstance(execution, RemoteExecution | es.Execution):
            return execution.id
        if isinstance(execution, str):
            project, domain, name = ["", "", *execution.split("/")][-3:]
            return identifier_pb2.ExecutionIdentifier(project=project, domain=domain, name=name)
        return execution

    def get(self, execution: ExecutionRef) -> es.Execution:
        """The current state of an execution (a handle, an id, or ``[project/domain/]name``)."""
        request = es.GetExecutionRequest(id=self._id(execution))
        return self._call(self.executions.GetExecution, request).execution

    def watch(
        self, execution: ExecutionRef, after_sequence: int = 0, *, counts_only: bool = False
    ) -> Iterator[es.WatchExecutionResponse]:
        """Stream the execution's events after `after_sequence` until it ends.

        Resumable: pass the last ``sequence`` seen to continue where a broken stream stopped.

        Args:
            execution: The execution.
            after_sequence: Only what the execution committed after this sequence.
            counts_only: Stream coalesced progress (node counts, the execution's own phase
                transitions, what runs and waits) instead of every event; see
                ``WatchExecutionRequest.counts_only``.
        """
        request = es.WatchExecutionRequest(
            id=self._id(execution), after_sequence=after_sequence, counts_only=counts_only
        )
        try:
            yield from self.executions.WatchExecution(request, metadata=self._metadata)
        except grpc.RpcError as err:
            raise map_rpc_error(err) from None

    def wait(
        self,
        execution: ExecutionRef,
        timeout: float | None = None,
        *,
        progress: Callable[[es.NodeCounts], None] | None = None,
    ) -> object:
        """Wait for the execution to end and return its outputs as Python values.

        The watch stream (counts only) is resumed from the last sequence seen when the
        engine becomes unreachable for a while (a restart), until `timeout`.

        Args:
            execution: The execution.
            timeout: Seconds to wait at most; None waits as long as it takes.
            progress: Called with the node counts as they change (at most ten times a
                second).

        Raises:
            ExecutionFailedError: It ended FAILED or ABORTED.
            TimeoutError: It did not end within `timeout` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        seq = 0
        # Counts and the end are all it needs: not every event of every node.
        request = es.WatchExecutionRequest(id=self._id(execution), counts_only=True)
        while True:
            request.after_sequence = seq
            left = None if deadline is None else max(deadline - time.monotonic(), 0.001)
            try:
                for batch in self.executions.WatchExecution(
                    request, timeout=left, metadata=self._metadata
                ):
                    seq = resume_sequence(batch, seq)
                    if progress is not None:
                        progress(batch.nodes)
                break
            except grpc.RpcError as err:
                code = err.code() if isinstance(err, grpc.Call) else None
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise TimeoutError(f"execution did not end in {timeout}s") from None
                if code == grpc.StatusCode.UNAVAILABLE and (
                    deadline is None or time.monotonic() < deadline
                ):
                    time.sleep(_RECONNECT_DELAY)
                    continue
                raise map_rpc_error(err) from None
        return self.outputs(execution)

    def outputs(self, execution: ExecutionRef) -> object:
        """The outputs of a succeeded execution as Python values.

        With a handle from `execute` on an SDK object, they come back as its function would
        return them; otherwise they are decoded by the registered interface's types (records
        as dicts, enums as their value strings) and one output is returned as is, several as a
        dict by name.

        Raises:
            ExecutionFailedError: The execution FAILED or was ABORTED.
        """
        state = self.get(execution)
        phase = EP.ExecutionPhase.Name(state.phase).removeprefix("EXECUTION_PHASE_")
        if state.phase in (EP.EXECUTION_PHASE_FAILED, EP.EXECUTION_PHASE_ABORTED):
            raise ExecutionFailedError(state.id.name, phase, state.error)
        if state.phase != EP.EXECUTION_PHASE_SUCCEEDED:
            raise RpcError("FAILED_PRECONDITION", f"execution {state.id.name} is {phase}")
        data = self.data(state.id)
        entity = execution.entity if isinstance(execution, RemoteExecution) else None
        if entity is not None:
            return _serialize.outputs_to_python(entity, data.outputs)
        variables = self._interface(state).outputs.variables
        values = {
            v.name: _types.to_python_by_type(data.outputs.literals[v.name], v.type, var=v.name)
            for v in variables
        }
        if len(values) == 0:
            return None
        if len(values) == 1:
            return next(iter(values.values()))
        return values

    def data(self, execution: ExecutionRef, *, resolve: bool = True) -> es.GetExecutionDataResponse:
        """The execution's inputs and (once succeeded) outputs as literals.

        Args:
            execution: The execution.
            resolve: Read values the engine sent as offloaded references (those above its
                inline limit) through `DataService`, in chunks; False keeps the references.
        """
        request = es.GetExecutionDataRequest(id=self._id(execution))
        response = self._call(self.executions.GetExecutionData, request)
        if resolve:
            for lm in (response.inputs, response.outputs):
                resolved = self._data.resolve_map(lm)
                if resolved is not lm:
                    lm.CopyFrom(resolved)
        return response

    def read_offloaded(self, offloaded: literals_pb2.OffloadedLiteral) -> literals_pb2.Literal:
        """The value behind an offloaded reference, read in chunks and checked (SHA-256)."""
        return self._data.read(offloaded)

    def terminate(self, execution: ExecutionRef, reason: str = "") -> es.Execution:
        """Abort a running execution (no-op when it has ended); returns its state."""
        request = es.TerminateExecutionRequest(id=self._id(execution), reason=reason)
        return self._call(self.executions.TerminateExecution, request).execution

    def list_executions(
        self,
        project: str = "",
        domain: str = "",
        phases: Sequence[int] = (),
        *,
        limit: int | None = None,
        page_size: int = 100,
    ) -> list[es.Execution]:
        """Executions, newest first, following pages up to `limit` results."""
        out: list[es.Execution] = []
        token = ""
        while True:
            request = es.ListExecutionsRequest(
                project=project, domain=domain, page_size=page_size, page_token=token
            )
            request.phases.extend(phases)  # type: ignore[arg-type]
            response = self._call(self.executions.ListExecutions, request)
            out.extend(response.executions)
            token = response.next_page_token
            if not token or (limit is not None and len(out) >= limit):
                return out[:limit] if limit is not None else out

    def node_executions(
        self, execution: ExecutionRef, parent_node_id: str = ""
    ) -> list[es.NodeExecution]:
        """Every node of an execution (or only the children of `parent_node_id`), by id."""
        out: list[es.NodeExecution] = []
        token = ""
        while True:
            request = es.ListNodeExecutionsRequest(
                id=self._id(execution), parent_node_id=parent_node_id, page_size=1000,
                page_token=token,
            )  # fmt: skip
            response = self._call(self.executions.ListNodeExecutions, request)
            out.extend(response.node_executions)
            token = response.next_page_token
            if not token:
                return out

    def dynamic_spec(self, execution: ExecutionRef, node_id: str) -> es.GetDynamicSpecResponse:
        """The compiled spec a dynamic node yielded, with its generator task."""
        request = es.GetDynamicSpecRequest()
        request.id.node_id = node_id
        request.id.execution_id.CopyFrom(self._id(execution))
        return self._call(self.executions.GetDynamicSpec, request)

    # -- for the command line (the same operations as `plait._local.LocalEngine`) ---------
    def delete(self, execution: ExecutionRef) -> None:
        """Delete a finished execution with its nodes, events, logs and data.

        Raises:
            RpcError: ``FAILED_PRECONDITION`` while it runs (terminate it first).
        """
        request = es.DeleteExecutionRequest(id=self._id(execution))
        self._call(self.executions.DeleteExecution, request)

    def logs(
        self,
        execution: ExecutionRef,
        node_id: str = "",
        attempt: int = 0,
        *,
        follow: bool = False,
        after: int = 0,
    ) -> Iterator[es.StreamLogsResponse]:
        """Captured stdout, stderr and logger lines of the execution's task attempts.

        Args:
            execution: The execution.
            node_id: Only this node; empty: every node.
            attempt: Only this attempt of the node; 0: every attempt.
            follow: Keep streaming new lines until the execution (or the node) ends.
            after: Resume after this `StreamLogsResponse.position`.
        """
        request = es.StreamLogsRequest(
            id=self._id(execution), node_id=node_id, attempt=attempt, follow=follow,
            after_position=after,
        )  # fmt: skip
        try:
            yield from self.executions.StreamLogs(request, metadata=self._metadata)
        except grpc.RpcError as err:
            raise map_rpc_error(err) from None

    def list_templates(
        self, kind: str, project: str = "", domain: str = "", name: str = "", *, limit: int = 100
    ) -> list[Any]:
        """Registered templates of a kind (``task``, ``workflow``, ``launch_plan``), most
        recent first, up to `limit`."""
        choices: dict[str, tuple[Callable[..., Any], type[Any], str]] = {
            "task": (self.registry.ListTasks, rs.ListTasksRequest, "tasks"),
            "workflow": (self.registry.ListWorkflows, rs.ListWorkflowsRequest, "workflows"),
            "launch_plan": (
                self.registry.ListLaunchPlans, rs.ListLaunchPlansRequest, "launch_plans"
            ),
        }  # fmt: skip
        rpc, request_type, field = choices[kind]
        out: list[Any] = []
        token = ""
        while len(out) < limit:
            request = request_type(
                project=project, domain=domain, name=name, page_size=min(limit - len(out), 1000),
                page_token=token,
            )  # fmt: skip
            response: Any = self._call(rpc, request)
            out.extend(getattr(response, field))
            token = response.next_page_token
            if not token:
                break
        return out[:limit]

    def get_template(self, kind: str, id: identifier_pb2.Identifier) -> Any:
        """One registered template of a kind (``task``, ``workflow``, ``launch_plan``); no
        version: the newest."""
        if kind == "task":
            return self._call(self.registry.GetTask, rs.GetTaskRequest(id=id)).task
        if kind == "workflow":
            return self.get_workflow(id)
        return self.get_launch_plan(id)

    # -- schedules -----------------------------------------------------------------------
    def list_schedules(self, project: str = "", domain: str = "") -> list[ss.ScheduleState]:
        """The schedules of launch plans, with their next tick and last execution."""
        request = ss.ListSchedulesRequest(project=project, domain=domain)
        return list(self._call(self.schedules.ListSchedules, request).schedules)

    def pause_schedule(self, launch_plan: identifier_pb2.Identifier) -> ss.ScheduleState:
        """Stop a launch plan's schedule from starting executions (until `resume_schedule`)."""
        request = ss.PauseScheduleRequest(launch_plan_id=launch_plan)
        return self._call(self.schedules.PauseSchedule, request).schedule

    def resume_schedule(self, launch_plan: identifier_pb2.Identifier) -> ss.ScheduleState:
        """Let a paused schedule start executions again, from its next tick."""
        request = ss.ResumeScheduleRequest(launch_plan_id=launch_plan)
        return self._call(self.schedules.ResumeSchedule, request).schedule
