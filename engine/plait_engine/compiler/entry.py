"""The compiler's entry points: a registered workflow, a yielded dynamic spec, a node's outputs."""

from __future__ import annotations

from plaitidl.core.v1 import dynamic_job_pb2, identifier_pb2, tasks_pb2, types_pb2, workflow_pb2

from plait_engine.compiler.limits import DEFAULT_LIMITS, Limits, Resolver
from plait_engine.compiler.scope import Graph, variables
from plait_engine.compiler.walker import GraphCompiler
from plait_engine.ids import id_key

__all__ = ["compile_dynamic", "compile_workflow", "node_output_types"]


def compile_workflow(
    wf: workflow_pb2.WorkflowTemplate, resolver: Resolver, limits: Limits = DEFAULT_LIMITS
) -> dynamic_job_pb2.DynamicJobSpec:
    """Check a workflow template and build its closure.

    Args:
        wf: The workflow.
        resolver: Looks up registered tasks, workflows and launch plans.
        limits: Bounds to enforce.

    Returns:
        The closure: `nodes`/`outputs` are the workflow's; `tasks`, `subworkflows` and
        `launch_plans` hold every template the workflow reaches, each once.

    Raises:
        InvalidArgument: With every violation found (at most `MAX_VIOLATIONS` listed); the
            message summarizes the first.
    """
    c = GraphCompiler(resolver, limits, None)
    key = id_key(wf.id)
    c.stack.append(key)
    c.compiled.add(key)
    c.workflow(wf, Graph({}, "workflow inputs"))
    c.report.finish(f"workflow {key}")
    return c.templates.closure(wf.nodes, wf.outputs)


def compile_dynamic(
    spec: dynamic_job_pb2.DynamicJobSpec,
    generator: tasks_pb2.TaskTemplate,
    resolver: Resolver,
    limits: Limits = DEFAULT_LIMITS,
    *,
    depth: int = 1,
    in_place: bool = False,
) -> dynamic_job_pb2.DynamicJobSpec:
    """Check a spec yielded by `generator` against the generator's interface.

    Promises to "start-node" read the generator's inputs; `outputs` must bind every output of
    the generator. Templates are looked up in the spec first, then in the resolver.

    Args:
        spec: The spec the generator returned.
        generator: The task that returned it.
        resolver: Looks up registered templates.
        limits: Bounds to enforce.
        depth: How deeply this spec is nested in dynamic specs (1 for a generator run directly
            by a workflow).
        in_place: Make `spec` itself the closure and return it, instead of a copy (the caller
            gives the spec up: a spec of a million nodes is not copied). It is changed only
            when it compiles.

    Returns:
        The closure (see `compile_workflow`), holding only the templates the spec reaches.

    Raises:
        InvalidArgument: With every violation found (at most `MAX_VIOLATIONS` listed); the
            message summarizes the first.
    """
    subject = f"dynamic spec of generator {id_key(generator.id)}"
    c = GraphCompiler(resolver, limits, spec)
    if depth > limits.max_depth:
        c.report.err(
            None,
            "nodes",
            f"dynamic nesting depth {depth} is over the limit of {limits.max_depth}; "
            "does the recursion have a base case?",
        )
        c.report.finish(subject)
    g = Graph(variables(generator.interface.inputs), "generator inputs")
    c.graph(g, spec.nodes, spec.outputs, variables(generator.interface.outputs))
    if spec.min_successes > len(spec.nodes):
        c.report.err(
            None,
            "min_successes",
            f"min_successes {spec.min_successes} is more than the {len(spec.nodes)} nodes",
        )
    c.report.finish(subject)
    if in_place:
        c.templates.closure_in_place(spec)
        return spec
    return c.templates.closure(spec.nodes, spec.outputs, spec.min_successes)


class _NoResolver:
    def get_task(self, id: identifier_pb2.Identifier) -> tasks_pb2.TaskTemplate | None:
        return None

    def get_workflow(self, id: identifier_pb2.Identifier) -> workflow_pb2.WorkflowTemplate | None:
        return None

    def get_launch_plan(self, id: identifier_pb2.Identifier) -> workflow_pb2.LaunchPlan | None:
        return None


def node_output_types(
    node: workflow_pb2.Node, closure: dynamic_job_pb2.DynamicJobSpec
) -> dict[str, types_pb2.LiteralType]:
    """The output types of a node of a compiled closure.

    Task and workflow nodes have their target's outputs; array nodes lists of them (``T |
    none`` elements when failures are tolerated); branch nodes the outputs every case shares.

    Args:
        node: A node of the closure (or of one of its subworkflows).
        closure: The closure returned by a compile function.

    Returns:
        Output name to type.

    Raises:
        InvalidArgument: When the node's target is not in the closure.
    """
    c = GraphCompiler(_NoResolver(), DEFAULT_LIMITS, closure, compile_subworkflows=False)
    plan = c.plan(Graph({}, "inputs"), node, "node")
    c.report.finish(f"node {node.id!r}")
    return {n: t.pb for n, t in (plan.outputs or {}).items()}
