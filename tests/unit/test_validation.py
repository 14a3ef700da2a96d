"""Validation at the door: names, identifiers, nesting, labels and bounded errors.

Each refusal issue 10 lists is tried here as a caller would send it, in-process: the compiler
(or the pure helper the service layer will call) must refuse it with `InvalidArgument` naming
the field, and the error must stay small however large the input.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from google.protobuf.message import DecodeError
from plait_engine import compiler
from plait_engine.compiler import (
    Limits,
    compile_dynamic,
    compile_workflow,
    execution_name_problems,
    labels_problems,
    literal_depth_problems,
    resolve_execution_inputs,
    type_depth,
    validate_launch_plan,
    validate_task,
)
from plait_engine.compiler.validation import literal_depth, node_id_problem
from plait_engine.errors import InvalidArgument
from plait_engine.ids import START_NODE, id_key
from plaitidl.core.v1 import (
    dynamic_job_pb2,
    identifier_pb2,
    interface_pb2,
    literals_pb2,
    tasks_pb2,
    types_pb2,
    workflow_pb2,
)
from plaitidl.service.v1 import registry_service_pb2, worker_service_pb2

ROOT = Path(__file__).resolve().parents[2]
NASTY = ["..", "../../etc/passwd", "a/b", "nul\0byte", "x" * 10_000, ".", " lead", "é"]


INT = types_pb2.LiteralType(simple=types_pb2.SIMPLE_TYPE_INTEGER)
STRUCT = types_pb2.LiteralType(simple=types_pb2.SIMPLE_TYPE_STRUCT)


def lst(t: types_pb2.LiteralType) -> types_pb2.LiteralType:
    return types_pb2.LiteralType(collection_type=t)


def ilit(v: int) -> literals_pb2.Literal:
    return literals_pb2.Literal(
        scalar=literals_pb2.Scalar(primitive=literals_pb2.Primitive(integer=v))
    )


class DictResolver:
    """Registered templates from a `DynamicJobSpec`; counts lookups."""

    def __init__(self, registry: dynamic_job_pb2.DynamicJobSpec | None = None) -> None:
        reg = registry or dynamic_job_pb2.DynamicJobSpec()
        self.tasks = {id_key(t.id): t for t in reg.tasks}
        self.workflows = {id_key(w.id): w for w in reg.subworkflows}
        self.launch_plans = {id_key(lp.id): lp for lp in reg.launch_plans}
        self.calls = 0

    def get_task(self, id: identifier_pb2.Identifier) -> tasks_pb2.TaskTemplate | None:
        self.calls += 1
        return self.tasks.get(id_key(id))

    def get_workflow(self, id: identifier_pb2.Identifier) -> workflow_pb2.WorkflowTemplate | None:
        self.calls += 1
        return self.workflows.get(id_key(id))

    def get_launch_plan(self, id: identifier_pb2.Identifier) -> workflow_pb2.LaunchPlan | None:
        self.calls += 1
        return self.launch_plans.get(id_key(id))


def make_task(
    name: str, inputs: dict[str, types_pb2.LiteralType], outputs: dict[str, types_pb2.LiteralType]
) -> tasks_pb2.TaskTemplate:
    t = tasks_pb2.TaskTemplate(type="python-task")
    t.id.name, t.id.version = name, "v1"
    for n, ty in inputs.items():
        t.interface.inputs.variables.add(name=n).type.CopyFrom(ty)
    for n, ty in outputs.items():
        t.interface.outputs.variables.add(name=n).type.CopyFrom(ty)
    t.worker.queue, t.worker.handler = "q", f"m:{name}"
    return t


def task_node(nid: str, task: tasks_pb2.TaskTemplate, **inputs: object) -> workflow_pb2.Node:
    node = workflow_pb2.Node(id=nid)
    node.task_node.task_id.CopyFrom(task.id)
    for var, value in inputs.items():
        b = node.inputs.add(var=var)
        if isinstance(value, literals_pb2.Literal):
            b.binding.literal.CopyFrom(value)
        else:
            assert isinstance(value, tuple)
            b.binding.promise.node_id, b.binding.promise.var = value
    return node


def _raises(fn: object) -> InvalidArgument:
    assert callable(fn)
    with pytest.raises(InvalidArgument) as e:
        fn()
    err = e.value
    assert err.violations, err.message
    return err


def _size(err: InvalidArgument) -> int:
    return len(err.message) + sum(len(v.field) + len(v.description) for v in err.violations)


def _deep_type(n: int) -> types_pb2.LiteralType:
    """`list[list[...int]]`, `n` levels, built in place (no copy: deep copies hit the parser)."""
    t = types_pb2.LiteralType()
    cur = t
    for _ in range(n):
        cur = cur.collection_type
    cur.simple = types_pb2.SIMPLE_TYPE_INTEGER
    return t


def _deep_literal(n: int, into: literals_pb2.Literal | None = None) -> literals_pb2.Literal:
    lit = literals_pb2.Literal() if into is None else into
    cur = lit
    for _ in range(n):
        cur = cur.collection.literals.add()
    cur.scalar.primitive.integer = 1
    return lit


def _workflow(name: str = "w", **inputs: types_pb2.LiteralType) -> workflow_pb2.WorkflowTemplate:
    wf = workflow_pb2.WorkflowTemplate()
    wf.id.name, wf.id.version = name, "v1"
    for n, t in inputs.items():
        wf.interface.inputs.variables.add(name=n).type.CopyFrom(t)
    return wf


# --------------------------------------------------------------------------------------------
# Node ids


@pytest.mark.parametrize(
    "nid", [".", "..", "a/b", START_NODE, "", "-x", ".hidden", "nul\0", "x" * 64, "a b", "é"]
)
def test_node_ids_that_are_not_path_safe_are_refused(nid: str) -> None:
    sq = make_task("sq", {"x": INT}, {"o0": INT})
    spec = dynamic_job_pb2.DynamicJobSpec(tasks=[sq], nodes=[task_node(nid, sq, x=ilit(1))])
    err = _raises(lambda: compile_dynamic(spec, make_task("gen", {}, {}), DictResolver()))
    assert [v.field for v in err.violations] == ["nodes[0].id"]


@pytest.mark.parametrize("nid", ["a", "_x", "n0-case0", "a.b", "0", "x" * 63, "A-b_c.d"])
def test_path_safe_node_ids_are_accepted(nid: str) -> None:
    assert node_id_problem(nid) is None


def test_branch_case_and_array_inner_ids_are_checked() -> None:
    sq = make_task("sq", {"x": INT}, {"o0": INT})
    br = workflow_pb2.Node(id="br")
    br.inputs.add(var="n").binding.literal.CopyFrom(ilit(1))
    case = br.branch_node.case
    cmp = case.condition.comparison
    cmp.operator = cmp.OPERATOR_GT
    cmp.left_value.var = "n"
    cmp.right_value.literal.CopyFrom(ilit(0))
    case.then_node.CopyFrom(task_node("..", sq, x=ilit(1)))
    br.branch_node.else_node.CopyFrom(task_node("a/b", sq, x=ilit(2)))
    arr = workflow_pb2.Node(id="arr")
    arr.inputs.add(var="x").binding.literal.collection.literals.add().CopyFrom(ilit(1))
    arr.array_node.node.id = "../up"
    arr.array_node.node.task_node.task_id.CopyFrom(sq.id)
    spec = dynamic_job_pb2.DynamicJobSpec(tasks=[sq], nodes=[br, arr])
    err = _raises(lambda: compile_dynamic(spec, make_task("gen", {}, {}), DictResolver()))
    assert [v.field for v in err.violations] == [
        "nodes[0].branch_node.case.then_node.id",
        "nodes[0].branch_node.else_node.id",
        "nodes[1].array_node.node.id",
    ]


# --------------------------------------------------------------------------------------------
# Identifiers


@pytest.mark.parametrize("part", ["project", "domain", "name", "version"])
@pytest.mark.parametrize("value", NASTY)
def test_bad_identifier_parts_are_refused_everywhere(part: str, value: str) -> None:
    task = make_task("t", {"x": INT}, {"o0": INT})
    setattr(task.id, part, value)
    err = _raises(lambda: validate_task(task))
    assert err.violations[0].field == f"id.{part}"
    assert _size(err) < 4_000, "a 10,000-character name must not make a 10,000-byte error"
    assert "\0" not in err.message and all("\0" not in v.description for v in err.violations)

    # The same identifier as a reference: refused without being looked up.
    wf = _workflow(n=INT)
    wf.nodes.append(task_node("a", task, x=(START_NODE, "n")))
    resolver = DictResolver(dynamic_job_pb2.DynamicJobSpec(tasks=[task]))
    err = _raises(lambda: compile_workflow(wf, resolver))
    assert err.violations[0].field == f"nodes[0].task_node.task_id.{part}"
    assert resolver.calls == 0


def test_a_10000_character_project_is_refused_with_a_small_error() -> None:
    wf = _workflow()
    wf.id.project = "p" * 10_000
    err = _raises(lambda: compile_workflow(wf, DictResolver()))
    assert [v.field for v in err.violations] == ["id.project"]
    assert "(10000 characters)" in err.violations[0].description
    assert _size(err) < 2_000


def test_launch_plan_identifiers_are_checked() -> None:
    wf = _workflow(a=INT)
    resolver = DictResolver(dynamic_job_pb2.DynamicJobSpec(subworkflows=[wf]))
    lp = workflow_pb2.LaunchPlan()
    lp.id.name, lp.id.version = "../../etc/passwd", "v1"
    lp.workflow_id.CopyFrom(wf.id)
    lp.workflow_id.version = ".."
    err = _raises(lambda: validate_launch_plan(lp, resolver))
    assert [v.field for v in err.violations] == ["id.name", "workflow_id.version"]
    assert resolver.calls == 0


def test_reference_without_version_means_newest_and_is_accepted() -> None:
    sq = make_task("sq", {"x": INT}, {"o0": INT})
    newest = tasks_pb2.TaskTemplate()
    newest.CopyFrom(sq)
    newest.id.version = ""
    wf = _workflow(n=INT)
    node = wf.nodes.add(id="a")
    node.task_node.task_id.name = "sq"
    node.inputs.add(var="x").binding.promise.CopyFrom(
        literals_pb2.OutputReference(node_id=START_NODE, var="n")
    )
    compile_workflow(wf, DictResolver(dynamic_job_pb2.DynamicJobSpec(tasks=[newest])))


# --------------------------------------------------------------------------------------------
# Variable names


def test_binding_and_interface_names_are_bounded() -> None:
    task = make_task("t", {"x" * 256: INT}, {})
    err = _raises(lambda: validate_task(task))
    assert [v.field for v in err.violations] == ["interface.inputs[0].name"]
    assert "over 255 characters" in err.violations[0].description
    validate_task(make_task("t", {"x" * 255: INT}, {}))
    # A longer limit is a setting.
    validate_task(task, Limits(max_name_length=300))


# --------------------------------------------------------------------------------------------
# Nesting


def test_depth_counts_container_levels() -> None:
    union = types_pb2.LiteralType(
        union_type=types_pb2.UnionType(variants=[INT, lst(INT)]),
    )
    assert type_depth(INT) == 0
    assert type_depth(lst(INT)) == 1
    assert type_depth(union) == 2
    rec = types_pb2.LiteralType(
        record_type=types_pb2.RecordType(name="P", fields=[types_pb2.RecordField(name="x")])
    )
    assert type_depth(rec) == 1
    assert literal_depth(ilit(1)) == 0
    assert literal_depth(_deep_literal(3)) == 3
    tagged = literals_pb2.Literal()
    tagged.scalar.union.value.CopyFrom(ilit(1))
    tagged.scalar.union.type.CopyFrom(lst(lst(INT)))
    assert literal_depth(tagged) == 3  # the union level plus the type it carries
    js = literals_pb2.Literal()
    js.scalar.generic.update({"a": {"b": [1, {"c": 2}]}})
    assert literal_depth(js) == 4


def test_a_type_nested_95_deep_is_refused() -> None:
    task = make_task("t", {}, {"o0": INT})
    var = task.interface.inputs.variables.add(name="x")
    cur = var.type
    for _ in range(95):
        cur = cur.collection_type
    cur.simple = types_pb2.SIMPLE_TYPE_INTEGER
    err = _raises(lambda: validate_task(task))
    assert [(v.field, v.description) for v in err.violations] == [
        ("interface.inputs[0].type", "the type is nested 95 levels deep, over the limit of 24")
    ]


def test_a_type_nested_far_beyond_the_recursion_limit_is_refused_not_crashed_on() -> None:
    task = make_task("t", {}, {})
    cur = task.interface.inputs.variables.add(name="x").type
    for _ in range(5_000):
        cur = cur.collection_type
    cur.simple = types_pb2.SIMPLE_TYPE_INTEGER
    err = _raises(lambda: validate_task(task))
    assert "nested 5000 levels deep" in err.violations[0].description


def test_a_spec_nested_far_beyond_any_limit_is_refused_not_crashed_on() -> None:
    """20,000 levels: deeper than Python's recursion limit and deep enough that serializing
    the message would overflow the C stack; every part is refused before anything walks it
    recursively or serializes it."""
    n = 20_000
    spec = dynamic_job_pb2.DynamicJobSpec()
    spec.tasks.append(make_task("t", {"x": STRUCT}, {}))
    t_id = spec.tasks[0].id
    value = spec.nodes.add(id="a")
    value.task_node.task_id.CopyFrom(t_id)
    _deep_literal(n, value.inputs.add(var="x").binding.literal)
    variant = spec.nodes.add(id="b")
    variant.task_node.task_id.CopyFrom(t_id)
    b = variant.inputs.add(var="x").binding
    b.literal.CopyFrom(ilit(1))
    cur = b.union_variant
    for _ in range(n):
        cur = cur.collection_type
    cur.simple = types_pb2.SIMPLE_TYPE_INTEGER
    wf = spec.subworkflows.add()
    wf.id.name, wf.id.version = "w", "v1"
    cur = wf.interface.inputs.variables.add(name="x").type
    for _ in range(n):
        cur = cur.map_value_type
    cur.simple = types_pb2.SIMPLE_TYPE_INTEGER
    lp = spec.launch_plans.add()
    lp.id.name, lp.id.version = "lp", "v1"
    lp.workflow_id.CopyFrom(wf.id)
    lp.default_inputs.parameters.add().var.name = "x"
    spec.nodes.add(id="c").workflow_node.sub_workflow_id.CopyFrom(wf.id)
    spec.nodes.add(id="d").workflow_node.launch_plan_id.CopyFrom(lp.id)
    err = _raises(lambda: compile_dynamic(spec, make_task("gen", {}, {}), DictResolver()))
    assert sorted(v.field for v in err.violations) == [
        "nodes[0].inputs.x",
        "nodes[1].inputs.x",
        "subworkflows[0].interface.inputs[0].type",
    ]
    assert all(f"nested {n} levels deep" in v.description for v in err.violations)


def test_the_type_limit_is_a_setting_and_24_levels_pass() -> None:
    task = make_task("t", {"x": _deep_type(24)}, {})
    validate_task(task)
    task = make_task("t", {"x": _deep_type(25)}, {})
    _raises(lambda: validate_task(task))
    validate_task(task, Limits(max_type_depth=25))


def test_a_literal_nested_95_deep_in_a_default_is_refused() -> None:
    wf = _workflow(xs=lst(INT))
    p = wf.defaults.parameters.add()
    p.var.name = "xs"
    _deep_literal(95, p.default)
    err = _raises(lambda: compile_workflow(wf, DictResolver()))
    assert [v.field for v in err.violations] == ["defaults.parameters[0].default"]
    assert "nested 95 levels deep, over the limit of 24" in err.violations[0].description


def test_a_literal_nested_deep_in_a_launch_plan_is_refused() -> None:
    wf = _workflow(xs=lst(INT))
    resolver = DictResolver(dynamic_job_pb2.DynamicJobSpec(subworkflows=[wf]))
    lp = workflow_pb2.LaunchPlan()
    lp.id.name, lp.id.version = "lp", "v1"
    lp.workflow_id.CopyFrom(wf.id)
    _deep_literal(95, lp.fixed_inputs.literals["xs"])
    err = _raises(lambda: validate_launch_plan(lp, resolver))
    assert [v.field for v in err.violations] == ["fixed_inputs.xs"]


def test_execution_inputs_nested_too_deep_are_refused() -> None:
    iface = interface_pb2.TypedInterface()
    iface.inputs.variables.add(name="xs").type.CopyFrom(lst(INT))
    inputs = literals_pb2.LiteralMap()
    _deep_literal(3_000, inputs.literals["xs"])
    err = _raises(lambda: resolve_execution_inputs(iface, interface_pb2.ParameterMap(), inputs))
    assert [v.field for v in err.violations] == ["inputs.xs"]
    assert "nested 3000 levels deep" in err.violations[0].description


def test_literal_depth_problems_for_results_and_inputs() -> None:
    lm = literals_pb2.LiteralMap()
    lm.literals["ok"].CopyFrom(_deep_literal(24))
    _deep_literal(25, lm.literals["deep"])
    _deep_literal(95, lm.literals["deeper"])
    got = literal_depth_problems(lm, "outputs", 24)
    assert [v.field for v in got] == ["outputs.deep", "outputs.deeper"]
    assert literal_depth_problems(lm, "outputs", 100) == []


def _assignment_of_records(levels: int) -> bytes:
    lit = literals_pb2.Literal()
    cur = lit
    for _ in range(levels):
        # A record level costs three messages (Literal, Record, RecordValueField): the worst.
        cur = cur.record.fields.add(name="f").value
    cur.scalar.primitive.datetime.seconds = 1
    resp = worker_service_pb2.SessionResponse()
    resp.assignments.assignments.add().inputs.literals["x"].CopyFrom(lit)
    return resp.SerializeToString()


def test_the_limits_keep_values_encodable() -> None:
    """A value at the limit, wrapped as an assignment wraps it, still parses; 32 levels (the
    first proposal for the limit) would not."""
    limits = Limits()
    data = _assignment_of_records(limits.max_literal_depth)
    assert worker_service_pb2.SessionResponse.FromString(data).assignments.assignments
    with pytest.raises(DecodeError):
        worker_service_pb2.SessionResponse.FromString(_assignment_of_records(32))


# --------------------------------------------------------------------------------------------
# Bounded errors


def test_a_workflow_with_10000_problems_gets_a_bounded_error() -> None:
    sq = make_task("sq", {"x": INT}, {"o0": INT})
    wf = _workflow()
    for i in range(10_000):
        node = task_node(f"n{i}", sq, x=ilit(i))
        node.task_node.task_id.name = f"missing{i}"  # one distinct problem per node
        wf.nodes.append(node)
    err = _raises(lambda: compile_workflow(wf, DictResolver()))
    assert len(err.violations) == compiler.MAX_VIOLATIONS
    assert err.message.endswith("(and 9999 more violations)")
    assert err.violations[-1].description == "... and 9901 more violations (not listed)"
    assert _size(err) < 20_000


def test_long_names_in_many_violations_stay_bounded() -> None:
    gen = make_task("gen", {}, {})
    spec = dynamic_job_pb2.DynamicJobSpec()
    for i in range(500):
        spec.nodes.add(id=f"{i}" + "x" * 10_000)
    err = _raises(lambda: compile_dynamic(spec, gen, DictResolver()))
    assert len(err.violations) == compiler.MAX_VIOLATIONS
    assert _size(err) < 100 * 1_500


# --------------------------------------------------------------------------------------------
# Executions: names and labels


@pytest.mark.parametrize("name", ["..", ".", "/", "a/b", "x" * 65, "-a", "nul\0", "a.b"])
def test_bad_execution_names(name: str) -> None:
    got = execution_name_problems(name)
    assert [v.field for v in got] == ["name"]


@pytest.mark.parametrize("name", ["", "x1f3a", "fan-1000", "cli-stop-me", "A_b", "x" * 64])
def test_good_execution_names(name: str) -> None:
    assert execution_name_problems(name) == []


def test_an_8_mb_label_is_refused() -> None:
    got = labels_problems({"team": "api", "blob": "x" * (8 << 20)})
    assert [v.field for v in got] == ["labels.blob", "labels"]
    assert "8388608 bytes, over the limit of 255" in got[0].description
    assert sum(len(v.description) for v in got) < 500


def test_label_counts_keys_and_values() -> None:
    assert labels_problems({"plait.source": "/home/u/wf.py", "plait.entity": "wf"}) == []
    many = {f"k{i}": "v" for i in range(65)}
    assert [v.field for v in labels_problems(many)] == ["labels"]
    bad = labels_problems({"a/b": "v", "": "v", "k" * 64: "v", "ok": "nul\0"})
    assert len(bad) == 4
    assert bad[-1].field == "labels.ok" and "NUL" in bad[-1].description
    total = {f"k{i}": "v" * 255 for i in range(64)}
    assert [v.field for v in labels_problems(total)] == ["labels"]
    huge = {f"k{i}" * 10: "v" for i in range(100_000)}
    assert len(labels_problems(huge)) <= 64 + 2


# --------------------------------------------------------------------------------------------
# What the SDK produces is still accepted


@pytest.mark.parametrize("stem", ["dynamic_wf", "merge_sort", "fan_out"])
def test_golden_templates_are_accepted(stem: str) -> None:
    text = (ROOT / "tests" / "golden" / "templates" / f"{stem}.textproto").read_text()
    req = text_format.Parse(text, registry_service_pb2.RegisterRequest())
    bundle = dynamic_job_pb2.DynamicJobSpec(
        tasks=req.tasks, subworkflows=req.workflows, launch_plans=req.launch_plans
    )
    resolver = DictResolver(bundle)
    for t in req.tasks:
        validate_task(t)
    for w in req.workflows:
        closure = compile_workflow(w, resolver)
        assert {id_key(t.id) for t in closure.tasks} <= set(resolver.tasks)
    for lp in req.launch_plans:
        validate_launch_plan(lp, resolver)


def test_identifier_kind_is_still_checked() -> None:
    task = make_task("t", {}, {})
    task.id.resource_type = identifier_pb2.RESOURCE_TYPE_WORKFLOW
    err = _raises(lambda: validate_task(task))
    assert [v.field for v in err.violations] == ["id.resource_type"]
