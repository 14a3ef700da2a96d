"""Nodes, branches, array nodes, workflows and launch plans: flyteidl → plaitidl."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flyteidl.admin import launch_plan_pb2 as fa
from flyteidl.core import condition_pb2 as fc
from flyteidl.core import identifier_pb2 as fid
from flyteidl.core import interface_pb2 as fi
from flyteidl.core import literals_pb2 as fl
from flyteidl.core import workflow_pb2 as fw
from plaitidl.core.v1 import condition_pb2 as pc
from plaitidl.core.v1 import identifier_pb2 as pid
from plaitidl.core.v1 import interface_pb2 as pi
from plaitidl.core.v1 import tasks_pb2 as ptk
from plaitidl.core.v1 import types_pb2 as pt
from plaitidl.core.v1 import workflow_pb2 as pw

from plait.flyte._context import Context, check_fields
from plait.flyte._ids import Options, Scope, id_to_plait
from plait.flyte._literals import (
    START_NODE,
    bindings_to_plait,
    copy_primitive,
    literal_to_plait,
)
from plait.flyte._types import interface_to_plait, natural, type_to_plait, types_of

_OPS = {
    fc.ComparisonExpression.EQ: pc.ComparisonExpression.OPERATOR_EQ,
    fc.ComparisonExpression.NEQ: pc.ComparisonExpression.OPERATOR_NEQ,
    fc.ComparisonExpression.GT: pc.ComparisonExpression.OPERATOR_GT,
    fc.ComparisonExpression.GTE: pc.ComparisonExpression.OPERATOR_GTE,
    fc.ComparisonExpression.LT: pc.ComparisonExpression.OPERATOR_LT,
    fc.ComparisonExpression.LTE: pc.ComparisonExpression.OPERATOR_LTE,
}
_LOGIC = {
    fc.ConjunctionExpression.AND: pc.ConjunctionExpression.LOGICAL_OPERATOR_AND,
    fc.ConjunctionExpression.OR: pc.ConjunctionExpression.LOGICAL_OPERATOR_OR,
}
_PLACEMENT = "only places the work on a Flyte cluster; a local process ignores it"
_NODE_TARGETS = {"task_node", "workflow_node", "branch_node", "gate_node", "array_node"}


@dataclass
class Graph:
    """What translating a graph needs: the context, the options and the interfaces in scope."""

    ctx: Context
    opts: Options
    scope: Scope

    def task_id(self, i: fid.Identifier, path: str) -> pid.Identifier:
        return id_to_plait(i, self.ctx, path, self.opts, pid.RESOURCE_TYPE_TASK)

    def workflow_id(self, i: fid.Identifier, path: str) -> pid.Identifier:
        return id_to_plait(i, self.ctx, path, self.opts, pid.RESOURCE_TYPE_WORKFLOW)

    def launch_plan_id(self, i: fid.Identifier, path: str) -> pid.Identifier:
        return id_to_plait(i, self.ctx, path, self.opts, pid.RESOURCE_TYPE_LAUNCH_PLAN)


def _retries(r: fl.RetryStrategy) -> ptk.RetryStrategy:
    return ptk.RetryStrategy(retries=r.retries)


def _node_metadata(md: fw.NodeMetadata, g: Graph, path: str) -> pw.NodeMetadata:
    out = pw.NodeMetadata(name=md.name)
    if md.HasField("timeout"):
        out.timeout.CopyFrom(md.timeout)
    if md.retries.retries:
        out.retries.CopyFrom(_retries(md.retries))
    if md.HasField("cacheable"):
        out.cache = md.cacheable
    out.cache_version = md.cache_version
    if md.HasField("interruptible"):
        out.interruptible = md.interruptible
    check_fields(
        g.ctx,
        md,
        path,
        {"name", "timeout", "retries", "cacheable", "cache_version", "interruptible"},
        refusals={
            "cache_serializable": "a per-node cache_serialize override has no plait equivalent",
            "config": "node config (plugin settings) has no plait equivalent",
        },
    )
    return out


def _operand(o: fc.Operand, g: Graph, path: str) -> pc.Operand:
    out = pc.Operand()
    kind = o.WhichOneof("val")
    if kind == "var":
        out.var = o.var
    elif kind == "primitive":
        copy_primitive(o.primitive, out.literal.scalar.primitive)
    elif kind == "scalar":
        out.literal.CopyFrom(
            literal_to_plait(fl.Literal(scalar=o.scalar), None, g.ctx, f"{path}.scalar")
        )
    else:
        g.ctx.refuse(path, "the operand has no value")
    return out


def _expression(e: fc.BooleanExpression, g: Graph, path: str) -> pc.BooleanExpression:
    out = pc.BooleanExpression()
    if e.WhichOneof("expr") == "conjunction":
        c = e.conjunction
        if c.operator not in _LOGIC:
            g.ctx.refuse(f"{path}.conjunction.operator", f"unknown operator {c.operator}")
        out.conjunction.operator = _LOGIC.get(c.operator, 0)  # type: ignore[arg-type]
        out.conjunction.left_expression.CopyFrom(
            _expression(c.left_expression, g, f"{path}.conjunction.left_expression")
        )
        out.conjunction.right_expression.CopyFrom(
            _expression(c.right_expression, g, f"{path}.conjunction.right_expression")
        )
    elif e.WhichOneof("expr") == "comparison":
        c2 = e.comparison
        p = f"{path}.comparison"
        if c2.operator not in _OPS:
            g.ctx.refuse(f"{p}.operator", f"unknown operator {c2.operator}")
        out.comparison.operator = _OPS.get(c2.operator, 0)  # type: ignore[arg-type]
        out.comparison.left_value.CopyFrom(_operand(c2.left_value, g, f"{p}.left_value"))
        out.comparison.right_value.CopyFrom(_operand(c2.right_value, g, f"{p}.right_value"))
    else:
        g.ctx.refuse(path, "the boolean expression is empty")
    return out


def _branch(bn: fw.BranchNode, g: Graph, path: str) -> pw.BranchNode:
    ie = bn.if_else
    p = f"{path}.if_else"
    out = pw.BranchNode()
    for i, blk in enumerate([ie.case, *ie.other]):
        bp = f"{p}.case" if i == 0 else f"{p}.other[{i - 1}]"
        target = out.case if i == 0 else out.other.add()
        target.condition.CopyFrom(_expression(blk.condition, g, f"{bp}.condition"))
        target.then_node.CopyFrom(node_to_plait(blk.then_node, g, f"{bp}.then_node"))
    default = ie.WhichOneof("default")
    if default == "else_node":
        out.else_node.CopyFrom(node_to_plait(ie.else_node, g, f"{p}.else_node"))
    elif default == "error":
        out.error.message = ie.error.message  # failed_node_id is the branch itself
    return out


def _array(an: fw.ArrayNode, outer_id: str, g: Graph, path: str) -> pw.ArrayNode:
    out = pw.ArrayNode()
    inner = an.node
    if inner.WhichOneof("target") != "task_node":
        g.ctx.refuse(
            f"{path}.node", "an array node over anything but a task has no plait equivalent"
        )
    else:
        out.node.CopyFrom(node_to_plait(inner, g, f"{path}.node"))
        # The inner id is Flyte's task name, often too long for a plait node id; plait ignores
        # the inner node's id and bindings, the outer node carries both.
        out.node.id = outer_id
    out.parallelism = an.parallelism
    crit = an.WhichOneof("success_criteria")
    if crit == "min_successes":
        out.min_successes = an.min_successes
    elif crit == "min_success_ratio":
        out.min_success_ratio = an.min_success_ratio
    out.broadcast_inputs.extend(an.bound_inputs)
    check_fields(
        g.ctx,
        an,
        path,
        {"node", "parallelism", "min_successes", "min_success_ratio", "bound_inputs"},
        notices={
            "execution_mode": "how Flyte stores array state; it changes nothing plait computes",
            "data_mode": "how Flyte passes array inputs; it changes nothing plait computes",
            "is_original_sub_node_interface": "a map task's per-element interface is derived "
            "from its pyflyte-map-execute arguments",
        },
        refusals={
            "run_all_sub_nodes": "running every element after the failure threshold "
            "has no plait equivalent"
        },
    )
    return out


def _target_inputs(n: fw.Node, g: Graph) -> Mapping[str, pt.LiteralType]:
    """Input types of what the node runs, so that its constants are read as those types."""
    kind = n.WhichOneof("target")
    iface: pi.TypedInterface | None = None
    if kind == "task_node":
        iface = g.scope.tasks.get(n.task_node.reference_id.name)
    elif kind == "workflow_node":
        ref = n.workflow_node
        name = ref.sub_workflow_ref.name or g.scope.launch_plans.get(ref.launchplan_ref.name, "")
        iface = g.scope.workflows.get(name)
    elif kind == "array_node" and n.array_node.node.WhichOneof("target") == "task_node":
        elem = g.scope.tasks.get(n.array_node.node.task_node.reference_id.name)
        if elem is not None:
            bound = set(n.array_node.bound_inputs)
            return {
                k: t if k in bound else pt.LiteralType(collection_type=t)
                for k, t in types_of(elem.inputs).items()
            }
    return {} if iface is None else types_of(iface.inputs)


def _task_node(tn: fw.TaskNode, g: Graph, path: str) -> pw.TaskNode:
    out = pw.TaskNode(task_id=g.task_id(tn.reference_id, f"{path}.reference_id"))
    check_fields(
        g.ctx,
        tn.overrides,
        f"{path}.overrides",
        set(),
        notices={"resources": _PLACEMENT, "extended_resources": _PLACEMENT},
        refusals={
            "container_image": "a per-node image override has no plait equivalent",
            "pod_template": "pod templates have no plait equivalent",
        },
    )
    return out


def node_to_plait(n: fw.Node, g: Graph, path: str) -> pw.Node:
    """A Flyte node (and the nodes it contains) as a plait node."""
    out = pw.Node(id=n.id)
    out.metadata.CopyFrom(_node_metadata(n.metadata, g, f"{path}.metadata"))
    out.inputs.extend(bindings_to_plait(n.inputs, _target_inputs(n, g), g.ctx, f"{path}.inputs"))
    out.upstream_node_ids.extend(u for u in n.upstream_node_ids if u not in ("", START_NODE))
    kind = n.WhichOneof("target")
    if kind == "task_node":
        out.task_node.CopyFrom(_task_node(n.task_node, g, f"{path}.task_node"))
    elif kind == "workflow_node":
        wn = n.workflow_node
        if wn.WhichOneof("reference") == "launchplan_ref":
            out.workflow_node.launch_plan_id.CopyFrom(
                g.launch_plan_id(wn.launchplan_ref, f"{path}.workflow_node.launchplan_ref")
            )
        else:
            out.workflow_node.sub_workflow_id.CopyFrom(
                g.workflow_id(wn.sub_workflow_ref, f"{path}.workflow_node.sub_workflow_ref")
            )
    elif kind == "branch_node":
        out.branch_node.CopyFrom(_branch(n.branch_node, g, f"{path}.branch_node"))
    elif kind == "array_node":
        out.array_node.CopyFrom(_array(n.array_node, n.id, g, f"{path}.array_node"))
    elif kind == "gate_node":
        g.ctx.refuse(
            f"{path}.gate_node", "gate nodes (approve, signal, sleep) have no plait equivalent"
        )
    else:
        g.ctx.refuse(path, "the node has no target")
    check_fields(
        g.ctx,
        n,
        path,
        {"id", "metadata", "inputs", "upstream_node_ids", *_NODE_TARGETS},
        refusals={"output_aliases": "output aliases have no plait equivalent"},
    )
    return out


def workflow_to_plait(
    wf: fw.WorkflowTemplate, g: Graph, path: str, description: str = ""
) -> pw.WorkflowTemplate:
    """A Flyte workflow template; its interface must already be in `g.scope`."""
    out = pw.WorkflowTemplate(description=description)
    out.id.CopyFrom(g.workflow_id(wf.id, f"{path}.id"))
    iface = interface_to_plait(wf.interface, g.ctx, f"{path}.interface")
    out.interface.CopyFrom(iface)
    for i, n in enumerate(wf.nodes):
        out.nodes.append(node_to_plait(n, g, f"{path}.nodes[{i}]"))
    out.outputs.extend(
        bindings_to_plait(wf.outputs, types_of(iface.outputs), g.ctx, f"{path}.outputs")
    )
    md = wf.metadata
    check_fields(
        g.ctx,
        md,
        f"{path}.metadata",
        set(),
        notices={"quality_of_service": _PLACEMENT},
        refusals={
            "on_failure": "FAIL_AFTER_EXECUTABLE_NODES_COMPLETE has no plait equivalent "
            "(a failing node aborts the rest)",
            "tags": "workflow tags have no plait equivalent",
        },
    )
    check_fields(
        g.ctx,
        wf.metadata_defaults,
        f"{path}.metadata_defaults",
        set(),
        notices={"interruptible": _PLACEMENT},
    )
    check_fields(
        g.ctx,
        wf,
        path,
        {"id", "interface", "nodes", "outputs", "metadata", "metadata_defaults"},
        refusals={"failure_node": "failure nodes (on_failure handlers) have no plait equivalent"},
    )
    return out


def workflow_interface(wf: fw.WorkflowTemplate, ctx: Context, path: str) -> pi.TypedInterface:
    """A workflow's interface, for the scope (refusals are recorded once, by the workflow)."""
    return interface_to_plait(wf.interface, Context(ctx.entity), path)


def _parameters(pm: fi.ParameterMap, g: Graph, path: str) -> pi.ParameterMap:
    out = pi.ParameterMap()
    for name in natural(pm.parameters):
        p = pm.parameters[name]
        pp = f"{path}.parameters[{name}]"
        param = out.parameters.add()
        param.var.name = name
        param.var.description = p.var.description
        param.var.type.CopyFrom(type_to_plait(p.var.type, g.ctx, f"{pp}.var.type"))
        behavior = p.WhichOneof("behavior")
        if behavior == "default":
            param.default.CopyFrom(
                literal_to_plait(p.default, param.var.type, g.ctx, f"{pp}.default")
            )
        elif behavior == "required":
            param.required = p.required
        elif behavior is not None:
            g.ctx.refuse(f"{pp}.{behavior}", "artifact queries have no plait equivalent")
    return out


_LP_REFUSALS = {
    "entity_metadata": "schedules, notifications and launch conditions have no plait equivalent",
    "role": "IAM roles have no plait equivalent",
    "auth": "auth settings have no plait equivalent",
    "auth_role": "auth roles have no plait equivalent",
    "security_context": "security contexts (secrets, service accounts) have no plait equivalent",
    "raw_output_data_config": "a raw output location has no plait equivalent",
    "overwrite_cache": "overwriting the cache on launch has no plait equivalent",
    "envs": "launch-time environment variables have no plait equivalent",
    "execution_env_assignments": "execution environments have no plait equivalent",
    "concurrency_policy": "launch plan concurrency policies have no plait equivalent",
}
_LP_NOTICES = {
    "labels": "execution labels of a Flyte launch plan are not kept",
    "annotations": "execution annotations of a Flyte launch plan are not kept",
    "quality_of_service": _PLACEMENT,
    "max_parallelism": "plait runs every ready node of an execution; no per-plan limit",
    "interruptible": _PLACEMENT,
    "cluster_assignment": _PLACEMENT,
}


def launch_plan_to_plait(lp: fa.LaunchPlan, g: Graph, path: str) -> pw.LaunchPlan:
    """A Flyte launch plan (as `pyflyte package` writes it) as a plait one."""
    spec = lp.spec
    sp = f"{path}.spec" if path else "spec"
    out = pw.LaunchPlan()
    out.id.CopyFrom(g.launch_plan_id(lp.id, f"{path}.id" if path else "id"))
    out.workflow_id.CopyFrom(g.workflow_id(spec.workflow_id, f"{sp}.workflow_id"))
    wf_iface = g.scope.workflows.get(spec.workflow_id.name)
    types = {} if wf_iface is None else types_of(wf_iface.inputs)
    out.fixed_inputs.SetInParent()
    for k in sorted(spec.fixed_inputs.literals):
        out.fixed_inputs.literals[k].CopyFrom(
            literal_to_plait(
                spec.fixed_inputs.literals[k], types.get(k), g.ctx, f"{sp}.fixed_inputs.{k}"
            )
        )
    out.default_inputs.CopyFrom(_parameters(spec.default_inputs, g, f"{sp}.default_inputs"))
    check_fields(
        g.ctx,
        spec,
        sp,
        {"workflow_id", "fixed_inputs", "default_inputs"},
        notices=_LP_NOTICES,
        refusals=_LP_REFUSALS,
    )
    # `closure` is the state a Flyte server keeps about the plan, not part of what is launched.
    check_fields(g.ctx, lp, path, {"id", "spec", "closure"})
    return out
