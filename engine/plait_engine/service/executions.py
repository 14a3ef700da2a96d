"""Starting, observing, stopping and deleting executions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from plaitidl.core.v1 import (
    dynamic_job_pb2,
    events_pb2,
    execution_pb2,
    identifier_pb2,
    interface_pb2,
    literals_pb2,
    tasks_pb2,
    workflow_pb2,
)

from plait_engine import compiler, ids
from plait_engine.blob import Payloads
from plait_engine.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from plait_engine.scheduler import Scheduler
from plait_engine.scheduler.ownership import describe_owner
from plait_engine.service.graphs import GraphLevel, GraphReader
from plait_engine.service.progress import Progress, ProgressWatch
from plait_engine.store import (
    Conflict,
    ExecutionFilter,
    ExecutionPayload,
    ExecutionRecord,
    LogEntry,
    NodeRecord,
    Store,
    TemplateKind,
)
from plait_engine.templates import TemplateSource, compile_resolving

_EP = execution_pb2
log = logging.getLogger("plait.executions")
_WATCH_PAGE = 5000
_MAX_LABEL_VALUE = 1024
_MAX_REQUEST_ID = 256
# How often a waiter looks at the store even without a local signal: another replica may be
# driving the execution.
_POLL = 1.0
# Log writers flush every 0.1 s: a followed stream waits this long after the end for the last
# lines an executor (or another replica) still held.
_LOGS_SETTLE = 0.3


@dataclass
class NodeData:
    """A node's resolved inputs and its outputs."""

    inputs: literals_pb2.LiteralMap
    outputs: literals_pb2.LiteralMap


class ExecutionsService:
    """The execution use cases of one engine replica.

    Args:
        store: The store.
        payloads: Large payloads.
        source: Registered templates.
        scheduler: This replica's scheduler (new executions start on it).
        limits: What the compiler accepts.
        max_inputs_bytes: Serialized size of an execution's inputs.
    """

    def __init__(
        self,
        store: Store,
        payloads: Payloads,
        source: TemplateSource,
        scheduler: Scheduler,
        limits: compiler.Limits,
        max_inputs_bytes: int = 32 << 20,
    ) -> None:
        self._max_inputs_bytes = max_inputs_bytes
        self._store = store
        self._payloads = payloads
        self._source = source
        self._scheduler = scheduler
        self._limits = limits
        self._graphs = GraphReader(store, payloads)

    # -- creating ----------------------------------------------------------------------
    async def _target(
        self,
        workflow_id: identifier_pb2.Identifier | None,
        launch_plan_id: identifier_pb2.Identifier | None,
    ) -> tuple[workflow_pb2.WorkflowTemplate, workflow_pb2.LaunchPlan | None]:
        lp: workflow_pb2.LaunchPlan | None = None
        if launch_plan_id is not None:
            found = await self._source.get(TemplateKind.LAUNCH_PLAN, launch_plan_id)
            if not isinstance(found, workflow_pb2.LaunchPlan):
                raise NotFound(f"launch plan {ids.id_key(launch_plan_id)} is not registered")
            lp = found
            workflow_id = lp.workflow_id
        if workflow_id is None:
            raise InvalidArgument(
                "a workflow_id or a launch_plan_id is required",
                [FieldViolation("target", "set workflow_id or launch_plan_id")],
            )
        wf = await self._source.get(TemplateKind.WORKFLOW, workflow_id)
        if not isinstance(wf, workflow_pb2.WorkflowTemplate):
            raise NotFound(f"workflow {ids.id_key(workflow_id)} is not registered")
        return wf, lp

    async def create(self, **kwargs: Any) -> ExecutionRecord:
        """`create_or_get` without telling whether it was created."""
        return (await self.create_or_get(**kwargs))[0]

    async def create_or_get(
        self,
        *,
        workflow_id: identifier_pb2.Identifier | None = None,
        launch_plan_id: identifier_pb2.Identifier | None = None,
        inputs: literals_pb2.LiteralMap | None = None,
        request_id: str = "",
        project: str = "",
        domain: str = "",
        name: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> tuple[ExecutionRecord, bool]:
        """Check the inputs, store a new execution owned by this replica and start it (see
        `ExecutionService.CreateExecution`); returns it and whether this call created it (a
        repeated `request_id` returns the first execution and False)."""
        self._check_request(inputs, project, domain, name, labels, request_id)
        wf, lp = await self._target(workflow_id, launch_plan_id)
        limits = self._limits
        closure = await compile_resolving(
            self._source, lambda r: compiler.compile_workflow(wf, r, limits)
        )
        resolved = compiler.resolve_execution_inputs(
            wf.interface,
            _defaults(wf, lp),
            inputs or literals_pb2.LiteralMap(),
            lp.fixed_inputs if lp is not None else None,
            limits=limits,
        )
        now = time.time()
        record = ExecutionRecord(
            eid=0,
            project=project or wf.id.project,
            domain=domain or wf.id.domain,
            name=name or ("x" + secrets.token_hex(8)),
            workflow_key=ids.id_key(wf.id),
            launch_plan_key=ids.id_key(lp.id) if lp is not None else "",
            phase=_EP.EXECUTION_PHASE_QUEUED,
            created_at=now,
            updated_at=now,
            request_id=request_id,
            labels=dict(labels or {}),
            owner=self._scheduler.owner,
            epoch=1,
            lease_expires_at=now + self._scheduler.config.lease,
        )
        key = ("executions", record.project, record.domain, record.name)
        payload = await asyncio.to_thread(
            lambda: ExecutionPayload(
                closure=self._payloads.pack_now(closure.SerializeToString(), *key, "closure"),
                workflow=wf.SerializeToString(),
                inputs=self._payloads.pack_now(resolved.SerializeToString(), *key, "inputs"),
            )
        )
        try:
            stored, created = await self._store.create_execution(
                record, payload, _queued_event(record, now)
            )
        except Conflict:
            raise AlreadyExists(f"execution {record.key} already exists") from None
        if created:
            log.info("execution %s started: workflow %s", stored.key, stored.workflow_key)
            self._scheduler.adopt(stored)
        return stored, created

    def _check_request(
        self,
        inputs: literals_pb2.LiteralMap | None,
        project: str,
        domain: str,
        name: str,
        labels: Mapping[str, str] | None,
        request_id: str,
    ) -> None:
        """Refuse, naming the fields, what the engine could not store, send or read back."""
        size = inputs.ByteSize() if inputs is not None else 0
        if size > self._max_inputs_bytes:
            raise ResourceExhausted(
                f"inputs take {size} bytes, over the limit of {self._max_inputs_bytes}",
                [
                    FieldViolation(
                        "inputs",
                        f"{size} bytes, over the limit of {self._max_inputs_bytes}; pass large "
                        "values as files or offloaded literals (DataService)",
                    )
                ],
            )
        violations = list(compiler.execution_name_problems(name))
        scope = identifier_pb2.Identifier(project=project, domain=domain, name="x", version="v")
        violations += [
            FieldViolation(f, d) for f, d in compiler.identifier_problems(scope, "execution")
        ]
        violations += compiler.labels_problems(labels or {}, max_value=_MAX_LABEL_VALUE)
        if len(request_id) > _MAX_REQUEST_ID:
            violations.append(FieldViolation("request_id", f"at most {_MAX_REQUEST_ID} characters"))
        if violations:
            raise InvalidArgument(f"{violations[0].field}: {violations[0].description}", violations)

    async def resume(self, rec: ExecutionRecord) -> ExecutionRecord:
        """Drive an unfinished execution here (the embedded runner's ``--resume``).

        Raises:
            FailedPrecondition: Another live engine process drives it.
        """
        if rec.terminal or self._scheduler.run_of(rec.eid) is not None:
            return rec
        if await self._scheduler.claim(rec) is None:
            raise FailedPrecondition(
                f"execution {rec.name} is being run by {describe_owner(rec)}; wait for it, or "
                "stop that process first"
            )
        return rec

    # -- reading -----------------------------------------------------------------------
    async def get(self, project: str, domain: str, name: str) -> ExecutionRecord:
        """The stored state of an execution.

        Raises:
            NotFound: There is no such execution.
        """
        project, domain = project or ids.DEFAULT_PROJECT, domain or ids.DEFAULT_DOMAIN
        rec = await self._store.get_execution(project, domain, name)
        if rec is None:
            raise NotFound(f"execution {project}/{domain}/{name} does not exist")
        return rec

    async def by_eid(self, eid: int) -> ExecutionRecord:
        """The stored state of an execution by its store id."""
        rec = await self._store.get_execution_by_eid(eid)
        if rec is None:
            raise NotFound(f"execution {eid} does not exist")
        return rec

    def counts(self, rec: ExecutionRecord) -> dict[str, int]:
        """Node counts: live when this replica drives it, as of the last commit otherwise."""
        run = self._scheduler.run_of(rec.eid)
        return dict(run.counts) if run is not None else dict(rec.counts)

    async def list_executions(
        self, where: ExecutionFilter, limit: int, before_eid: int = 0
    ) -> list[ExecutionRecord]:
        """Executions matching `where`, newest first (keyset paging by eid)."""
        return await self._store.list_executions(where, limit, before_eid)

    async def payload(self, rec: ExecutionRecord) -> ExecutionPayload:
        """The execution's closure, workflow, inputs and outputs (blobs resolved)."""
        p = await self._store.get_payload(rec.eid)
        if p is None:
            raise NotFound(f"execution {rec.name} does not exist")
        load = self._payloads.load
        return ExecutionPayload(
            await load(p.closure), p.workflow, await load(p.inputs), await load(p.outputs)
        )

    async def data(
        self, rec: ExecutionRecord
    ) -> tuple[literals_pb2.LiteralMap, literals_pb2.LiteralMap]:
        """The inputs (defaults applied) and the outputs (empty until SUCCEEDED)."""
        p = await self.payload(rec)
        return (
            literals_pb2.LiteralMap.FromString(p.inputs),
            literals_pb2.LiteralMap.FromString(p.outputs),
        )

    async def node(self, rec: ExecutionRecord, node_id: str) -> NodeRecord:
        """One node's record.

        Raises:
            NotFound: The execution has no such node.
        """
        node = await self._store.get_node(rec.eid, node_id)
        if node is None:
            raise NotFound(f"execution {rec.name} has no node {node_id!r}")
        return node

    async def nodes(
        self,
        rec: ExecutionRecord,
        parent_id: str | None,
        limit: int,
        after: str = "",
        *,
        phases: tuple[int, ...] = (),
        name: str | None = None,
    ) -> list[NodeRecord]:
        """Node records in id order: children of `parent_id` ("" for the top level) unless it
        is None, in `phases` unless it is empty, named `name` unless it is None."""
        return await self._store.list_nodes(
            rec.eid, parent_id, limit, after, phases=phases, name=name
        )

    async def graph(self, rec: ExecutionRecord, parent_id: str, threshold: int) -> GraphLevel:
        """One level of the execution's graph (see `ExecutionService.GetNodeGraph`).

        Raises:
            NotFound: The execution defines no node `parent_id`.
        """
        return await self._graphs.graph(rec, parent_id, threshold)

    async def count(self, rec: ExecutionRecord, node_id: str = "") -> dict[int, int]:
        """Nodes per phase: every node, or the nodes inside `node_id` at every depth.

        Raises:
            NotFound: The execution has no node `node_id`.
        """
        if node_id:
            await self.node(rec, node_id)
        return await self._store.count_nodes(rec.eid, node_id)

    async def node_data(self, rec: ExecutionRecord, node_id: str) -> NodeData:
        """A node's resolved inputs and its outputs."""
        node = await self.node(rec, node_id)
        load = self._payloads.load
        return NodeData(
            literals_pb2.LiteralMap.FromString(await load(node.inputs)),
            literals_pb2.LiteralMap.FromString(await load(node.outputs)),
        )

    async def dynamic_spec(
        self, rec: ExecutionRecord, node_id: str
    ) -> tuple[dynamic_job_pb2.DynamicJobSpec, tasks_pb2.TaskTemplate | None]:
        """The compiled spec a node yielded and its generator task.

        Raises:
            NotFound: The node yielded no spec.
        """
        node = await self.node(rec, node_id)
        spec = await self._store.get_dynamic_spec(rec.eid, node_id)
        if spec is None:
            raise NotFound(f"node {node_id!r} of execution {rec.name} yielded no dynamic spec")
        closure = dynamic_job_pb2.DynamicJobSpec.FromString(
            await self._payloads.load_spec(spec.closure)
        )
        generator = None
        if node.task_key:
            found = await self._source.get(TemplateKind.TASK, _key_id(node.task_key))
            generator = found if isinstance(found, tasks_pb2.TaskTemplate) else None
            if generator is None:
                generator = await self._generator_in_closures(rec, node.task_key)
        return closure, generator

    async def _generator_in_closures(
        self, rec: ExecutionRecord, key: str
    ) -> tasks_pb2.TaskTemplate | None:
        payload = await self.payload(rec)
        bodies = [payload.closure]
        bodies += [
            await self._payloads.load_spec(s.closure)
            for s in await self._store.dynamic_specs(rec.eid)
        ]
        for body in bodies:
            for task in dynamic_job_pb2.DynamicJobSpec.FromString(body).tasks:
                if ids.id_key(task.id) == key:
                    return task
        return None

    # -- changing ----------------------------------------------------------------------
    async def terminate(self, rec: ExecutionRecord, reason: str) -> ExecutionRecord:
        """Ask for the execution to be aborted (durable: the owner applies it, whichever
        replica that is); no-op when it has ended."""
        if rec.terminal:
            return rec
        reason = reason or "terminated by request"
        updated = await self._store.request_termination(rec.eid, reason)
        if updated is None:
            raise NotFound(f"execution {rec.name} does not exist")
        if self._scheduler.run_of(rec.eid) is not None:
            self._scheduler.terminate(rec.eid, reason)
        return updated

    async def delete(self, rec: ExecutionRecord) -> None:
        """Delete a finished execution with its nodes, events and payloads.

        Raises:
            FailedPrecondition: It has not finished (terminate it first).
        """
        try:
            deleted = await self._store.delete_execution(rec.eid)
        except Conflict:
            raise FailedPrecondition(
                f"execution {rec.name} has not finished: terminate it before deleting it"
            ) from None
        if not deleted:
            raise NotFound(f"execution {rec.name} does not exist")
        await asyncio.to_thread(self._payloads.delete_execution, rec.project, rec.domain, rec.name)

    # -- logs --------------------------------------------------------------------------
    async def logs(
        self,
        rec: ExecutionRecord,
        node_id: str = "",
        attempt: int = 0,
        *,
        after: int = 0,
        follow: bool = False,
    ) -> AsyncIterator[list[tuple[int, LogEntry]]]:
        """Batches of captured output, oldest first; with `follow`, new lines as they come
        until the execution (or the node) has ended and everything was sent."""
        ev = self._scheduler.watch(rec.eid)
        try:
            while True:
                ev.clear()
                rows = await self._store.logs(rec.eid, node_id, attempt, after, _WATCH_PAGE)
                if rows:
                    after = rows[-1][0]
                    yield rows
                    if len(rows) == _WATCH_PAGE:
                        continue
                if not follow or await self._ended(rec, node_id):
                    if follow:  # lines an executor still buffers are written within this
                        await asyncio.sleep(_LOGS_SETTLE)
                    # One last look: lines written just before the end.
                    rows = await self._store.logs(rec.eid, node_id, attempt, after, _WATCH_PAGE)
                    if rows:
                        after = rows[-1][0]
                        yield rows
                        continue
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ev.wait(), _POLL)
        finally:
            self._scheduler.unwatch(rec.eid, ev)

    async def _ended(self, rec: ExecutionRecord, node_id: str) -> bool:
        current = await self._store.get_execution_by_eid(rec.eid)
        if current is None or current.terminal:
            return True
        if not node_id:
            return False
        node = await self._store.get_node(rec.eid, node_id)
        return node is not None and node.phase in ids.TERMINAL_NODE_PHASES

    # -- waiting -----------------------------------------------------------------------
    async def wait(
        self,
        rec: ExecutionRecord,
        timeout: float | None = None,
        *,
        on_change: Callable[[ExecutionRecord], None] | None = None,
    ) -> ExecutionRecord:
        """Wait until the execution is terminal; return its final record.

        `on_change` is called with the current record after each commit that touched it.
        """
        ev = self._scheduler.watch(rec.eid)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                ev.clear()
                current = await self.by_eid(rec.eid)
                if on_change is not None:
                    on_change(current)
                if current.terminal:
                    return current
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"execution {rec.name} did not finish in time")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ev.wait(), min(remaining or _POLL, _POLL))
        finally:
            self._scheduler.unwatch(rec.eid, ev)

    async def watch(
        self,
        rec: ExecutionRecord,
        after_seq: int,
        *,
        timeout: float | None = None,
        node_id: str = "",
    ) -> AsyncIterator[list[events_pb2.ExecutionEvent]]:
        """Yield batches of committed events after `after_seq` (only the node `node_id`'s
        when it is set) until the execution ends."""
        ev = self._scheduler.watch(rec.eid)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            seq = after_seq
            while True:
                ev.clear()
                rows, ended = await self._events_after(rec, seq, node_id)
                if rows:
                    seq = rows[-1][0]
                    yield [events_pb2.ExecutionEvent.FromString(b) for _, b in rows]
                    if len(rows) == _WATCH_PAGE:
                        continue
                if ended(seq):
                    return
                if rows:
                    continue
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"execution {rec.name} did not finish in time")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ev.wait(), min(remaining or _POLL, _POLL))
        finally:
            self._scheduler.unwatch(rec.eid, ev)

    def watch_progress(self, rec: ExecutionRecord, after_seq: int) -> AsyncIterator[Progress]:
        """Coalesced views of the execution's progress until it ends, without its events (see
        `WatchExecutionRequest.counts_only`)."""
        return ProgressWatch(self._store, self._scheduler, self.counts).follow(rec, after_seq)

    async def _events_after(
        self, rec: ExecutionRecord, seq: int, node_id: str
    ) -> tuple[list[tuple[int, bytes]], Callable[[int], bool]]:
        """The next events, and whether the stream has ended after the last one sent."""
        if node_id:
            # The state is read first: when it is terminal, every event it covers is read next.
            before = await self._store.get_execution_by_eid(rec.eid)
            rows = await self._store.node_events(rec.eid, node_id, seq, _WATCH_PAGE)
            done = before is None or before.terminal
            return rows, lambda _: done
        rows = await self._store.events(rec.eid, seq, _WATCH_PAGE)
        current = await self._store.get_execution_by_eid(rec.eid)
        return rows, lambda last: current is None or (current.terminal and current.last_seq <= last)


def _defaults(
    wf: workflow_pb2.WorkflowTemplate, lp: workflow_pb2.LaunchPlan | None
) -> interface_pb2.ParameterMap:
    """The workflow's defaults, overridden and extended by the launch plan's."""
    defaults = interface_pb2.ParameterMap()
    defaults.CopyFrom(wf.defaults)
    if lp is not None:
        by_name = {p.var.name: i for i, p in enumerate(defaults.parameters)}
        for p in lp.default_inputs.parameters:
            if p.var.name in by_name:
                defaults.parameters[by_name[p.var.name]].CopyFrom(p)
            else:
                defaults.parameters.add().CopyFrom(p)
    return defaults


def _queued_event(record: ExecutionRecord, now: float) -> bytes:
    first = events_pb2.ExecutionEvent(
        execution=events_pb2.ExecutionTransition(phase=_EP.EXECUTION_PHASE_QUEUED)
    )
    first.execution_id.project = record.project
    first.execution_id.domain = record.domain
    first.execution_id.name = record.name
    first.occurred_at.FromNanoseconds(int(now * 1e9))
    return first.SerializeToString()


def _key_id(key: str) -> identifier_pb2.Identifier:
    found = ids.key_to_id(key)
    assert found is not None
    return found
