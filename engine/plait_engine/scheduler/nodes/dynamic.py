"""Dynamic nodes: a generator's spec is compiled against its interface, stored once, and run
as the node's sub-graph. Compiling may need registered templates, fetched from the store, so
specs wait in `pending` until the loop compiles them between steps."""

from __future__ import annotations

from google.protobuf.message import Message
from plaitidl.core.v1 import (
    dynamic_job_pb2,
    errors_pb2,
    events_pb2,
    execution_pb2,
    literals_pb2,
    workflow_pb2,
)

from plait_engine import compiler, ids
from plait_engine.errors import FieldViolation, InvalidArgument
from plait_engine.scheduler.nodes.base import Graph
from plait_engine.scheduler.state import NodeExec
from plait_engine.store import DynamicSpecRecord, TemplateKind
from plait_engine.templates import KnownResolver, Template, TemplateSource, compile_resolving

_EP = execution_pb2
Verdict = dynamic_job_pb2.DynamicJobSpec | InvalidArgument
# Specs with more nodes than this compile on a thread: the loop keeps serving heartbeats.
_THREAD_NODES = 2000


class DynamicHandler:
    """Compiles yielded specs and starts them.

    Args:
        graph: The graph walker.
        source: Registered templates (a spec may reference ones it does not embed).
    """

    def __init__(self, graph: Graph, source: TemplateSource | None) -> None:
        self._g = graph
        self._source = source
        self.pending: list[tuple[NodeExec, dynamic_job_pb2.DynamicJobSpec]] = []

    def on_spec(self, n: NodeExec, spec: dynamic_job_pb2.DynamicJobSpec) -> None:
        """A generator yielded a spec: compile it on the loop's next step."""
        self.pending.append((n, spec))

    async def compile_pending(self) -> list[tuple[NodeExec, Verdict]]:
        """Compile every pending spec; the loop then calls `start` with each verdict."""
        jobs, self.pending = self.pending, []
        out: list[tuple[NodeExec, Verdict]] = []
        for n, spec in jobs:
            if not n.live:
                continue
            try:
                out.append((n, await self._compile(n, spec)))
            except InvalidArgument as exc:
                out.append((n, exc))
        return out

    async def _compile(
        self, n: NodeExec, spec: dynamic_job_pb2.DynamicJobSpec
    ) -> dynamic_job_pb2.DynamicJobSpec:
        assert n.task is not None
        generator = n.task
        depth = n.frame.depth + 1
        await self._check_embedded(spec)
        templates = n.frame.templates
        overlay: dict[tuple[TemplateKind, str], Template] = {}
        for kind, table in (
            (TemplateKind.TASK, templates.tasks),
            (TemplateKind.WORKFLOW, templates.workflows),
            (TemplateKind.LAUNCH_PLAN, templates.launch_plans),
        ):
            overlay.update({(kind, k): v for k, v in table.items()})
        limits = self._g.config.limits

        def compile_once(resolver: KnownResolver) -> dynamic_job_pb2.DynamicJobSpec:
            return compiler.compile_dynamic(
                spec, generator, resolver, limits, depth=depth, in_place=True
            )

        if self._source is None:
            return compile_once(KnownResolver({}, overlay))
        return await compile_resolving(
            self._source, compile_once, overlay, on_thread=len(spec.nodes) > _THREAD_NODES
        )

    async def _check_embedded(self, spec: dynamic_job_pb2.DynamicJobSpec) -> None:
        """Registered versions are immutable: a spec may embed one only with the same
        content."""
        if self._source is None:
            return
        items: list[tuple[str, TemplateKind, Message]] = [
            *((f"tasks[{i}]", TemplateKind.TASK, t) for i, t in enumerate(spec.tasks)),
            *((f"subworkflows[{i}]", TemplateKind.WORKFLOW, w)
              for i, w in enumerate(spec.subworkflows)),
            *((f"launch_plans[{i}]", TemplateKind.LAUNCH_PLAN, lp)
              for i, lp in enumerate(spec.launch_plans)),
        ]  # fmt: skip
        violations: list[FieldViolation] = []
        for field, kind, embedded in items:
            id_ = embedded.id  # type: ignore[attr-defined]
            if not id_.version:
                continue
            registered = await self._source.get_recent(kind, id_)
            if registered is not None and not _same_content(embedded, registered):
                violations.append(
                    FieldViolation(
                        field,
                        f"{ids.id_key(id_)} is registered with different content; registered "
                        "versions are immutable: embed a new version",
                    )
                )
        if violations:
            raise InvalidArgument(violations[0].description, violations)

    def start(self, n: NodeExec, verdict: dynamic_job_pb2.DynamicJobSpec | InvalidArgument) -> None:
        """Run a compiled spec as the node's sub-graph, or fail the node with the problems."""
        if isinstance(verdict, InvalidArgument):
            details = "\n".join(f"{v.field}: {v.description}" for v in verdict.violations)
            self._g.fail(
                n,
                errors_pb2.ExecutionError(
                    code="InvalidDynamicSpec",
                    message=f"node {n.path!r} yielded an invalid spec: {verdict.message}",
                    kind=errors_pb2.ExecutionError.KIND_USER,
                    recoverable=False,
                    details=details,
                ),
            )
            return
        depth = n.frame.depth + 1
        self._g.journal.spec(n, verdict.SerializeToString(), depth)
        self._run(n, verdict, depth)

    def resume(self, n: NodeExec, spec: DynamicSpecRecord) -> None:
        """Run the spec the generator yielded before a restart (stored, already compiled)."""
        closure = dynamic_job_pb2.DynamicJobSpec.FromString(spec.closure)
        self._run(n, closure, spec.depth, resumed=True)

    def _run(
        self,
        n: NodeExec,
        closure: dynamic_job_pb2.DynamicJobSpec,
        depth: int,
        *,
        resumed: bool = False,
    ) -> None:
        run = n.frame.run
        n.is_dynamic = True
        if not resumed:  # a resumed node's DYNAMIC_RUNNING is recorded already
            info = events_pb2.DynamicInfo(
                node_count=len(closure.nodes), depth=depth, spec_uri=f"plait://{run.key}/{n.path}"
            )
            self._g.journal.node(n, _EP.NODE_PHASE_DYNAMIC_RUNNING, dynamic=info)
        wanted = closure.min_successes
        self._g.start_frame(
            n,
            n.inputs or literals_pb2.LiteralMap(),
            n.frame.templates.merged(closure),
            depth,
            closure.nodes,
            closure.outputs,
            tolerance=len(closure.nodes) - wanted if wanted else 0,
        )


def _same_content(embedded: Message, registered: Template) -> bool:
    """Equal but for the defaults registration fills into identifiers."""
    clone = type(embedded)()
    clone.CopyFrom(embedded)
    clone.id.CopyFrom(registered.id)  # type: ignore[attr-defined]
    if isinstance(clone, workflow_pb2.LaunchPlan):
        wid = clone.workflow_id
        wid.project = wid.project or ids.DEFAULT_PROJECT
        wid.domain = wid.domain or ids.DEFAULT_DOMAIN
    return clone == registered


__all__ = ["DynamicHandler"]
