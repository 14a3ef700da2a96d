"""Branch nodes: evaluate the cases in order, run the chosen node, record the others
SKIPPED."""

from __future__ import annotations

from plaitidl.core.v1 import execution_pb2, literals_pb2, workflow_pb2

from plait_engine.scheduler.bindings import BindingError, evaluate
from plait_engine.scheduler.nodes.base import Graph, user_error
from plait_engine.scheduler.state import NodeExec, Templates, display_name
from plait_engine.store import NodeRecord


class BranchHandler:
    """Runs the case a branch takes as a child frame reading the enclosing graph."""

    def __init__(self, graph: Graph) -> None:
        self._g = graph

    def begin(self, n: NodeExec, recovered: NodeRecord | None) -> None:
        """Choose a case; fail the node when none matches and there is no else."""
        br = n.node.branch_node
        inputs = n.inputs or literals_pb2.LiteralMap()
        cases = [br.case, *br.other]
        chosen: workflow_pb2.Node | None = None
        try:
            for case in cases:
                if evaluate(case.condition, inputs):
                    chosen = case.then_node
                    break
        except BindingError as exc:
            self._g.fail(n, user_error("ConditionError", f"branch {n.path!r}: {exc}"))
            return
        if chosen is None:
            if not br.HasField("else_node"):
                msg = br.error.message or "no condition matched"
                self._g.fail(n, user_error("BranchFailed", f"branch {n.path!r}: {msg}"))
                return
            chosen = br.else_node
        if recovered is None or recovered.phase != execution_pb2.NODE_PHASE_RUNNING:
            self._g.journal.node(n, execution_pb2.NODE_PHASE_RUNNING)
        others = [c.then_node for c in cases] + ([br.else_node] if br.HasField("else_node") else [])
        for other in others:
            if other.id != chosen.id and recovered is None:  # else recorded before
                self._g.journal.skipped(n, other.id, display_name(other))
        n.detail = chosen.id
        outs = [
            literals_pb2.Binding(
                var=v,
                binding=literals_pb2.BindingData(
                    promise=literals_pb2.OutputReference(node_id=chosen.id, var=v)
                ),
            )
            for v in output_names(chosen, n.frame.templates)
        ]
        self._g.start_frame(
            n,
            literals_pb2.LiteralMap(),
            n.frame.templates,
            n.frame.depth,
            [chosen],
            outs,
            outer=n.frame,
        )


def output_names(node: workflow_pb2.Node, templates: Templates) -> list[str]:
    """Names of every output the node produces (what a branch that chose it exposes)."""
    which = node.WhichOneof("target")
    if which == "task_node":
        t = templates.task(node.task_node.task_id)
        return [v.name for v in t.interface.outputs.variables] if t else []
    if which == "array_node":
        t = templates.task(node.array_node.node.task_node.task_id)
        return [v.name for v in t.interface.outputs.variables] if t else []
    if which == "workflow_node":
        wn = node.workflow_node
        wf_id = wn.sub_workflow_id
        if wn.HasField("launch_plan_id"):
            lp = templates.launch_plan(wn.launch_plan_id)
            if lp is None:
                return []
            wf_id = lp.workflow_id
        wf = templates.workflow(wf_id)
        return [v.name for v in wf.interface.outputs.variables] if wf else []
    if which == "branch_node":
        return output_names(node.branch_node.case.then_node, templates)
    return []
