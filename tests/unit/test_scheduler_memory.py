"""A node that succeeded keeps its outputs serialized, and a list of promises of them (a
fan-out's result) resolves to exactly what the general path builds."""

from __future__ import annotations

from typing import Any

import pytest
from plait_engine.scheduler import bindings
from plait_engine.scheduler.state import Frame, NodeExec, Run, Templates
from plait_engine.store import ExecutionRecord
from plaitidl.core.v1 import dynamic_job_pb2, literals_pb2, types_pb2, workflow_pb2


def _frame(n: int) -> Frame:
    run = Run(ExecutionRecord(1, "p", "d", "x", "p/d/wf/v"))
    frame = Frame(
        run, None, literals_pb2.LiteralMap(), Templates(dynamic_job_pb2.DynamicJobSpec()), 0
    )
    for i in range(n):
        node = NodeExec(frame, f"n{i}", workflow_pb2.Node(id=f"n{i}"))
        out = literals_pb2.LiteralMap()
        out.literals["o0"].scalar.primitive.integer = i * 7
        out.literals["o1"].scalar.primitive.string_value = f"s{i}"
        node.outputs = out
        node.inputs = literals_pb2.LiteralMap()
        frame.nodes[node.local_id] = node
    return frame


def _promises(refs: list[tuple[str, str]], **extra: Any) -> literals_pb2.BindingData:
    bd = literals_pb2.BindingData()
    bd.collection.SetInParent()
    for node_id, var in refs:
        item = bd.collection.bindings.add()
        item.promise.node_id, item.promise.var = node_id, var
    if extra.get("index") is not None:
        bd.collection.bindings[0].promise.attr_path.add().index = extra["index"]
    if extra.get("variant"):
        bd.collection.bindings[1].union_variant.simple = types_pb2.SIMPLE_TYPE_INTEGER
    return bd


def test_compact_keeps_outputs_serialized_and_drops_inputs() -> None:
    frame = _frame(1)
    n = frame.nodes["n0"]
    want = n.outputs
    n.compact()
    assert n.outputs is None and n.inputs is None and n.out_bytes
    assert n.output_map() == want


@pytest.mark.parametrize("compacted", [True, False])
@pytest.mark.parametrize(
    "refs", [[], [("n0", "o0")], [(f"n{i}", "o0") for i in range(50)], [("n1", "o1"), ("n0", "o0")]]
)
def test_a_list_of_promises_resolves_as_the_general_path_does(
    refs: list[tuple[str, str]], compacted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = _frame(50)
    if compacted:
        for node in frame.nodes.values():
            node.compact()
    bd = _promises(refs)
    got = bindings.resolve(frame, bd)
    monkeypatch.setattr(bindings, "_promise_collection", lambda *a: None)
    assert got == bindings.resolve(frame, bd)
    assert got.HasField("collection") and len(got.collection.literals) == len(refs)


@pytest.mark.parametrize(
    "bd",
    [
        _promises([("n0", "o0"), ("n9", "o0")]),  # an unknown node
        _promises([("n0", "o7")]),  # an unknown output
        _promises([("n0", "o0"), ("n1", "o0")], variant=True),
    ],
)
def test_items_the_fast_path_cannot_take_give_the_general_answer(
    bd: literals_pb2.BindingData, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = _frame(2)
    for node in frame.nodes.values():
        node.compact()

    def general() -> Any:
        try:
            return bindings.resolve(frame, bd)
        except bindings.BindingError as exc:
            return str(exc)

    fast = general()
    monkeypatch.setattr(bindings, "_promise_collection", lambda *a: None)
    assert fast == general()
