"""The executions and templates of a local data dir, without a server: what the CLI reads when
no ``--remote`` is given.

`LocalEngine` offers the operations of `plait.Client` that the CLI uses, with the same
arguments and the same protos, over the engine's service layer on the data dir's store. It
starts nothing: it never adopts or runs an execution, except to abort one that no live
process drives any more (`terminate`). Errors are the `Client`'s (`NotFoundError`, ...).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from plaitidl.core.v1 import identifier_pb2, tasks_pb2, workflow_pb2
from plaitidl.service.v1 import execution_service_pb2 as es
from plaitidl.service.v1 import registry_service_pb2 as rs
from plaitidl.service.v1 import schedule_service_pb2 as ss

from plait import _runtime
from plait._errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    RpcError,
)

T = TypeVar("T")
TemplateKindName = Literal["task", "workflow", "launch_plan"]
Template = tasks_pb2.TaskTemplate | workflow_pb2.WorkflowTemplate | workflow_pb2.LaunchPlan
ExecutionRef = es.Execution | identifier_pb2.ExecutionIdentifier | str
_PAGE = 1000
# How long `terminate` waits for an orphaned execution's abort to commit (seconds).
_ABORT_WAIT = 10.0


def execution_id(ref: Any) -> identifier_pb2.ExecutionIdentifier:
    """The id of a handle, an `Execution`, an id, or ``[project/domain/]name``."""
    if isinstance(ref, str):
        project, domain, name = ["", "", *ref.split("/")][-3:]
        return identifier_pb2.ExecutionIdentifier(project=project, domain=domain, name=name)
    if isinstance(ref, identifier_pb2.ExecutionIdentifier):
        return ref
    found: identifier_pb2.ExecutionIdentifier = ref.id
    return found


def _rpc_error(exc: Exception) -> RpcError:
    from plait_engine.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

    if isinstance(exc, NotFound):
        return NotFoundError("NOT_FOUND", exc.message)
    if isinstance(exc, InvalidArgument):
        violations = [(v.field, v.description) for v in exc.violations]
        return InvalidArgumentError("INVALID_ARGUMENT", exc.message, violations)
    if isinstance(exc, AlreadyExists):
        return AlreadyExistsError("ALREADY_EXISTS", exc.message)
    if isinstance(exc, FailedPrecondition):
        return RpcError("FAILED_PRECONDITION", exc.message)
    return RpcError("INTERNAL", str(exc))


class LocalEngine:
    """The same operations as `plait.Client`, on the data dir of the embedded engine.

    Args:
        data_dir: The data dir (`plait run`'s, by default ``$PLAIT_DATA_DIR`` or ``~/.plait``).
    """

    def __init__(self, data_dir: Path) -> None:
        from plait_engine.app import build_engine

        from plait._embedded import embedded_config

        self.address = str(data_dir)
        self._closed = False
        self._loop = asyncio.new_event_loop()
        # The in-process runner is there for `terminate` only; nothing is started until then.
        self._engine = build_engine(
            embedded_config(data_dir),
            task_runner=_runtime.execute,
            runner_checks_outputs=True,
        )

    def close(self) -> None:
        """Close the store."""
        if not self._closed:
            self._closed = True
            self._loop.run_until_complete(self._engine.store.close())
        self._loop.close()

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, coro: Awaitable[T]) -> T:
        from plait_engine.errors import EngineError

        try:
            return self._loop.run_until_complete(coro)
        except EngineError as exc:
            raise _rpc_error(exc) from None

    def _iterate(self, agen: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    item = self._run(agen.__anext__())
                except StopAsyncIteration:
                    return
                yield item
        finally:
            self._loop.run_until_complete(agen.aclose())  # type: ignore[attr-defined]

    async def _record(self, ref: ExecutionRef) -> Any:
        eid = execution_id(ref)
        return await self._engine.executions.get(eid.project, eid.domain, eid.name)

    def _proto(self, rec: Any) -> es.Execution:
        from plait_engine.api.executions import execution_proto

        return execution_proto(rec, self._engine.executions.counts(rec))

    # -- executions ----------------------------------------------------------------------
    def get(self, execution: ExecutionRef) -> es.Execution:
        """The state of an execution."""
        return self._proto(self._run(self._record(execution)))

    def list_executions(
        self,
        project: str = "",
        domain: str = "",
        phases: Sequence[int] = (),
        *,
        limit: int | None = None,
    ) -> list[es.Execution]:
        """Executions, newest first."""
        from plait_engine import ids
        from plait_engine.store import ExecutionFilter

        where = ExecutionFilter(
            project=project or ids.DEFAULT_PROJECT,
            domain=domain or ids.DEFAULT_DOMAIN,
            phases=tuple(phases),
        )
        rows = self._run(self._engine.executions.list_executions(where, limit or 1 << 30))
        return [self._proto(r) for r in rows]

    def node_executions(
        self, execution: ExecutionRef, parent_node_id: str = ""
    ) -> list[es.NodeExecution]:
        """Every node of an execution (or the children of `parent_node_id`), by id."""
        from plait_engine.api.executions import node_proto

        rec = self._run(self._record(execution))
        eid = identifier_pb2.ExecutionIdentifier(
            project=rec.project, domain=rec.domain, name=rec.name
        )
        out: list[es.NodeExecution] = []
        after = ""
        while True:
            rows = self._run(
                self._engine.executions.nodes(rec, parent_node_id or None, _PAGE, after)
            )
            out += [node_proto(r, eid) for r in rows]
            if len(rows) < _PAGE:
                return out
            after = rows[-1].node_id

    def data(self, execution: ExecutionRef) -> es.GetExecutionDataResponse:
        """The execution's inputs and (once succeeded) outputs."""
        rec = self._run(self._record(execution))
        inputs, outputs = self._run(self._engine.executions.data(rec))
        return es.GetExecutionDataResponse(inputs=inputs, outputs=outputs)

    def watch(
        self, execution: ExecutionRef, after_sequence: int = 0, *, counts_only: bool = False
    ) -> Iterator[es.WatchExecutionResponse]:
        """The execution's events after `after_sequence`, in batches, until it ends; with
        `counts_only`, its coalesced progress instead (see `Client.watch`)."""
        from plait_engine.api.executions import node_counts, progress_response

        executions = self._engine.executions
        rec = self._run(self._record(execution))
        if counts_only:
            for view in self._iterate(executions.watch_progress(rec, after_sequence)):
                yield progress_response(view)
            return
        for batch in self._iterate(executions.watch(rec, after_sequence)):
            current = self._run(executions.by_eid(rec.eid))
            yield es.WatchExecutionResponse(
                events=batch,
                nodes=node_counts(executions.counts(current)),
                sequence=batch[-1].sequence,
            )

    def logs(
        self,
        execution: ExecutionRef,
        node_id: str = "",
        attempt: int = 0,
        *,
        follow: bool = False,
        after: int = 0,
    ) -> Iterator[es.StreamLogsResponse]:
        """Captured output of the execution's attempts (see `Client.logs`)."""
        from plait_engine.api.executions import log_line

        rec = self._run(self._record(execution))
        agen = self._engine.executions.logs(rec, node_id, attempt, after=after, follow=follow)
        for rows in self._iterate(agen):
            yield es.StreamLogsResponse(lines=[log_line(e) for _, e in rows], position=rows[-1][0])

    def terminate(self, execution: ExecutionRef, reason: str = "") -> es.Execution:
        """Abort a running execution (no-op when it has ended); returns its state.

        A live process driving it (a ``plait run``) applies the request within a second; an
        execution nobody drives any more (an interrupted run) is aborted here.
        """
        return self._proto(self._run(self._terminate(execution, reason)))

    async def _terminate(self, execution: ExecutionRef, reason: str) -> Any:
        from plait_engine.scheduler.ownership import owner_is_dead

        executions = self._engine.executions
        rec = await executions.terminate(await self._record(execution), reason)
        orphaned = not rec.owner or owner_is_dead(rec.owner) or rec.lease_expires_at < time.time()
        if rec.terminal or not orphaned:
            return rec
        await self._engine.start()
        try:
            await executions.resume(rec)
            return await executions.wait(rec, _ABORT_WAIT)
        except TimeoutError:
            return await executions.by_eid(rec.eid)
        finally:
            self._closed = True
            await self._engine.stop()  # closes the store too

    def delete(self, execution: ExecutionRef) -> None:
        """Delete a finished execution with its nodes, events, logs and data."""
        rec = self._run(self._record(execution))
        self._run(self._engine.executions.delete(rec))

    # -- templates -----------------------------------------------------------------------
    def register_templates(self, request: rs.RegisterRequest) -> rs.RegisterResponse:
        """Register the templates of a `RegisterRequest` (see `Client.register_templates`)."""
        result = self._run(
            self._engine.registry.register(request.tasks, request.workflows, request.launch_plans)
        )
        return rs.RegisterResponse(created=result.created, unchanged=result.unchanged)

    def list_templates(
        self,
        kind: TemplateKindName,
        project: str = "",
        domain: str = "",
        name: str = "",
        *,
        limit: int = 100,
    ) -> list[Template]:
        """Registered templates of a kind, most recent first."""
        rows = self._run(
            self._engine.registry.list_templates(_kind(kind), project, domain, name, limit, 0)
        )
        return list(rows)

    def get_template(self, kind: TemplateKindName, id: identifier_pb2.Identifier) -> Template:
        """One registered template (no version: the newest)."""
        found: Template = self._run(self._engine.registry.get(_kind(kind), id))
        return found

    def get_workflow(self, id: identifier_pb2.Identifier) -> workflow_pb2.WorkflowTemplate:
        """A registered workflow (no version: the newest)."""
        found = self.get_template("workflow", id)
        assert isinstance(found, workflow_pb2.WorkflowTemplate)
        return found

    def get_launch_plan(self, id: identifier_pb2.Identifier) -> workflow_pb2.LaunchPlan:
        """A registered launch plan (no version: the newest)."""
        found = self.get_template("launch_plan", id)
        assert isinstance(found, workflow_pb2.LaunchPlan)
        return found

    # -- schedules -----------------------------------------------------------------------
    def list_schedules(self, project: str = "", domain: str = "") -> list[ss.ScheduleState]:
        """The schedules of registered launch plans (they tick only on a server)."""
        from plait_engine.api.schedules import schedule_proto

        views = self._run(self._engine.schedules.list(project, domain))
        return [schedule_proto(v) for v in views]

    def pause_schedule(self, launch_plan: identifier_pb2.Identifier) -> ss.ScheduleState:
        """Pause a launch plan's schedule."""
        return self._set_paused(launch_plan, True)

    def resume_schedule(self, launch_plan: identifier_pb2.Identifier) -> ss.ScheduleState:
        """Resume a paused schedule."""
        return self._set_paused(launch_plan, False)

    def _set_paused(self, lp: identifier_pb2.Identifier, paused: bool) -> ss.ScheduleState:
        from plait_engine.api.schedules import schedule_proto

        return schedule_proto(self._run(self._engine.schedules.set_paused(lp, paused)))


def _kind(kind: TemplateKindName) -> Any:
    from plait_engine.store import TemplateKind

    return {
        "task": TemplateKind.TASK,
        "workflow": TemplateKind.WORKFLOW,
        "launch_plan": TemplateKind.LAUNCH_PLAN,
    }[kind]


__all__ = ["LocalEngine", "Template", "TemplateKindName", "execution_id"]
