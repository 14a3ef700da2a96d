"""The seed examples: golden templates, the specs their dynamics yield, local runs."""

from __future__ import annotations

import os
import types
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format
from plait import _loader, _runtime, _serialize, _types
from plaitidl.core.v1 import dynamic_job_pb2, literals_pb2, workflow_pb2

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "templates"


def _load(stem: str) -> types.ModuleType:
    return _loader.load_path(str(ROOT / "examples" / f"{stem}.py"))


def _lit(value: Any, hint: Any) -> literals_pb2.Literal:
    return _types.to_literal(value, hint, var="test")


def _spec(task: Any, **inputs: Any) -> dynamic_job_pb2.DynamicJobSpec:
    hints = task.python_interface.inputs
    lm = literals_pb2.LiteralMap(literals={k: _lit(v, hints[k]) for k, v in inputs.items()})
    result = _runtime.execute(task.template, lm)
    assert isinstance(result, dynamic_job_pb2.DynamicJobSpec), result
    return result


def _promise(node_id: str, var: str) -> literals_pb2.BindingData:
    return literals_pb2.BindingData(promise=literals_pb2.OutputReference(node_id=node_id, var=var))


def _bindings(node: workflow_pb2.Node) -> dict[str, literals_pb2.BindingData]:
    return {b.var: b.binding for b in node.inputs}


@pytest.mark.parametrize(
    ("stem", "entity"),
    [
        ("dynamic_workflow", "dynamic_wf"),
        ("merge_sort", "merge_sort"),
        ("generate_others", "fan_out"),
    ],
)
def test_golden_templates(stem: str, entity: str) -> None:
    bundle = _serialize.collect(getattr(_load(stem), entity))
    text = text_format.MessageToString(bundle.register_request())
    path = GOLDEN / f"{entity}.textproto"
    if os.environ.get("PLAIT_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text(), f"{path} differs; PLAIT_UPDATE_GOLDEN=1 rewrites it"
    assert bundle.root == bundle.workflows[0].id


def test_serialization_is_stable_and_versions_are_content_digests() -> None:
    ms = _load("merge_sort")
    a = _serialize.collect(ms.merge_sort)
    b = _serialize.collect(ms.merge_sort)
    assert a == b
    assert [t.id.name for t in a.tasks] == [
        "merge_sort.sort_locally",
        "merge_sort.merge_sort_remotely",
    ]
    wf = a.workflows[0]
    assert wf.defaults.parameters[0].var.name == "run_local_at_count"
    assert wf.defaults.parameters[0].default.scalar.primitive.integer == 5
    branch = wf.nodes[0].branch_node
    assert branch.case.then_node.id == "n0-case0"
    assert branch.else_node.id == "n0-else"
    assert [b.var for b in wf.nodes[0].inputs] == ["c0", "c1"]
    assert branch.case.condition.comparison.left_value.var == "c0"
    # Same content, same version; the version is not part of what is digested.
    assert ms.split.template.id.version == ms.split.id.version
    assert len(ms.split.id.version) == 16


def test_merge_sort_remotely_yields_four_nodes() -> None:
    ms = _load("merge_sort")
    spec = _spec(
        ms.merge_sort_remotely, numbers=[9, 1, 8, 2, 7, 3, 6, 4, 5, 0], run_local_at_count=5
    )
    assert [n.id for n in spec.nodes] == ["n0", "n1", "n2", "n3"]
    split, left, right, merge = spec.nodes

    assert split.task_node.task_id == ms.split.id
    assert _bindings(split)["numbers"].literal == _lit([9, 1, 8, 2, 7, 3, 6, 4, 5, 0], list[int])

    for node, lst, count in ((left, "o0", "o2"), (right, "o1", "o3")):
        assert node.workflow_node.sub_workflow_id == ms.merge_sort.id
        b = _bindings(node)
        assert list(b) == ["numbers", "numbers_count", "run_local_at_count"]
        assert b["numbers"] == _promise("n0", lst)
        assert b["numbers_count"] == _promise("n0", count)
        assert b["run_local_at_count"].literal == _lit(5, int)

    assert merge.task_node.task_id == ms.merge.id
    assert _bindings(merge) == {
        "sorted_list1": _promise("n1", "o0"),
        "sorted_list2": _promise("n2", "o0"),
    }
    assert list(spec.outputs) == [literals_pb2.Binding(var="o0", binding=_promise("n3", "o0"))]
    assert [t.id.name for t in spec.tasks] == [
        "merge_sort.split",
        "merge_sort.sort_locally",
        "merge_sort.merge_sort_remotely",
        "merge_sort.merge",
    ]
    assert list(spec.subworkflows) == [ms.merge_sort.template]
    assert not spec.launch_plans


def test_count_characters_yields_a_chain_per_string() -> None:
    dw = _load("dynamic_workflow")
    spec = _spec(dw.count_characters, s1="Pear", s2="Earth")
    assert len(spec.nodes) == 2 * (4 + 5) + 1
    ids = [n.id for n in spec.nodes]
    assert ids == [f"n{i}" for i in range(19)]
    # s1: n0 return_index, n1 update_list(literal zeros, n0.o0), n2, n3(n1.o0, n2.o0), ...
    first = _bindings(spec.nodes[1])
    assert first["freq_list"].literal == _lit([0] * 26, list[int])
    assert first["list_index"] == _promise("n0", "o0")
    for k in range(1, 4):
        b = _bindings(spec.nodes[2 * k + 1])
        assert b["freq_list"] == _promise(f"n{2 * k - 1}", "o0")
        assert b["list_index"] == _promise(f"n{2 * k}", "o0")
    # s2 starts from fresh zeros.
    assert _bindings(spec.nodes[9])["freq_list"].literal == _lit([0] * 26, list[int])
    assert _bindings(spec.nodes[8])["character"].literal == _lit("E", str)
    derive = spec.nodes[18]
    assert derive.task_node.task_id == dw.derive_count.id
    assert _bindings(derive) == {"freq1": _promise("n7", "o0"), "freq2": _promise("n17", "o0")}
    assert spec.outputs[0].binding == _promise("n18", "o0")
    assert [t.id.name for t in spec.tasks] == [
        "dynamic_workflow.return_index",
        "dynamic_workflow.update_list",
        "dynamic_workflow.derive_count",
    ]


def test_generate_others_output_is_a_collection_of_promises() -> None:
    go = _load("generate_others")
    spec = _spec(go.generate_others, tasks_count=5)
    assert len(spec.nodes) == 5
    for i, node in enumerate(spec.nodes):
        assert node.task_node.task_id == go.other_task.id
        assert _bindings(node)["index"].literal == _lit(i, int)
    (out,) = spec.outputs
    assert out.var == "o0"
    assert list(out.binding.collection.bindings) == [_promise(f"n{i}", "o0") for i in range(5)]


def test_local_execution() -> None:
    dw, ms, go = _load("dynamic_workflow"), _load("merge_sort"), _load("generate_others")
    assert dw.return_index(character="c") == 2
    assert dw.count_characters("Pear", "Earth") == 3
    assert dw.count_characters(s1="abc", s2="xyz") == 0
    numbers = [1813, 3105, 3260, 2634, 383, 7037, 3291, 2403, 315, 7164]
    assert ms.merge_sort_remotely(numbers=numbers, run_local_at_count=2) == sorted(numbers)
    assert ms.split(numbers=[1, 2, 3]) == ([1], [2, 3], 1, 2)
    assert go.generate_others(tasks_count=4) == [0, 1, 4, 9]


def test_runtime_runs_tasks_and_reports_outputs() -> None:
    ms = _load("merge_sort")
    lm = literals_pb2.LiteralMap(literals={"numbers": _lit([3, 1, 2], list[int])})
    out = _runtime.execute(ms.split.template, lm)
    assert isinstance(out, literals_pb2.LiteralMap)
    assert _serialize.outputs_to_python(ms.split, out) == ([3], [1, 2], 1, 2)
    sorted_ = _runtime.execute(ms.sort_locally.template, lm)
    assert isinstance(sorted_, literals_pb2.LiteralMap)
    assert _serialize.outputs_to_python(ms.sort_locally, sorted_) == [1, 2, 3]
    inputs, defaults, outputs = _serialize.python_interface(ms.merge_sort)
    assert list(inputs) == ["numbers", "numbers_count", "run_local_at_count"]
    assert defaults == {"run_local_at_count": 5}
    assert outputs == {"o0": list[int]}
