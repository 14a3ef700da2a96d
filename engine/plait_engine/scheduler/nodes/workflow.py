"""Workflow nodes: a subworkflow or a launch plan, run as a child frame."""

from __future__ import annotations

from plaitidl.core.v1 import execution_pb2, literals_pb2

from plait_engine.scheduler.nodes.base import Graph, user_error
from plait_engine.scheduler.state import NodeExec
from plait_engine.store import NodeRecord


class WorkflowHandler:
    """Starts a workflow node's graph with launch-plan and workflow defaults applied."""

    def __init__(self, graph: Graph) -> None:
        self._g = graph

    def begin(self, n: NodeExec, recovered: NodeRecord | None) -> None:
        """Resolve the launch plan (if any) and the workflow; run it as a child frame."""
        wn = n.node.workflow_node
        templates = n.frame.templates
        inputs = literals_pb2.LiteralMap()
        inputs.CopyFrom(n.inputs or literals_pb2.LiteralMap())
        wf_id = wn.sub_workflow_id
        if wn.HasField("launch_plan_id"):
            lp = templates.launch_plan(wn.launch_plan_id)
            if lp is None:
                self._g.fail(n, user_error("NotFound", f"node {n.path!r}: launch plan not found"))
                return
            for p in lp.default_inputs.parameters:
                if p.var.name not in inputs.literals and p.HasField("default"):
                    inputs.literals[p.var.name].CopyFrom(p.default)
            for k, v in lp.fixed_inputs.literals.items():
                inputs.literals[k].CopyFrom(v)
            wf_id = lp.workflow_id
        wf = templates.workflow(wf_id)
        if wf is None:
            self._g.fail(n, user_error("NotFound", f"node {n.path!r}: workflow not found"))
            return
        for p in wf.defaults.parameters:
            if p.var.name not in inputs.literals and p.HasField("default"):
                inputs.literals[p.var.name].CopyFrom(p.default)
        n.inputs = inputs
        if recovered is None or recovered.phase != execution_pb2.NODE_PHASE_RUNNING:
            self._g.journal.node(n, execution_pb2.NODE_PHASE_RUNNING)
        self._g.start_frame(n, inputs, templates, n.frame.depth, wf.nodes, wf.outputs)
