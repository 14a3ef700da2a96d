"""`ExecutionService` over `Engine`: records mapped to protos, watch streams, paging."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc.aio
from google.protobuf import timestamp_pb2
from plaitidl.core.v1 import (
    dynamic_job_pb2,
    errors_pb2,
    identifier_pb2,
    tasks_pb2,
)
from plaitidl.service.v1 import execution_service_pb2 as es
from plaitidl.service.v1 import execution_service_pb2_grpc as es_grpc

from plait_engine.api.registry import next_token, page, require
from plait_engine.compiler import id_key
from plait_engine.core import TERMINAL, Engine
from plait_engine.errors import NotFound
from plait_engine.store import ExecutionRecord, NodeRecord

Context = grpc.aio.ServicerContext[Any, Any]

# How long TerminateExecution waits for the abort to commit before answering.
_TERMINATE_WAIT = 5.0


def key_to_id(key: str, resource_type: int = 0) -> identifier_pb2.Identifier | None:
    """The identifier of a ``project/domain/name/version`` key (names may hold slashes)."""
    if not key:
        return None
    project, domain, rest = key.split("/", 2)
    name, _, version = rest.rpartition("/")
    return identifier_pb2.Identifier(
        resource_type=resource_type,  # type: ignore[arg-type]
        project=project,
        domain=domain,
        name=name,
        version=version,
    )


def _ts(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def node_counts(counts: dict[str, int]) -> es.NodeCounts:
    """`Engine.counts` as a proto."""
    return es.NodeCounts(**{k: counts.get(k, 0) for k in es.NodeCounts.DESCRIPTOR.fields_by_name})


def execution_proto(engine: Engine, rec: ExecutionRecord) -> es.Execution:
    """An execution record as the API shows it."""
    out = es.Execution(
        phase=rec.phase,  # type: ignore[arg-type]
        created_at=_ts(rec.created_at),
        updated_at=_ts(rec.updated_at),
        nodes=node_counts(engine.counts(rec)),
        labels=rec.labels,
        last_sequence=rec.last_seq,
    )
    out.id.project, out.id.domain, out.id.name = rec.project, rec.domain, rec.name
    wf = key_to_id(rec.workflow_key, identifier_pb2.RESOURCE_TYPE_WORKFLOW)
    if wf is not None:
        out.workflow_id.CopyFrom(wf)
    lp = key_to_id(rec.launch_plan_key, identifier_pb2.RESOURCE_TYPE_LAUNCH_PLAN)
    if lp is not None:
        out.launch_plan_id.CopyFrom(lp)
    if rec.error:
        out.error.CopyFrom(errors_pb2.ExecutionError.FromString(rec.error))
    return out


def node_proto(rec: NodeRecord, eid: identifier_pb2.ExecutionIdentifier) -> es.NodeExecution:
    """A node record as the API shows it."""
    out = es.NodeExecution(
        phase=rec.phase,  # type: ignore[arg-type]
        attempt=rec.attempt,
        cache_status=rec.cache_status,  # type: ignore[arg-type]
        parent_node_id=rec.parent_id,
        is_dynamic=rec.is_dynamic,
        created_at=_ts(rec.created_at),
        updated_at=_ts(rec.updated_at),
    )
    out.id.node_id = rec.node_id
    out.id.execution_id.CopyFrom(eid)
    if rec.error:
        out.error.CopyFrom(errors_pb2.ExecutionError.FromString(rec.error))
    task = key_to_id(rec.task_key, identifier_pb2.RESOURCE_TYPE_TASK)
    if task is not None:
        out.task_id.CopyFrom(task)
    return out


class ExecutionServicer(es_grpc.ExecutionServiceServicer):
    """Starts, observes and stops executions.

    Args:
        engine: The engine that runs them.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def _execution(self, request: Any, field: str = "id") -> ExecutionRecord:
        require(request.HasField(field), field, "an execution id")
        eid: identifier_pb2.ExecutionIdentifier = getattr(request, field)
        require(eid.name, f"{field}.name", "an execution name")
        return self._engine.get_execution(eid.project, eid.domain, eid.name)

    def _node(self, request: Any) -> tuple[ExecutionRecord, NodeRecord]:
        require(request.HasField("id"), "id", "a node execution id")
        require(request.id.node_id, "id.node_id", "a node id")
        require(request.id.HasField("execution_id"), "id.execution_id", "an execution id")
        require(request.id.execution_id.name, "id.execution_id.name", "an execution name")
        rec = self._execution(request.id, "execution_id")
        node = self._engine.store.get_node(rec.eid, request.id.node_id)
        if node is None:
            raise NotFound(f"execution {rec.name} has no node {request.id.node_id!r}")
        return rec, node

    async def CreateExecution(  # noqa: N802
        self, request: es.CreateExecutionRequest, context: Context
    ) -> es.CreateExecutionResponse:
        """See `ExecutionService.CreateExecution`."""
        target = request.WhichOneof("target")
        require(target, "target", "a workflow_id or a launch_plan_id")
        ident = request.workflow_id if target == "workflow_id" else request.launch_plan_id
        require(ident.name, f"{target}.name", "a name")
        rec = self._engine.create_execution(
            workflow_id=ident if target == "workflow_id" else None,
            launch_plan_id=ident if target == "launch_plan_id" else None,
            inputs=request.inputs,
            request_id=request.request_id,
            project=request.project,
            domain=request.domain,
            name=request.name,
            labels=dict(request.labels),
        )
        return es.CreateExecutionResponse(execution=execution_proto(self._engine, rec))

    async def GetExecution(  # noqa: N802
        self, request: es.GetExecutionRequest, context: Context
    ) -> es.GetExecutionResponse:
        """See `ExecutionService.GetExecution`."""
        rec = self._execution(request)
        return es.GetExecutionResponse(execution=execution_proto(self._engine, rec))

    async def ListExecutions(  # noqa: N802
        self, request: es.ListExecutionsRequest, context: Context
    ) -> es.ListExecutionsResponse:
        """See `ExecutionService.ListExecutions`."""
        limit, offset = page(request.page_size, request.page_token)
        rows = self._engine.store.list_executions(
            request.project or "default",
            request.domain or "development",
            [int(p) for p in request.phases],
            limit + 1,
            offset,
        )
        return es.ListExecutionsResponse(
            executions=[execution_proto(self._engine, r) for r in rows[:limit]],
            next_page_token=next_token(offset, limit, len(rows)),
        )

    async def TerminateExecution(  # noqa: N802
        self, request: es.TerminateExecutionRequest, context: Context
    ) -> es.TerminateExecutionResponse:
        """See `ExecutionService.TerminateExecution`."""
        rec = self._execution(request)
        if rec.phase not in TERMINAL:
            self._engine.terminate(rec, request.reason or "terminated by a client")

            async def settle() -> None:
                async for _ in self._engine.watch(rec, rec.last_seq):
                    pass

            # The abort commits on the scheduler's next pass: answer with the final state
            # when it comes quickly, and with the state at hand otherwise.
            try:
                await asyncio.wait_for(settle(), _TERMINATE_WAIT)
            except TimeoutError:
                pass
            rec = self._engine.get_execution(rec.project, rec.domain, rec.name)
        return es.TerminateExecutionResponse(execution=execution_proto(self._engine, rec))

    async def WatchExecution(  # noqa: N802
        self, request: es.WatchExecutionRequest, context: Context
    ) -> AsyncIterator[es.WatchExecutionResponse]:
        """See `ExecutionService.WatchExecution`."""
        rec = self._execution(request)
        async for batch in self._engine.watch(rec, request.after_sequence):
            yield es.WatchExecutionResponse(
                events=batch, nodes=node_counts(self._engine.counts(rec))
            )

    async def GetExecutionData(  # noqa: N802
        self, request: es.GetExecutionDataRequest, context: Context
    ) -> es.GetExecutionDataResponse:
        """See `ExecutionService.GetExecutionData`."""
        rec = self._execution(request)
        return es.GetExecutionDataResponse(
            inputs=self._engine.execution_inputs(rec),
            outputs=self._engine.execution_outputs(rec),
        )

    async def ListNodeExecutions(  # noqa: N802
        self, request: es.ListNodeExecutionsRequest, context: Context
    ) -> es.ListNodeExecutionsResponse:
        """See `ExecutionService.ListNodeExecutions`."""
        rec = self._execution(request)
        limit, offset = page(request.page_size, request.page_token)
        rows = self._engine.store.list_nodes(
            rec.eid, request.parent_node_id or None, limit + 1, offset
        )
        return es.ListNodeExecutionsResponse(
            node_executions=[node_proto(n, request.id) for n in rows[:limit]],
            next_page_token=next_token(offset, limit, len(rows)),
        )

    async def GetNodeExecutionData(  # noqa: N802
        self, request: es.GetNodeExecutionDataRequest, context: Context
    ) -> es.GetNodeExecutionDataResponse:
        """See `ExecutionService.GetNodeExecutionData`."""
        rec, node = self._node(request)
        inputs, outputs = self._engine.node_data(rec, node.node_id)
        return es.GetNodeExecutionDataResponse(inputs=inputs, outputs=outputs)

    async def GetDynamicSpec(  # noqa: N802
        self, request: es.GetDynamicSpecRequest, context: Context
    ) -> es.GetDynamicSpecResponse:
        """See `ExecutionService.GetDynamicSpec`."""
        rec, node = self._node(request)
        specs = self._engine.store.dynamic_specs(rec.eid)
        if node.node_id not in specs:
            raise NotFound(f"node {node.node_id!r} of execution {rec.name} yielded no spec")
        unpack = self._engine.payloads.unpack
        spec = dynamic_job_pb2.DynamicJobSpec.FromString(unpack(specs[node.node_id][0]))
        out = es.GetDynamicSpecResponse(spec=spec, subworkflows=spec.subworkflows)
        generator = _find_task(
            node.task_key, [unpack(rec.closure), *(unpack(body) for body, _ in specs.values())]
        )
        if generator is not None:
            out.generator.CopyFrom(generator)
        return out


def _find_task(key: str, closures: list[bytes]) -> tasks_pb2.TaskTemplate | None:
    for body in closures:
        for task in dynamic_job_pb2.DynamicJobSpec.FromString(body).tasks:
            if id_key(task.id) == key:
                return task
    return None
