"""One level of an execution's graph at a time, aggregated on the server.

A level is what runs directly inside a node (or the top-level workflow): the nodes a workflow,
a dynamic spec or a branch defines, or the instances of an array node. Its structure comes from
the compiled templates (the execution's closure and the specs its generators yielded, both
immutable once stored, so levels are cached); its state from the node records. Siblings that
share a name beyond a threshold collapse into one group with counts per phase, so a level of
10,000 nodes is answered with a handful of items and never with 10,000 records.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from google.protobuf import json_format
from plaitidl.core.v1 import (
    condition_pb2,
    dynamic_job_pb2,
    execution_pb2,
    identifier_pb2,
    literals_pb2,
    workflow_pb2,
)
from plaitidl.service.v1 import execution_service_pb2 as es

from plait_engine import compiler, ids
from plait_engine.blob import Payloads
from plait_engine.errors import NotFound
from plait_engine.scheduler.state import Templates, display_name
from plait_engine.store import ExecutionRecord, NodeRecord, Store

DEFAULT_GROUP_THRESHOLD = 20
# Levels up to this size read their records in one query; larger ones read counts per name and
# the records of their single (ungrouped) nodes only.
_READ_ALL_UP_TO = 2000
# At most this many single nodes per level: past it, every name is grouped.
_MAX_SINGLES = 300
# Containers of a level whose inside is counted.
_MAX_INNER_COUNTS = 50
_CACHED_LEVELS = 64

_KIND_OF_TARGET = {
    "task_node": es.GRAPH_NODE_KIND_TASK,
    "workflow_node": es.GRAPH_NODE_KIND_WORKFLOW,
    "branch_node": es.GRAPH_NODE_KIND_BRANCH,
    "array_node": es.GRAPH_NODE_KIND_ARRAY,
}
_OPERATORS = {
    condition_pb2.ComparisonExpression.OPERATOR_EQ: "==",
    condition_pb2.ComparisonExpression.OPERATOR_NEQ: "!=",
    condition_pb2.ComparisonExpression.OPERATOR_GT: ">",
    condition_pb2.ComparisonExpression.OPERATOR_GTE: ">=",
    condition_pb2.ComparisonExpression.OPERATOR_LT: "<",
    condition_pb2.ComparisonExpression.OPERATOR_LTE: "<=",
}


@dataclass
class Shape:
    """How a level is drawn for one group threshold: immutable, computed once per level.

    Attributes:
        order: (item id, local id of its first node), upstream items first.
        groups: Group item ids and their names.
        sizes: Nodes per name.
        grouped: The names drawn as groups.
        singles: Local ids of the nodes drawn one by one.
        upstreams: Each item's upstream item ids.
    """

    order: list[tuple[str, str]]
    groups: dict[str, str]
    sizes: dict[str, int]
    grouped: set[str]
    singles: list[str]
    upstreams: dict[str, list[str]]


@dataclass
class Level:
    """What a level defines (immutable once its templates are stored).

    Attributes:
        kind: What the containing node runs (`GraphNodeKind`; unspecified at the top).
        nodes: The nodes defined, by local id, in definition order; an array level holds its
            one inner node under "".
        templates: The templates the level's nodes may reference.
        conditions: For a branch level, each case's condition by local id.
        note: Why the level defines nothing (yet).
        shapes: Its shapes by group threshold.
    """

    kind: int
    nodes: dict[str, workflow_pb2.Node]
    templates: Templates
    conditions: dict[str, str] = field(default_factory=dict)
    note: str = ""
    shapes: dict[int, Shape] = field(default_factory=dict)

    @property
    def is_array(self) -> bool:
        """Whether the level is an array node's instances."""
        return self.kind == es.GRAPH_NODE_KIND_ARRAY

    def child(self, local_id: str) -> workflow_pb2.Node | None:
        """The definition of a node of the level."""
        return self.nodes.get("") if self.is_array else self.nodes.get(local_id)


@dataclass
class GraphItem:
    """One node of a level, or a group of siblings sharing a name."""

    id: str
    name: str
    kind: int
    record: NodeRecord | None = None
    group_size: int = 0
    group_phases: dict[int, int] = field(default_factory=dict)
    upstream_ids: list[str] = field(default_factory=list)
    condition: str = ""
    has_children: bool = False
    inner_phases: dict[int, int] = field(default_factory=dict)
    target: identifier_pb2.Identifier | None = None


@dataclass
class GraphLevel:
    """A level as `ExecutionService.GetNodeGraph` answers it."""

    parent: NodeRecord | None
    parent_kind: int
    items: list[GraphItem]
    node_count: int
    note: str = ""


def kind_of(node: workflow_pb2.Node) -> int:
    """The `GraphNodeKind` of a node definition."""
    return _KIND_OF_TARGET.get(node.WhichOneof("target") or "", es.GRAPH_NODE_KIND_UNSPECIFIED)


def target_of(node: workflow_pb2.Node) -> identifier_pb2.Identifier | None:
    """What a node runs, when it runs a registered or embedded entity."""
    which = node.WhichOneof("target")
    if which == "task_node":
        return node.task_node.task_id
    if which == "array_node":
        return node.array_node.node.task_node.task_id
    if which == "workflow_node":
        wn = node.workflow_node
        return wn.launch_plan_id if wn.HasField("launch_plan_id") else wn.sub_workflow_id
    return None


def _literal_text(lit: literals_pb2.Literal) -> str:
    data = json_format.MessageToDict(lit)
    values = list(data.get("scalar", {}).get("primitive", {}).values())
    return str(values[0]) if len(values) == 1 else json.dumps(data)


def _binding_text(bd: literals_pb2.BindingData) -> str:
    """Where a branch input comes from: an upstream output, a workflow input or a constant."""
    if bd.WhichOneof("value") == "promise":
        p = bd.promise
        where = p.var if p.node_id == ids.START_NODE else f"{p.node_id}.{p.var}"
        for step in p.attr_path:
            where += f".{step.name}" if step.WhichOneof("value") == "name" else f"[{step.index}]"
        return where
    if bd.WhichOneof("value") == "literal":
        return _literal_text(bd.literal)
    return "..."


def _operand(op: condition_pb2.Operand, inputs: dict[str, str]) -> str:
    if op.WhichOneof("value") == "var":
        return inputs.get(op.var, op.var)
    return _literal_text(op.literal)


def condition_text(expr: condition_pb2.BooleanExpression, inputs: dict[str, str]) -> str:
    """A condition as people write it: ``numbers_count <= run_local_at_count``.

    Args:
        expr: The condition.
        inputs: What each of the branch's inputs is bound to, as text.
    """
    if expr.WhichOneof("expr") == "conjunction":
        c = expr.conjunction
        is_and = c.operator == condition_pb2.ConjunctionExpression.LOGICAL_OPERATOR_AND
        left = condition_text(c.left_expression, inputs)
        right = condition_text(c.right_expression, inputs)
        return f"({left} {'and' if is_and else 'or'} {right})"
    cmp = expr.comparison
    op = _OPERATORS.get(cmp.operator, "?")
    return f"{_operand(cmp.left_value, inputs)} {op} {_operand(cmp.right_value, inputs)}"


def _branch_level(node: workflow_pb2.Node, templates: Templates) -> Level:
    br = node.branch_node
    inputs = {b.var: _binding_text(b.binding) for b in node.inputs}
    nodes: dict[str, workflow_pb2.Node] = {}
    conditions: dict[str, str] = {}
    for i, case in enumerate([br.case, *br.other]):
        nodes[case.then_node.id] = case.then_node
        prefix = "if" if i == 0 else "elif"
        conditions[case.then_node.id] = f"{prefix} {condition_text(case.condition, inputs)}"
    if br.HasField("else_node"):
        nodes[br.else_node.id] = br.else_node
        conditions[br.else_node.id] = "else"
    return Level(es.GRAPH_NODE_KIND_BRANCH, nodes, templates, conditions)


def _workflow_level(node: workflow_pb2.Node, templates: Templates) -> Level:
    wn = node.workflow_node
    wf_id = wn.sub_workflow_id
    if wn.HasField("launch_plan_id"):
        lp = templates.launch_plan(wn.launch_plan_id)
        if lp is None:
            return Level(es.GRAPH_NODE_KIND_WORKFLOW, {}, templates, note="launch plan not found")
        wf_id = lp.workflow_id
    wf = templates.workflow(wf_id)
    if wf is None:
        return Level(es.GRAPH_NODE_KIND_WORKFLOW, {}, templates, note="workflow not found")
    return Level(es.GRAPH_NODE_KIND_WORKFLOW, {n.id: n for n in wf.nodes}, templates)


class GraphReader:
    """Reads levels of executions' graphs for `ExecutionService.GetNodeGraph`.

    Args:
        store: The store.
        payloads: Large payloads (closures and specs may be stored as pointers).
    """

    def __init__(self, store: Store, payloads: Payloads) -> None:
        self._store = store
        self._payloads = payloads
        self._levels: OrderedDict[tuple[int, str], Level] = OrderedDict()

    def _remember(self, key: tuple[int, str], level: Level) -> Level:
        self._levels[key] = level
        self._levels.move_to_end(key)
        while len(self._levels) > _CACHED_LEVELS:
            self._levels.popitem(last=False)
        return level

    async def _root(self, rec: ExecutionRecord) -> Level:
        payload = await self._store.get_payload(rec.eid)
        if payload is None:
            raise NotFound(f"execution {rec.name} does not exist")
        body = await self._payloads.load(payload.closure)
        closure = await asyncio.to_thread(dynamic_job_pb2.DynamicJobSpec.FromString, body)
        level = Level(
            es.GRAPH_NODE_KIND_UNSPECIFIED, {n.id: n for n in closure.nodes}, Templates(closure)
        )
        return self._remember((rec.eid, ""), level)

    async def level(self, rec: ExecutionRecord, path: str) -> Level:
        """The level inside the node `path` ("" for the top level).

        Raises:
            NotFound: The execution defines no such node.
        """
        cached = self._levels.get((rec.eid, path))
        if cached is not None:
            self._levels.move_to_end((rec.eid, path))
            return cached
        if not path:
            return await self._root(rec)
        outer_path, _, local_id = path.rpartition("/")
        outer = await self.level(rec, outer_path)
        node = outer.child(local_id)
        if node is None:
            raise NotFound(f"execution {rec.name} has no node {path!r}")
        which = node.WhichOneof("target")
        if which == "branch_node":
            return self._remember((rec.eid, path), _branch_level(node, outer.templates))
        if which == "workflow_node":
            return self._remember((rec.eid, path), _workflow_level(node, outer.templates))
        if which == "array_node":
            level = Level(es.GRAPH_NODE_KIND_ARRAY, {"": node.array_node.node}, outer.templates)
            return self._remember((rec.eid, path), level)
        spec = await self._store.get_dynamic_spec(rec.eid, path)
        if spec is None:  # not (yet) a generator: not cached, it may yield later
            return Level(es.GRAPH_NODE_KIND_TASK, {}, outer.templates, note="no dynamic spec")
        body = await self._payloads.load_spec(spec.closure)
        closure = await asyncio.to_thread(dynamic_job_pb2.DynamicJobSpec.FromString, body)
        level = Level(
            es.GRAPH_NODE_KIND_TASK,
            {n.id: n for n in closure.nodes},
            outer.templates.merged(closure),
        )
        return self._remember((rec.eid, path), level)

    async def graph(self, rec: ExecutionRecord, parent_id: str, threshold: int) -> GraphLevel:
        """One level with its state; see `ExecutionService.GetNodeGraph`.

        Raises:
            NotFound: The execution defines no such node.
        """
        threshold = threshold or DEFAULT_GROUP_THRESHOLD
        level = await self.level(rec, parent_id)
        parent = await self._store.get_node(rec.eid, parent_id) if parent_id else None
        if level.is_array:
            items, count = await self._array_items(rec, parent_id, level, threshold)
        else:
            items, count = await self._defined_items(rec, parent_id, level, threshold)
        await self._count_insides(rec, items)
        note = level.note if not items else ""
        if parent is not None and not items and level.kind == es.GRAPH_NODE_KIND_TASK:
            note = _task_note(parent)
        return GraphLevel(parent, level.kind, items, count, note)

    async def _array_items(
        self, rec: ExecutionRecord, parent_id: str, level: Level, threshold: int
    ) -> tuple[list[GraphItem], int]:
        inner = level.nodes[""]
        rows = await self._store.count_children(rec.eid, parent_id)
        total = sum(c for _, _, c in rows)
        if total > threshold:
            name = display_name(inner)
            phases: dict[int, int] = {}
            for _, phase, c in rows:
                phases[phase] = phases.get(phase, 0) + c
            group = _group(parent_id, name, kind_of(inner), target_of(inner), total, phases)
            return [group], total
        records = await self._store.list_nodes(rec.eid, parent_id, total + 1)
        records.sort(key=lambda r: int(r.node_id.rpartition("/")[2] or 0))
        items = [_single(r.node_id, inner, r) for r in records]
        return items, total

    async def _defined_items(
        self, rec: ExecutionRecord, parent_id: str, level: Level, threshold: int
    ) -> tuple[list[GraphItem], int]:
        shape = level.shapes.get(threshold)
        if shape is None:
            # A level of 10,000 nodes takes a while to shape: off the event loop, and once.
            shape = await asyncio.to_thread(_shape, level, parent_id, threshold)
            level.shapes[threshold] = shape
        records = await self._records(rec, parent_id, level, shape.singles)
        phases_by_name: dict[str, dict[int, int]] = {}
        if shape.grouped:
            for name, phase, c in await self._store.count_children(rec.eid, parent_id):
                if name in shape.grouped:
                    by_phase = phases_by_name.setdefault(name, {})
                    by_phase[phase] = by_phase.get(phase, 0) + c
        prefix = f"{parent_id}/" if parent_id else ""
        items: list[GraphItem] = []
        for item_id, local in shape.order:
            node = level.nodes[local]
            if item_id in shape.groups:
                name = shape.groups[item_id]
                item = _group(
                    parent_id,
                    name,
                    kind_of(node),
                    target_of(node),
                    shape.sizes[name],
                    phases_by_name.get(name, {}),
                )
            else:
                item = _single(item_id, node, records.get(prefix + local))
                item.condition = level.conditions.get(local, "")
            item.upstream_ids = list(shape.upstreams.get(item_id, ()))
            items.append(item)
        return items, len(level.nodes)

    async def _records(
        self, rec: ExecutionRecord, parent_id: str, level: Level, singles: Sequence[str]
    ) -> dict[str, NodeRecord]:
        if not singles:
            return {}
        if len(level.nodes) <= _READ_ALL_UP_TO:
            rows = await self._store.list_nodes(rec.eid, parent_id, len(level.nodes) + 1)
            return {r.node_id: r for r in rows}
        prefix = f"{parent_id}/" if parent_id else ""
        found = await asyncio.gather(*(self._store.get_node(rec.eid, prefix + s) for s in singles))
        return {r.node_id: r for r in found if r is not None}

    async def _count_insides(self, rec: ExecutionRecord, items: list[GraphItem]) -> None:
        containers = [i for i in items if i.has_children][:_MAX_INNER_COUNTS]
        counts = await asyncio.gather(*(self._store.count_nodes(rec.eid, i.id) for i in containers))
        for item, found in zip(containers, counts, strict=True):
            item.inner_phases = found


def _shape(level: Level, parent_id: str, threshold: int) -> Shape:
    names = {local: display_name(node) for local, node in level.nodes.items()}
    sizes: dict[str, int] = {}
    for name in names.values():
        sizes[name] = sizes.get(name, 0) + 1
    grouped = {name for name, size in sizes.items() if size > threshold}
    singles = [local for local, name in names.items() if name not in grouped]
    if len(singles) > _MAX_SINGLES:
        grouped, singles = set(sizes), []
    prefix = f"{parent_id}/" if parent_id else ""
    item_of = {
        local: f"{prefix}*{name}" if name in grouped else prefix + local
        for local, name in names.items()
    }
    firsts: dict[str, str] = {}
    upstreams: dict[str, list[str]] = {}
    for local, node in level.nodes.items():
        item_id = item_of[local]
        firsts.setdefault(item_id, local)
        ups = upstreams.setdefault(item_id, [])
        for up in sorted(compiler.node_upstreams(node)):
            target = item_of.get(up)
            if target is not None and target != item_id and target not in ups:
                ups.append(target)
    ordered = _topological(list(firsts), upstreams)
    return Shape(
        order=[(i, firsts[i]) for i in ordered],
        groups={item_of[loc]: names[loc] for loc in level.nodes if names[loc] in grouped},
        sizes=sizes,
        grouped=grouped,
        singles=singles,
        upstreams=upstreams,
    )


def _single(path: str, node: workflow_pb2.Node, record: NodeRecord | None) -> GraphItem:
    kind = kind_of(node)
    started = record is not None and record.phase not in (0, execution_pb2.NODE_PHASE_SKIPPED)
    has_children = (
        record is not None and record.is_dynamic if kind == es.GRAPH_NODE_KIND_TASK else started
    )
    return GraphItem(
        id=path,
        name=record.name if record is not None and record.name else display_name(node),
        kind=kind,
        record=record,
        has_children=has_children,
        target=target_of(node),
    )


def _group(
    parent_id: str,
    name: str,
    kind: int,
    target: identifier_pb2.Identifier | None,
    size: int,
    phases: dict[int, int],
) -> GraphItem:
    prefix = f"{parent_id}/" if parent_id else ""
    return GraphItem(
        id=f"{prefix}*{name}",
        name=name,
        kind=kind,
        group_size=size,
        group_phases=phases,
        target=target,
    )


def _task_note(parent: NodeRecord) -> str:
    if parent.phase in (execution_pb2.NODE_PHASE_RUNNING, execution_pb2.NODE_PHASE_QUEUED):
        return "the task runs; if it is a generator, its nodes appear once it yields its spec"
    return "a task: nothing runs inside it"


def _topological(ids_: list[str], upstreams: dict[str, list[str]]) -> list[str]:
    """Item ids with every item after the ones it depends on (definition order otherwise)."""
    pending = {i: len(upstreams.get(i, ())) for i in ids_}
    downstream: dict[str, list[str]] = {i: [] for i in ids_}
    for i in ids_:
        for up in upstreams.get(i, ()):
            downstream[up].append(i)
    ready = deque(i for i in ids_ if pending[i] == 0)
    out: list[str] = []
    while ready:
        current = ready.popleft()
        out.append(current)
        for d in downstream[current]:
            pending[d] -= 1
            if pending[d] == 0:
                ready.append(d)
    if len(out) < len(ids_):  # a cycle (groups of a chain): keep the rest in order
        seen = set(out)
        out += [i for i in ids_ if i not in seen]
    return out
