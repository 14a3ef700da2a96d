"""Dynamic job specs (flytekit's ``futures.pb``) and error documents (``error.pb``).

flytekit serializes a dynamic task's templates again at run time, under the generator's own
version, and their content differs from what was registered (another environment, another
serialization). plait refuses different content under a registered version, so every template
a spec embeds is re-versioned by its content: ``<version>+<digest>``, references rewritten to
match. Identical templates get identical versions, so a recursion (the merge sort) settles on
one version per template.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from flyteidl.core import dynamic_job_pb2 as fdj
from flyteidl.core import errors_pb2 as fe
from flyteidl.core import execution_pb2 as fx
from plaitidl.core.v1 import dynamic_job_pb2 as pdj
from plaitidl.core.v1 import errors_pb2 as pe
from plaitidl.core.v1 import identifier_pb2 as pid
from plaitidl.core.v1 import tasks_pb2 as ptk
from plaitidl.core.v1 import workflow_pb2 as pw

from plait.flyte._context import Context, check_fields
from plait.flyte._graph import Graph, node_to_plait, workflow_interface, workflow_to_plait
from plait.flyte._ids import Options, Scope, base_version, content_version
from plait.flyte._literals import bindings_to_plait
from plait.flyte._tasks import task_to_plait
from plait.flyte._types import types_of


def _key(i: pid.Identifier) -> str:
    return f"{i.resource_type}/{i.project}/{i.domain}/{i.name}/{i.version}"


def _walk(nodes: Iterable[pw.Node]) -> Iterator[pw.Node]:
    for n in nodes:
        yield n
        kind = n.WhichOneof("target")
        if kind == "branch_node":
            bn = n.branch_node
            yield from _walk([b.then_node for b in (bn.case, *bn.other)])
            if bn.HasField("else_node"):
                yield from _walk([bn.else_node])
        elif kind == "array_node":
            yield from _walk([n.array_node.node])


def _references(nodes: Iterable[pw.Node]) -> Iterator[pid.Identifier]:
    for n in _walk(nodes):
        kind = n.WhichOneof("target")
        if kind == "task_node":
            yield n.task_node.task_id
        elif kind == "workflow_node" and n.workflow_node.HasField("sub_workflow_id"):
            yield n.workflow_node.sub_workflow_id


def _digest(msg: ptk.TaskTemplate | pw.WorkflowTemplate) -> str:
    version = msg.id.version
    msg.id.version = base_version(version)
    try:
        return hashlib.sha256(msg.SerializeToString(deterministic=True)).hexdigest()
    finally:
        msg.id.version = version


def reversion(spec: pdj.DynamicJobSpec) -> None:
    """Give every embedded template a content version and point the references at it."""
    renamed: dict[str, str] = {}
    for t in spec.tasks:
        renamed[_key(t.id)] = content_version(t.id.version, _digest(t))
        t.id.version = renamed[_key(t.id)]
    workflows = {_key(w.id): w for w in spec.subworkflows}
    visiting: set[str] = set()

    def settle(key: str) -> None:
        # Subworkflows reference each other: a workflow's digest covers the new versions of
        # what it references, so those are settled first.
        if key in renamed or key in visiting:
            return
        visiting.add(key)
        wf = workflows[key]
        for ref in list(_references(wf.nodes)):
            if _key(ref) in workflows:
                settle(_key(ref))
            if _key(ref) in renamed:
                ref.version = renamed[_key(ref)]
        renamed[key] = content_version(wf.id.version, _digest(wf))
        wf.id.version = renamed[key]

    for key in list(workflows):
        settle(key)
    for ref in _references(spec.nodes):
        if _key(ref) in renamed:
            ref.version = renamed[_key(ref)]


def dynamic_to_plait(
    spec: fdj.DynamicJobSpec, generator: ptk.TaskTemplate, opts: Options, ctx: Context
) -> pdj.DynamicJobSpec:
    """flytekit's futures as a plait spec, its outputs typed by the generator's interface."""
    scope = Scope()
    out = pdj.DynamicJobSpec()
    for i, t in enumerate(spec.tasks):
        with ctx.at(f"task {t.id.name!r}"):
            pt_ = task_to_plait(t, opts, ctx, f"tasks[{i}]")
        scope.tasks[t.id.name] = pt_.interface
        out.tasks.append(pt_)
    for i, w in enumerate(spec.subworkflows):
        scope.workflows[w.id.name] = workflow_interface(w, ctx, f"subworkflows[{i}].interface")
    g = Graph(ctx, opts, scope)
    for i, w in enumerate(spec.subworkflows):
        with ctx.at(f"workflow {w.id.name!r}"):
            out.subworkflows.append(workflow_to_plait(w, g, f"subworkflows[{i}]"))
    for i, n in enumerate(spec.nodes):
        out.nodes.append(node_to_plait(n, g, f"nodes[{i}]"))
    out.outputs.extend(
        bindings_to_plait(spec.outputs, types_of(generator.interface.outputs), ctx, "outputs")
    )
    if spec.min_successes < 0:
        ctx.refuse("min_successes", "is negative")
    out.min_successes = max(spec.min_successes, 0)
    check_fields(ctx, spec, "", {"nodes", "min_successes", "outputs", "tasks", "subworkflows"})
    reversion(out)
    return out


_ORIGIN = {
    fx.ExecutionError.USER: pe.ExecutionError.KIND_USER,
    fx.ExecutionError.SYSTEM: pe.ExecutionError.KIND_SYSTEM,
}


def _split_trace(text: str) -> tuple[str, str]:
    """flytekit's ``Trace: ... Message: ...`` as (message, trace)."""
    head, sep, tail = text.partition("\nMessage:\n")
    if not sep or not head.startswith("Trace:"):
        return text.strip(), ""
    trace = "\n".join(line.removeprefix("    ") for line in head[len("Trace:") :].splitlines())
    message = " ".join(line.strip() for line in tail.strip().splitlines())
    return message, trace.strip()


def error_to_plait(doc: fe.ErrorDocument) -> pe.ExecutionError:
    """A Flyte error document as a plait error; the trace goes to `details`.

    Flyte's own rules are kept: only errors marked RECOVERABLE (a ``FlyteRecoverableException``,
    or a system error) are retried.
    """
    e = doc.error
    message, details = _split_trace(e.message)
    extra = [f"worker: {e.worker}"] if e.worker else []
    if e.HasField("timestamp"):
        extra.append(f"raised at {e.timestamp.ToJsonString()}")
    return pe.ExecutionError(
        code=e.code,
        message=message,
        kind=_ORIGIN.get(e.origin, pe.ExecutionError.KIND_UNSPECIFIED),
        recoverable=e.kind == fe.ContainerError.RECOVERABLE,
        details="\n".join([details, *extra]).strip(),
    )
