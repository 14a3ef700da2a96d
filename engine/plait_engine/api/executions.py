"""`ExecutionService` over the execution use cases: records mapped to protos, watch streams,
paging."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc.aio
from google.protobuf import timestamp_pb2
from plaitidl.core.v1 import errors_pb2, identifier_pb2, literals_pb2
from plaitidl.service.v1 import execution_service_pb2 as es
from plaitidl.service.v1 import execution_service_pb2_grpc as es_grpc

from plait_engine import ids
from plait_engine.api.requests import (
    decode_int_token,
    decode_token,
    encode_token,
    page_size,
    require,
)
from plait_engine.errors import FieldViolation, InvalidArgument
from plait_engine.service import ExecutionsService
from plait_engine.service.data import DataService
from plait_engine.service.graphs import GraphItem
from plait_engine.service.progress import Progress
from plait_engine.store import ExecutionFilter, ExecutionRecord, LogEntry, NodeRecord

Context = grpc.aio.ServicerContext[Any, Any]

# How long TerminateExecution waits for the abort to commit before answering.
_TERMINATE_WAIT = 5.0


def _ts(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def node_counts(counts: dict[str, int]) -> es.NodeCounts:
    """Node counts as a proto."""
    return es.NodeCounts(**{k: counts.get(k, 0) for k in es.NodeCounts.DESCRIPTOR.fields_by_name})


def progress_response(view: Progress) -> es.WatchExecutionResponse:
    """A view of an execution's progress as a counts-only `WatchExecution` response."""
    rec = view.record
    out = es.WatchExecutionResponse(
        nodes=node_counts(view.counts),
        sequence=rec.last_seq,
        running=[es.NameCount(name=n, count=c) for n, c in view.running],
        waiting=view.waiting,
    )
    if view.phase_changed:
        # The execution's transition as its state tells it: no event is read to send it.
        event = out.events.add(sequence=rec.last_seq, occurred_at=_ts(rec.updated_at))
        event.execution_id.project = rec.project
        event.execution_id.domain = rec.domain
        event.execution_id.name = rec.name
        event.execution.phase = rec.phase  # type: ignore[assignment]
        if rec.error:
            event.execution.error.ParseFromString(rec.error)
    return out


def execution_proto(rec: ExecutionRecord, counts: dict[str, int]) -> es.Execution:
    """An execution record as the API shows it."""
    out = es.Execution(
        phase=rec.phase,  # type: ignore[arg-type]
        created_at=_ts(rec.created_at),
        updated_at=_ts(rec.updated_at),
        nodes=node_counts(counts),
        labels=rec.labels,
        last_sequence=rec.last_seq,
        request_id=rec.request_id,
    )
    out.id.project, out.id.domain, out.id.name = rec.project, rec.domain, rec.name
    wf = ids.key_to_id(rec.workflow_key, identifier_pb2.RESOURCE_TYPE_WORKFLOW)
    if wf is not None:
        out.workflow_id.CopyFrom(wf)
    lp = ids.key_to_id(rec.launch_plan_key, identifier_pb2.RESOURCE_TYPE_LAUNCH_PLAN)
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
        name=rec.name,
        detail=rec.detail,
    )
    out.id.node_id = rec.node_id
    out.id.execution_id.CopyFrom(eid)
    if rec.error:
        out.error.CopyFrom(errors_pb2.ExecutionError.FromString(rec.error))
    task = ids.key_to_id(rec.task_key, identifier_pb2.RESOURCE_TYPE_TASK)
    if task is not None:
        out.task_id.CopyFrom(task)
    return out


def log_line(e: LogEntry) -> es.LogLine:
    """A stored log entry as the API shows it."""
    return es.LogLine(
        node_id=e.node_id,
        attempt=e.attempt,
        stream=e.stream,  # type: ignore[arg-type]
        time=_ts(e.time),
        text=e.text,
    )


def _new_execution_id(
    request: es.CreateExecutionRequest, target: identifier_pb2.Identifier
) -> identifier_pb2.ExecutionIdentifier:
    """The id an execution being created will have (as far as the request says)."""
    return identifier_pb2.ExecutionIdentifier(
        project=request.project or target.project, domain=request.domain or target.domain,
        name=request.name,
    )  # fmt: skip


class ExecutionServicer(es_grpc.ExecutionServiceServicer):
    """Starts, observes and stops executions.

    Args:
        executions: The execution use cases.
        data: Offloads values above the inline limit from data responses (None: inline).
        max_message_bytes: The largest message the server sends: list pages stay below it.
    """

    def __init__(
        self,
        executions: ExecutionsService,
        data: DataService | None = None,
        max_message_bytes: int = 64 << 20,
    ) -> None:
        self._x = executions
        self._data = data
        # A page is cut short (with a next token) before it outgrows this.
        self._page_budget = max(max_message_bytes // 2, 64 * 1024)

    async def _offloaded(
        self, rec: ExecutionRecord, *maps: literals_pb2.LiteralMap
    ) -> list[literals_pb2.LiteralMap]:
        if self._data is None:
            return list(maps)
        execution = (rec.project, rec.domain, rec.name)
        return [await self._data.offload_large(execution, m) for m in maps]

    async def _execution(self, request: Any, field: str = "id") -> ExecutionRecord:
        require(request.HasField(field), field, "an execution id")
        eid: identifier_pb2.ExecutionIdentifier = getattr(request, field)
        require(eid.name, f"{field}.name", "an execution name")
        return await self._x.get(eid.project, eid.domain, eid.name)

    async def _node_request(self, request: Any) -> tuple[ExecutionRecord, str]:
        require(request.HasField("id"), "id", "a node execution id")
        require(request.id.node_id, "id.node_id", "a node id")
        require(request.id.HasField("execution_id"), "id.execution_id", "an execution id")
        require(request.id.execution_id.name, "id.execution_id.name", "an execution name")
        return await self._execution(request.id, "execution_id"), request.id.node_id

    def _proto(self, rec: ExecutionRecord) -> es.Execution:
        return execution_proto(rec, self._x.counts(rec))

    async def CreateExecution(  # noqa: N802
        self, request: es.CreateExecutionRequest, context: Context
    ) -> es.CreateExecutionResponse:
        """See `ExecutionService.CreateExecution`."""
        target = request.WhichOneof("target")
        require(target, "target", "a workflow_id or a launch_plan_id")
        ident = request.workflow_id if target == "workflow_id" else request.launch_plan_id
        require(ident.name, f"{target}.name", "a name")
        if self._data is not None:
            await self._data.check_inputs(_new_execution_id(request, ident), request.inputs)
        rec, created = await self._x.create_or_get(
            workflow_id=ident if target == "workflow_id" else None,
            launch_plan_id=ident if target == "launch_plan_id" else None,
            inputs=request.inputs,
            request_id=request.request_id,
            project=request.project,
            domain=request.domain,
            name=request.name,
            labels=dict(request.labels),
        )
        return es.CreateExecutionResponse(execution=self._proto(rec), created=created)

    async def GetExecution(  # noqa: N802
        self, request: es.GetExecutionRequest, context: Context
    ) -> es.GetExecutionResponse:
        """See `ExecutionService.GetExecution`."""
        return es.GetExecutionResponse(execution=self._proto(await self._execution(request)))

    async def ListExecutions(  # noqa: N802
        self, request: es.ListExecutionsRequest, context: Context
    ) -> es.ListExecutionsResponse:
        """See `ExecutionService.ListExecutions`."""
        limit = page_size(request.page_size)
        before = decode_int_token("x", request.page_token)
        where = ExecutionFilter(
            project=request.project or ids.DEFAULT_PROJECT,
            domain=request.domain or ids.DEFAULT_DOMAIN,
            phases=tuple(int(p) for p in request.phases),
            workflow=(
                f"{request.project or ids.DEFAULT_PROJECT}/{request.domain or ids.DEFAULT_DOMAIN}/"
                f"{request.workflow_name}/"
                if request.workflow_name
                else ""
            ),
            labels=tuple(sorted(request.labels.items())),
            request_id=request.request_id,
        )
        rows = await self._x.list_executions(where, limit + 1, before)
        out = es.ListExecutionsResponse()
        used = 0
        for r in rows[:limit]:
            item = self._proto(r)
            used += item.ByteSize() + 8
            if used > self._page_budget and out.executions:
                break  # the rest on the next page
            out.executions.append(item)
        if len(out.executions) < len(rows):
            out.next_page_token = encode_token("x", str(rows[len(out.executions) - 1].eid))
        return out

    async def TerminateExecution(  # noqa: N802
        self, request: es.TerminateExecutionRequest, context: Context
    ) -> es.TerminateExecutionResponse:
        """See `ExecutionService.TerminateExecution`."""
        rec = await self._execution(request)
        if not rec.terminal:
            rec = await self._x.terminate(rec, request.reason or "terminated by a client")
            try:
                # The abort commits on the owner's next pass: answer with the final state when
                # it comes quickly, and with the state at hand otherwise.
                rec = await self._x.wait(rec, _TERMINATE_WAIT)
            except TimeoutError:
                rec = await self._x.by_eid(rec.eid)
        return es.TerminateExecutionResponse(execution=self._proto(rec))

    async def WatchExecution(  # noqa: N802
        self, request: es.WatchExecutionRequest, context: Context
    ) -> AsyncIterator[es.WatchExecutionResponse]:
        """See `ExecutionService.WatchExecution`."""
        if request.counts_only and request.node_id:
            raise InvalidArgument(
                "node_id cannot be combined with counts_only",
                [
                    FieldViolation(
                        "node_id", "must be empty with counts_only, which sends no node events"
                    )
                ],
            )
        rec = await self._execution(request)
        if request.counts_only:
            async for view in self._x.watch_progress(rec, request.after_sequence):
                yield progress_response(view)
            return
        async for batch in self._x.watch(rec, request.after_sequence, node_id=request.node_id):
            current = await self._x.by_eid(rec.eid)
            yield es.WatchExecutionResponse(
                events=batch,
                nodes=node_counts(self._x.counts(current)),
                sequence=batch[-1].sequence,
            )

    async def GetExecutionData(  # noqa: N802
        self, request: es.GetExecutionDataRequest, context: Context
    ) -> es.GetExecutionDataResponse:
        """See `ExecutionService.GetExecutionData`."""
        rec = await self._execution(request)
        inputs, outputs = await self._offloaded(rec, *await self._x.data(rec))
        return es.GetExecutionDataResponse(inputs=inputs, outputs=outputs)

    async def ListNodeExecutions(  # noqa: N802
        self, request: es.ListNodeExecutionsRequest, context: Context
    ) -> es.ListNodeExecutionsResponse:
        """See `ExecutionService.ListNodeExecutions`."""
        rec = await self._execution(request)
        limit = page_size(request.page_size)
        after = decode_token("n", request.page_token)
        parent = request.parent_node_id or ("" if request.top_level_only else None)
        rows = await self._x.nodes(
            rec,
            parent,
            limit + 1,
            after,
            phases=tuple(int(p) for p in request.phases),
            name=request.name or None,
        )
        out = es.ListNodeExecutionsResponse()
        used = 0
        for n in rows[:limit]:
            item = node_proto(n, request.id)
            used += item.ByteSize() + 8
            if used > self._page_budget and out.node_executions:
                break
            out.node_executions.append(item)
        if len(out.node_executions) < len(rows):
            out.next_page_token = encode_token("n", rows[len(out.node_executions) - 1].node_id)
        return out

    async def GetNodeExecutionData(  # noqa: N802
        self, request: es.GetNodeExecutionDataRequest, context: Context
    ) -> es.GetNodeExecutionDataResponse:
        """See `ExecutionService.GetNodeExecutionData`."""
        rec, node_id = await self._node_request(request)
        data = await self._x.node_data(rec, node_id)
        inputs, outputs = await self._offloaded(rec, data.inputs, data.outputs)
        return es.GetNodeExecutionDataResponse(inputs=inputs, outputs=outputs)

    async def DeleteExecution(  # noqa: N802
        self, request: es.DeleteExecutionRequest, context: Context
    ) -> es.DeleteExecutionResponse:
        """See `ExecutionService.DeleteExecution`."""
        await self._x.delete(await self._execution(request))
        return es.DeleteExecutionResponse()

    async def StreamLogs(  # noqa: N802
        self, request: es.StreamLogsRequest, context: Context
    ) -> AsyncIterator[es.StreamLogsResponse]:
        """See `ExecutionService.StreamLogs`."""
        rec = await self._execution(request)
        async for rows in self._x.logs(
            rec,
            request.node_id,
            request.attempt,
            after=request.after_position,
            follow=request.follow,
        ):
            yield es.StreamLogsResponse(lines=[log_line(e) for _, e in rows], position=rows[-1][0])

    async def GetDynamicSpec(  # noqa: N802
        self, request: es.GetDynamicSpecRequest, context: Context
    ) -> es.GetDynamicSpecResponse:
        """See `ExecutionService.GetDynamicSpec`."""
        rec, node_id = await self._node_request(request)
        spec, generator = await self._x.dynamic_spec(rec, node_id)
        out = es.GetDynamicSpecResponse(spec=spec, subworkflows=spec.subworkflows)
        if generator is not None:
            out.generator.CopyFrom(generator)
        return out

    async def GetNodeGraph(  # noqa: N802
        self, request: es.GetNodeGraphRequest, context: Context
    ) -> es.GetNodeGraphResponse:
        """See `ExecutionService.GetNodeGraph`."""
        rec = await self._execution(request)
        level = await self._x.graph(rec, request.parent_node_id, request.group_threshold)
        out = es.GetNodeGraphResponse(
            parent_kind=level.parent_kind,  # type: ignore[arg-type]
            node_count=level.node_count,
            note=level.note,
        )
        if level.parent is not None:
            out.parent.CopyFrom(node_proto(level.parent, request.id))
        out.nodes.extend(graph_node(item, request.id) for item in level.items)
        return out

    async def CountNodeExecutions(  # noqa: N802
        self, request: es.CountNodeExecutionsRequest, context: Context
    ) -> es.CountNodeExecutionsResponse:
        """See `ExecutionService.CountNodeExecutions`."""
        found = await self._x.count(await self._execution(request), request.node_id)
        return es.CountNodeExecutionsResponse(phases=phase_counts(found), total=sum(found.values()))


def phase_counts(counts: dict[int, int]) -> list[es.PhaseCount]:
    """Counts per phase as protos, in phase order."""
    return [es.PhaseCount(phase=p, count=c) for p, c in sorted(counts.items()) if c]  # type: ignore[arg-type]


def graph_node(item: GraphItem, eid: identifier_pb2.ExecutionIdentifier) -> es.GraphNode:
    """A node (or group) of a graph level as the API shows it."""
    out = es.GraphNode(
        id=item.id,
        name=item.name,
        kind=item.kind,  # type: ignore[arg-type]
        group_size=item.group_size,
        group_phases=phase_counts(item.group_phases),
        upstream_ids=item.upstream_ids,
        condition=item.condition,
        has_children=item.has_children,
        inner_phases=phase_counts(item.inner_phases),
    )
    if item.record is not None:
        out.execution.CopyFrom(node_proto(item.record, eid))
    if item.target is not None:
        out.target_id.CopyFrom(item.target)
    return out
