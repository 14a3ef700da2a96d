"""Array nodes: one instance of a task per element, at most `parallelism` at once, with a
success ratio. The array's queue of waiting instances is this handler's frame state."""

from __future__ import annotations

import math
from collections import deque

from plaitidl.core.v1 import execution_pb2, literals_pb2, types_pb2

from plait_engine.scheduler.nodes.base import Graph, user_error
from plait_engine.scheduler.state import Frame, NodeExec
from plait_engine.store import NodeRecord


class ArrayState:
    """The progress of one array node's instances (implements `FrameHooks`).

    Attributes:
        graph: The graph instances are started on.
        waiting: Instances not started yet, in order.
        running: Instances started and not ended.
        parallelism: Most instances running at once.
        output_types: The task's output types (each output becomes a list).
        optional: Whether failed instances become None (a success ratio below 1).
    """

    def __init__(
        self,
        graph: Graph,
        parallelism: int,
        output_types: dict[str, types_pb2.LiteralType],
        *,
        optional: bool,
    ) -> None:
        self.graph = graph
        self.waiting: deque[NodeExec] = deque()
        self.running = 0
        self.parallelism = parallelism
        self.output_types = output_types
        self.optional = optional

    def fill(self) -> None:
        """Start waiting instances up to the parallelism."""
        while self.waiting and self.running < self.parallelism:
            self.running += 1
            self.graph.make_ready(self.waiting.popleft())

    def node_ended(self, frame: Frame, n: NodeExec) -> None:
        """An instance ended: start the next one."""
        self.running -= 1
        self.fill()

    def outputs(self, frame: Frame) -> literals_pb2.LiteralMap:
        """Each output as a list over the instances, None for failed ones when optional."""
        out = literals_pb2.LiteralMap()
        insts = [frame.nodes[str(i)] for i in range(len(frame.nodes))]
        for var, t in self.output_types.items():
            coll = out.literals[var].collection
            coll.SetInParent()  # an empty list is still a list
            for inst in insts:
                item = coll.literals.add()
                got = inst.output_map()
                ok = got is not None and var in got.literals
                if not self.optional:
                    if ok:
                        assert got is not None
                        item.CopyFrom(got.literals[var])
                elif ok:
                    assert got is not None
                    item.scalar.union.value.CopyFrom(got.literals[var])
                    item.scalar.union.type.CopyFrom(t)
                else:
                    item.scalar.union.value.scalar.none_value.SetInParent()
                    item.scalar.union.type.simple = types_pb2.SIMPLE_TYPE_NONE
        return out


class ArrayHandler:
    """Expands an array node into instances with per-element inputs."""

    def __init__(self, graph: Graph) -> None:
        self._g = graph

    def begin(self, n: NodeExec, recovered: NodeRecord | None) -> None:
        """Check the mapped inputs, create the instances and start the first ones."""
        arr = n.node.array_node
        inner = arr.node
        task = n.frame.templates.task(inner.task_node.task_id)
        if task is None:
            key = inner.task_node.task_id.name
            self._g.fail(n, user_error("TaskNotFound", f"array node {n.path!r}: task {key}"))
            return
        inputs = n.inputs or literals_pb2.LiteralMap()
        broadcast = set(arr.broadcast_inputs)
        mapped = [k for k in inputs.literals if k not in broadcast]
        offloaded = [k for k in mapped if inputs.literals[k].HasField("offloaded")]
        if offloaded:  # its items are not here: never map over an empty list by mistake
            message = f"array node {n.path!r}: mapped input(s) {offloaded} arrived offloaded "
            message += "(larger than the inline limit); mapping over them is not supported yet"
            self._g.fail(n, user_error("ArrayInputOffloaded", message))
            return
        lengths = {k: len(inputs.literals[k].collection.literals) for k in mapped}
        if len(set(lengths.values())) > 1:
            self._g.fail(
                n,
                user_error(
                    "ArrayLengthMismatch",
                    f"array node {n.path!r}: mapped inputs have different lengths {lengths}",
                ),
            )
            return
        size = next(iter(lengths.values()), 0)
        if arr.HasField("min_successes"):
            required = min(size, arr.min_successes)
        elif arr.HasField("min_success_ratio"):
            required = math.ceil(size * arr.min_success_ratio - 1e-9)
        else:
            required = size
        state = ArrayState(
            self._g,
            arr.parallelism or size or 1,
            {v.name: v.type for v in task.interface.outputs.variables},
            optional=arr.HasField("min_successes") or arr.HasField("min_success_ratio"),
        )
        if recovered is None or recovered.phase != execution_pb2.NODE_PHASE_RUNNING:
            self._g.journal.node(n, execution_pb2.NODE_PHASE_RUNNING)
        frame = self._g.open_frame(n, inputs, state, tolerance=size - required)
        instances = []
        for i in range(size):
            inst = NodeExec(frame, str(i), inner)
            preset = literals_pb2.LiteralMap()
            for k, v in inputs.literals.items():
                preset.literals[k].CopyFrom(v if k in broadcast else v.collection.literals[i])
            inst.preset_inputs = preset
            instances.append(inst)
            state.waiting.append(inst)
        self._g.add_nodes(frame, instances)
        state.fill()
