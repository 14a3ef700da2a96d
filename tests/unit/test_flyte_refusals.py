"""Every Flyte field without a plait equivalent is refused, naming the entity and the field.

Each case starts from a small valid flyteidl message built by hand, sets one field and expects
exactly that refusal; fields that only place work on a cluster are notices, not refusals.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flyteidl.admin import launch_plan_pb2 as fa
from flyteidl.core import dynamic_job_pb2 as fdj
from flyteidl.core import identifier_pb2 as fid
from flyteidl.core import literals_pb2 as fl
from flyteidl.core import tasks_pb2 as ftk
from flyteidl.core import types_pb2 as ft
from flyteidl.core import workflow_pb2 as fw
from google.protobuf.message import Message
from plait.flyte import FlyteRefusedError, Options, to_plait
from plait.flyte._context import Context
from plait.flyte._package import Package, translate_package
from plaitidl.core.v1 import tasks_pb2 as ptk

ARGS = ["pyflyte-execute", "--inputs", "{{.input}}", "--output-prefix", "{{.outputPrefix}}"]
ARGS += ["--resolver", "flytekit.core.python_auto_container.default_task_resolver", "--"]
ARGS += ["task-module", "m", "task-name", "t"]


def task() -> ftk.TaskTemplate:
    t = ftk.TaskTemplate(type="python-task")
    t.id.resource_type = fid.TASK
    t.id.name = "m.t"
    t.interface.inputs.variables["x"].type.simple = ft.INTEGER
    t.interface.outputs.variables["o0"].type.simple = ft.INTEGER
    t.container.image = "img:1"
    t.container.args.extend(ARGS)
    return t


def workflow() -> fw.WorkflowTemplate:
    w = fw.WorkflowTemplate()
    w.id.resource_type = fid.WORKFLOW
    w.id.name = "m.wf"
    w.interface.inputs.variables["x"].type.simple = ft.INTEGER
    w.interface.outputs.variables["o0"].type.simple = ft.INTEGER
    n = w.nodes.add(id="n0")
    n.task_node.reference_id.name = "m.t"
    b = n.inputs.add(var="x")
    b.binding.promise.var = "x"
    out = w.outputs.add(var="o0")
    out.binding.promise.node_id = "n0"
    out.binding.promise.var = "o0"
    return w


def launch_plan() -> fa.LaunchPlan:
    lp = fa.LaunchPlan()
    lp.id.resource_type = fid.LAUNCH_PLAN
    lp.id.name = "m.lp"
    lp.spec.workflow_id.name = "m.wf"
    p = lp.spec.default_inputs.parameters["x"]
    p.var.type.simple = ft.INTEGER
    p.required = True
    return lp


def literal() -> fl.Literal:
    return fl.Literal(scalar=fl.Scalar(primitive=fl.Primitive(integer=1)))


def _array_over_workflow(w: fw.WorkflowTemplate) -> None:
    n = w.nodes[0]
    inner = fw.Node(id="inner")
    inner.workflow_node.sub_workflow_ref.name = "m.other"
    n.ClearField("task_node")
    n.array_node.node.CopyFrom(inner)


def _spec_with(t: Message) -> fdj.DynamicJobSpec:
    assert isinstance(t, ftk.TaskTemplate)
    return fdj.DynamicJobSpec(tasks=[t])


V = "template.interface.inputs.variables[x]"
TASK = "task 'm.t'"
WF = "workflow 'm.wf'"
LP = "launch plan 'm.lp'"
Case = tuple[str, Callable[[], Message], str, str]


def _t(change: Callable[[ftk.TaskTemplate], object]) -> Callable[[], Message]:
    def build() -> Message:
        t = task()
        change(t)
        return t

    return build


def _w(change: Callable[[fw.WorkflowTemplate], object]) -> Callable[[], Message]:
    def build() -> Message:
        w = workflow()
        change(w)
        return w

    return build


def _lp(change: Callable[[fa.LaunchPlan], object]) -> Callable[[], Message]:
    def build() -> Message:
        lp = launch_plan()
        change(lp)
        return lp

    return build


def _lit(change: Callable[[fl.Literal], object]) -> Callable[[], Message]:
    def build() -> Message:
        lit = literal()
        change(lit)
        return lit

    return build


CASES: list[Case] = [
    # -- task templates
    ("k8s_pod", _t(lambda t: t.k8s_pod.pod_spec.update({"a": 1})), TASK, "template.k8s_pod"),
    ("sql", _t(lambda t: setattr(t.sql, "statement", "select 1")), TASK, "template.sql"),
    ("secrets", _t(lambda t: t.security_context.secrets.add(group="g")), TASK,
     "template.security_context"),
    ("task config", _t(lambda t: t.config.update({"k": "v"})), TASK, "template.config"),
    ("plugin type", _t(lambda t: setattr(t, "type", "spark")), TASK, "template.type"),
    ("container config", _t(lambda t: t.container.config.add(key="k", value="v")), TASK,
     "template.container.config"),
    ("ports", _t(lambda t: t.container.ports.add(container_port=80)), TASK,
     "template.container.ports"),
    ("raw container", _t(lambda t: setattr(t.container.data_config, "enabled", True)), TASK,
     "template.container.data_config"),
    ("not flytekit", _t(lambda t: t.container.args.__setitem__(0, "python")), TASK,
     "template.container.args"),
    ("task template path", _t(lambda t: t.container.args.extend(["{{.taskTemplatePath}}"])),
     TASK, "template.container.args"),
    ("pod template name", _t(lambda t: setattr(t.metadata, "pod_template_name", "p")), TASK,
     "template.metadata.pod_template_name"),
    ("eager", _t(lambda t: setattr(t.metadata, "is_eager", True)), TASK,
     "template.metadata.is_eager"),
    ("no target", _t(lambda t: t.ClearField("container")), TASK, "template.target"),
    ("org", _t(lambda t: setattr(t.id, "org", "acme")), TASK, "template.id.org"),
    ("schema type", _t(lambda t: t.interface.inputs.variables["x"].type.schema.SetInParent()),
     TASK, f"{V}.type.schema"),
    ("structured dataset type", _t(lambda t: t.interface.inputs.variables["x"].type
     .structured_dataset_type.SetInParent()), TASK, f"{V}.type.structured_dataset_type"),
    ("error type", _t(lambda t: setattr(t.interface.inputs.variables["x"].type, "simple",
     ft.ERROR)), TASK, f"{V}.type.simple"),
    ("annotation", _t(lambda t: t.interface.inputs.variables["x"].type.annotation.annotations
     .update({"a": 1})), TASK, f"{V}.type.annotation"),
    ("type metadata", _t(lambda t: t.interface.inputs.variables["x"].type.metadata
     .update({"title": "x"})), TASK, f"{V}.type.metadata"),
    ("artifact", _t(lambda t: setattr(t.interface.inputs.variables["x"].artifact_tag
     .artifact_key, "name", "a")), TASK, f"{V}.artifact_tag"),
    ("map task input", _t(lambda t: t.container.args.__setitem__(0, "pyflyte-map-execute")),
     TASK, "template.interface.inputs.x"),
    # -- workflows and nodes
    ("failure node", _w(lambda w: w.failure_node.CopyFrom(w.nodes[0])), WF,
     "template.failure_node"),
    ("gate node", _w(lambda w: w.nodes[0].gate_node.sleep.duration.FromSeconds(5)), WF,
     "template.nodes[0].gate_node"),
    ("output aliases", _w(lambda w: w.nodes[0].output_aliases.add(var="o0", alias="y")), WF,
     "template.nodes[0].output_aliases"),
    ("cache serialize override", _w(lambda w: setattr(w.nodes[0].metadata,
     "cache_serializable", True)), WF, "template.nodes[0].metadata.cache_serializable"),
    ("node config", _w(lambda w: w.nodes[0].metadata.config.update({"k": "v"})), WF,
     "template.nodes[0].metadata.config"),
    ("image override", _w(lambda w: setattr(w.nodes[0].task_node.overrides,
     "container_image", "x")), WF, "template.nodes[0].task_node.overrides.container_image"),
    ("pod template override", _w(lambda w: w.nodes[0].task_node.overrides.pod_template
     .pod_spec.update({"a": 1})), WF, "template.nodes[0].task_node.overrides.pod_template"),
    ("array over a workflow", _w(_array_over_workflow), WF,
     "template.nodes[0].array_node.node"),
    ("run all sub nodes", _w(lambda w: setattr(w.nodes[0].array_node, "run_all_sub_nodes",
     True)), WF, "template.nodes[0].array_node.run_all_sub_nodes"),
    ("on failure policy", _w(lambda w: setattr(w.metadata, "on_failure",
     fw.WorkflowMetadata.FAIL_AFTER_EXECUTABLE_NODES_COMPLETE)), WF,
     "template.metadata.on_failure"),
    ("workflow tags", _w(lambda w: w.metadata.tags.update({"k": "v"})), WF,
     "template.metadata.tags"),
    ("offloaded binding", _w(lambda w: setattr(w.nodes[0].inputs[0].binding
     .offloaded_metadata, "uri", "s3://x")), WF, "template.nodes[0].inputs.x.offloaded_metadata"),
    ("error value", _w(lambda w: setattr(w.nodes[0].inputs[0].binding.scalar.error,
     "message", "m")), WF, "template.nodes[0].inputs.x.scalar.error"),
    # -- launch plans
    ("schedule", _lp(lambda lp: setattr(lp.spec.entity_metadata.schedule, "cron_expression",
     "* * * * *")), LP, "spec.entity_metadata"),
    ("role", _lp(lambda lp: setattr(lp.spec, "role", "r")), LP, "spec.role"),
    ("auth role", _lp(lambda lp: setattr(lp.spec.auth_role, "assumable_iam_role", "r")), LP,
     "spec.auth_role"),
    ("lp security", _lp(lambda lp: lp.spec.security_context.secrets.add(group="g")), LP,
     "spec.security_context"),
    ("raw output", _lp(lambda lp: setattr(lp.spec.raw_output_data_config,
     "output_location_prefix", "s3://b")), LP, "spec.raw_output_data_config"),
    ("overwrite cache", _lp(lambda lp: setattr(lp.spec, "overwrite_cache", True)), LP,
     "spec.overwrite_cache"),
    ("envs", _lp(lambda lp: lp.spec.envs.values.add(key="k", value="v")), LP, "spec.envs"),
    ("concurrency", _lp(lambda lp: setattr(lp.spec.concurrency_policy, "max", 1)), LP,
     "spec.concurrency_policy"),
    ("artifact query", _lp(lambda lp: setattr(lp.spec.default_inputs.parameters["x"]
     .artifact_query, "uri", "u")), LP, "spec.default_inputs.parameters[x].artifact_query"),
    # -- values
    ("schema value", _lit(lambda lit: setattr(lit.scalar.schema, "uri", "s3://x")), "value",
     "value.scalar.schema"),
    ("structured dataset value", _lit(lambda lit: setattr(lit.scalar.structured_dataset, "uri",
     "s3://x")), "value", "value.scalar.structured_dataset"),
    ("offloaded value", _lit(lambda lit: setattr(lit.offloaded_metadata, "uri", "s3://x")),
     "value", "value.offloaded_metadata"),
    # -- dynamic job specs
    ("embedded pod task", lambda: _spec_with(_t(lambda t: t.k8s_pod.pod_spec.update({"a": 1}))()
     ), TASK, "tasks[0].k8s_pod"),
]  # fmt: skip


@pytest.mark.parametrize(("build", "entity", "field"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_refused(build: Callable[[], Message], entity: str, field: str) -> None:
    msg = build()
    with pytest.raises(FlyteRefusedError) as info:
        to_plait(msg, generator=ptk.TaskTemplate())
    got = [(r.entity, r.field) for r in info.value.refusals]
    assert (entity, field) in got, got
    assert entity in str(info.value) and field in str(info.value)


def test_unrefused_bases_translate() -> None:
    for build in (task, workflow, launch_plan, literal):
        to_plait(build())


NOTICES = [
    ("resources", _t(lambda t: t.container.resources.requests.add(name=1, value="2")),
     "template.container.resources"),
    ("extended resources", _t(lambda t: setattr(t.extended_resources.gpu_accelerator, "device",
     "a100")), "template.extended_resources"),
    ("deck", _t(lambda t: setattr(t.metadata.generates_deck, "value", True)),
     "template.metadata.generates_deck"),
    ("resource override", _w(lambda w: w.nodes[0].task_node.overrides.resources.limits.add(
     name=1, value="2")), "template.nodes[0].task_node.overrides.resources"),
    ("labels", _lp(lambda lp: lp.spec.labels.values.update({"k": "v"})), "spec.labels"),
    ("quality of service", _w(lambda w: setattr(w.metadata.quality_of_service, "tier", 1)),
     "template.metadata.quality_of_service"),
]  # fmt: skip


@pytest.mark.parametrize(("build", "field"), [c[1:] for c in NOTICES], ids=[c[0] for c in NOTICES])
def test_placement_fields_are_notices(build: Callable[[], Message], field: str) -> None:
    from plait.flyte._graph import Graph, launch_plan_to_plait, workflow_to_plait
    from plait.flyte._ids import Scope
    from plait.flyte._tasks import task_to_plait

    msg = build()
    ctx = Context("x")
    if isinstance(msg, ftk.TaskTemplate):
        task_to_plait(msg, Options(), ctx, "template")
    elif isinstance(msg, fw.WorkflowTemplate):
        workflow_to_plait(msg, Graph(ctx, Options(), Scope()), "template")
    else:
        assert isinstance(msg, fa.LaunchPlan)
        launch_plan_to_plait(msg, Graph(ctx, Options(), Scope()), "")
    assert ctx.refusals == []
    assert [n.field for n in ctx.notices] == [field]


def test_all_refusals_of_a_package_are_reported_at_once() -> None:
    from flyteidl.admin import task_pb2, workflow_pb2

    bad_task = task()
    bad_task.k8s_pod.pod_spec.update({"a": 1})
    bad_wf = workflow()
    bad_wf.nodes[0].gate_node.sleep.duration.FromSeconds(1)
    pkg = Package(
        tasks=[task_pb2.TaskSpec(template=bad_task)],
        workflows=[workflow_pb2.WorkflowSpec(template=bad_wf)],
    )
    with pytest.raises(FlyteRefusedError) as info:
        translate_package(pkg, Options(version="v1"))
    fields = [(r.entity, r.field) for r in info.value.refusals]
    assert (TASK, "template.k8s_pod") in fields
    assert (WF, "template.nodes[0].gate_node") in fields
    assert "and 1 more" in str(info.value) or len(fields) > 2
