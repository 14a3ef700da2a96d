"""`ExecutionService.GetNodeGraph` and friends over the service layer of an embedded engine:
levels of real executions (recursion, branches, fan-outs, array nodes), groups with counts per
phase, nodes not created yet, counts, filters and one node's events."""

from __future__ import annotations

from pathlib import Path

from plait_engine.app import Engine
from plait_engine.service.graphs import GraphItem
from plaitidl.core.v1 import execution_pb2
from plaitidl.service.v1 import execution_service_pb2 as es

from examples.merge_sort import merge_sort
from tests.support.engines import start, with_engine
from tests.workflows import behaviours, console_flows

EP = execution_pb2
OK, SKIPPED, FAILED = EP.NODE_PHASE_SUCCEEDED, EP.NODE_PHASE_SKIPPED, EP.NODE_PHASE_FAILED


def _by_name(items: list[GraphItem]) -> dict[str, GraphItem]:
    return {i.name: i for i in items}


def test_merge_sort_levels_show_branches_and_recursion(tmp_path: Path) -> None:
    async def body(engine: Engine) -> None:
        numbers = [9, 4, 7, 1, 8, 2, 6, 3]
        rec = await start(
            engine, merge_sort, numbers=numbers, numbers_count=8, run_local_at_count=2
        )
        rec = await engine.executions.wait(rec, 60)
        x = engine.executions
        top = await x.graph(rec, "", 0)
        (branch,) = top.items
        assert (branch.id, branch.name, branch.kind) == (
            "n0",
            "terminal_case",
            es.GRAPH_NODE_KIND_BRANCH,
        )
        assert branch.has_children and branch.inner_phases[OK] > 10
        assert top.parent is None and top.node_count == 1
        cases = await x.graph(rec, "n0", 0)
        assert cases.parent is not None and cases.parent.node_id == "n0"
        local, remote = cases.items
        assert local.name == "sort_locally" and local.record is not None
        assert local.record.phase == SKIPPED and not local.has_children
        assert local.condition == "if numbers_count <= run_local_at_count"
        assert remote.condition == "else" and remote.record is not None
        assert remote.record.is_dynamic and remote.has_children
        inside = await x.graph(rec, remote.id, 0)
        names = [i.name for i in inside.items]
        assert names[0] == "split" and names[-1] == "merge"  # upstream before downstream
        by_id = {i.id: i for i in inside.items}
        merge = inside.items[-1]
        assert {by_id[u].name for u in merge.upstream_ids} == {"merge_sort"}
        sub = next(i for i in inside.items if i.name == "merge_sort")
        assert sub.kind == es.GRAPH_NODE_KIND_WORKFLOW and sub.upstream_ids == [inside.items[0].id]
        # Level by level down to a leaf: workflow, branch, case.
        depth, path = 0, sub.id
        while True:
            level = await x.graph(rec, path, 0)
            containers = [i for i in level.items if i.has_children]
            if not containers:
                break
            path, depth = containers[0].id, depth + 1
        assert depth >= 4 and path.count("/") >= 5
        counted = await x.count(rec, "n0")
        assert (
            counted[OK] + counted[SKIPPED]
            == sum(counted.values())
            == branch.inner_phases[OK] + branch.inner_phases[SKIPPED]
        )

    with_engine(tmp_path, body)


def test_fan_outs_and_array_nodes_collapse_into_groups(tmp_path: Path) -> None:
    async def body(engine: Engine) -> None:
        x = engine.executions
        rec = await start(engine, console_flows.big_fan_out, n=50)
        rec = await x.wait(rec, 60)
        level = await x.graph(rec, "n0", 20)
        (group,) = level.items
        assert group.id == "n0/*square" and group.group_size == 50 and level.node_count == 50
        assert group.group_phases == {OK: 50} and group.record is None
        singles = await x.graph(rec, "n0", 60)
        assert len(singles.items) == 50 and {i.name for i in singles.items} == {"square"}
        page = await x.nodes(rec, "n0", 10, name="square", phases=(OK,))
        assert len(page) == 10
        assert await x.nodes(rec, "n0", 10, phases=(FAILED,)) == []

        mapped = await start(engine, behaviours.map_wf, xs=list(range(30)))
        mapped = await x.wait(mapped, 60)
        top = await x.graph(mapped, "", 20)
        (array,) = top.items
        assert array.kind == es.GRAPH_NODE_KIND_ARRAY and array.has_children
        inside = await x.graph(mapped, array.id, 20)
        assert inside.parent_kind == es.GRAPH_NODE_KIND_ARRAY
        (instances,) = inside.items
        assert instances.group_size == 30 and instances.group_phases == {OK: 30}
        few = await x.graph(mapped, array.id, 100)
        assert [i.id for i in few.items] == [f"{array.id}/{i}" for i in range(30)]

    with_engine(tmp_path, body)


def test_nodes_not_created_yet_come_from_the_template(tmp_path: Path) -> None:
    async def body(engine: Engine) -> None:
        x = engine.executions
        rec = await start(engine, console_flows.fails_then_more, x=3)
        rec = await x.wait(rec, 60)
        level = await x.graph(rec, "", 0)
        first, second = level.items
        assert first.record is not None and first.record.phase == FAILED
        assert second.name == "square" and second.record is None
        assert second.upstream_ids == [first.id]
        # A task that is no generator has nothing inside.
        inside = await x.graph(rec, first.id, 0)
        assert inside.items == [] and inside.note
        # Its transitions, and only its.
        batches = [b async for b in x.watch(rec, 0, node_id=first.id)]
        events = [e for b in batches for e in b]
        assert events and {e.node.node_id for e in events} == {first.id}
        assert events[-1].node.phase == FAILED
        assert "cannot handle 3" in events[-1].node.error.message

    with_engine(tmp_path, body)
