"""From SDK objects to the protos a client registers, and back to Python values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from plaitidl.core.v1 import identifier_pb2, literals_pb2, tasks_pb2, workflow_pb2

from plait import _types
from plait._constants import START_NODE, TASK_NODE
from plait._errors import PlaitTypeError, PlaitValueError
from plait._launch_plan import LaunchPlan
from plait._map import MapTask
from plait._task import Task
from plait._workflow import Workflow

if TYPE_CHECKING:
    from plaitidl.service.v1 import registry_service_pb2 as rs


@dataclass(frozen=True)
class Bundle:
    """Every template reachable from one entity, root first, each once.

    Attributes:
        tasks: Task templates, in order of first reference.
        workflows: Workflow templates (the root first when it is a workflow).
        launch_plans: Launch plans.
        root: The identifier of the entity collected.
    """

    tasks: list[tasks_pb2.TaskTemplate]
    workflows: list[workflow_pb2.WorkflowTemplate]
    launch_plans: list[workflow_pb2.LaunchPlan]
    root: identifier_pb2.Identifier

    def register_request(self) -> rs.RegisterRequest:
        """The bundle as a `RegisterRequest` (without a request id)."""
        # The service protos are for clients: `import plait` (which defines tasks) skips them.
        from plaitidl.service.v1 import registry_service_pb2

        return registry_service_pb2.RegisterRequest(
            tasks=self.tasks, workflows=self.workflows, launch_plans=self.launch_plans
        )


Entity = Task[Any, Any] | Workflow[Any, Any] | LaunchPlan[Any]


def closure(
    entities: list[Any],
) -> tuple[
    list[tasks_pb2.TaskTemplate], list[workflow_pb2.WorkflowTemplate], list[workflow_pb2.LaunchPlan]
]:
    """Templates of `entities` and of everything they reference, transitively, each once.

    A dynamic's body is not run, so what it calls is not included (the engine gets that from
    the spec it yields).
    """
    tasks: dict[str, tasks_pb2.TaskTemplate] = {}
    workflows: dict[str, workflow_pb2.WorkflowTemplate] = {}
    lps: dict[str, workflow_pb2.LaunchPlan] = {}

    def add(seen: dict[str, Any], template: Any) -> bool:
        name, version = template.id.name, template.id.version
        old = seen.get(name)
        if old is not None:
            if old.id.version != version:
                raise PlaitValueError(
                    f"two different definitions named '{name}' are referenced "
                    f"(versions {old.id.version} and {version}); give one of them another name"
                )
            return False
        seen[name] = template
        return True

    def visit(e: Any) -> None:
        if isinstance(e, Task):
            add(tasks, e.template)
        elif isinstance(e, Workflow):
            if add(workflows, e.template):
                for r in e._references():
                    visit(r)
        elif isinstance(e, LaunchPlan):
            if add(lps, e.proto):
                visit(e.workflow)
        elif isinstance(e, MapTask):
            visit(e.task)
        else:
            raise PlaitTypeError(f"cannot serialize {e!r}: not a task, workflow or launch plan")

    for e in entities:
        visit(e)
    return list(tasks.values()), list(workflows.values()), list(lps.values())


def collect(entity: Entity) -> Bundle:
    """Every template transitively reachable from a task, workflow or launch plan.

    Args:
        entity: A ``@task``, ``@dynamic``, ``@workflow`` or `LaunchPlan`.

    Returns:
        The `Bundle`; compiling the workflows it needs on the way.
    """
    tasks, workflows, lps = closure([entity])
    if isinstance(entity, Task):
        # Executions run workflows: a task run on its own gets a one-node workflow of the
        # same name and version.
        wrapper = _task_workflow(entity)
        return Bundle(tasks=tasks, workflows=[wrapper, *workflows], launch_plans=lps,
                      root=wrapper.id)  # fmt: skip
    return Bundle(tasks=tasks, workflows=workflows, launch_plans=lps, root=entity.id)


def _task_workflow(task: Task[Any, Any]) -> workflow_pb2.WorkflowTemplate:
    t = task.template
    wf = workflow_pb2.WorkflowTemplate(interface=t.interface)
    wf.id.CopyFrom(t.id)
    wf.id.resource_type = identifier_pb2.RESOURCE_TYPE_WORKFLOW
    node = wf.nodes.add(id=TASK_NODE)
    node.task_node.task_id.CopyFrom(t.id)
    for v in t.interface.inputs.variables:
        b = node.inputs.add(var=v.name)
        b.binding.promise.node_id = START_NODE
        b.binding.promise.var = v.name
    for v in t.interface.outputs.variables:
        o = wf.outputs.add(var=v.name)
        o.binding.promise.node_id = TASK_NODE
        o.binding.promise.var = v.name
    pi = task.python_interface
    for name, default in pi.defaults.items():
        p = wf.defaults.parameters.add()
        p.var.name = name
        p.var.type.CopyFrom(
            _types.literal_type(pi.inputs[name], where=f"{pi.where}, input {name!r}")
        )
        p.default.CopyFrom(_types.to_literal(default, pi.inputs[name], var=name))
    return wf


def python_interface(entity: Entity) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The Python view of an entity's interface, for parsing arguments and decoding outputs.

    Returns:
        ``(inputs, defaults, outputs)``: input name -> type hint (declaration order), input name
        -> Python default value, output name -> type hint.
    """
    pi = entity.python_interface
    return dict(pi.inputs), dict(pi.defaults), dict(pi.outputs)


def outputs_to_python(entity: Entity, outputs: literals_pb2.LiteralMap) -> object:
    """An execution's outputs as the entity's function would have returned them.

    Returns:
        None for no outputs, the value for one output, a tuple (or the declared NamedTuple)
        for several.
    """
    pi = entity.python_interface
    values = [
        _types.to_python(outputs.literals[n], h, var=n) if n in outputs.literals else None
        for n, h in pi.outputs.items()
    ]
    missing = [n for n in pi.outputs if n not in outputs.literals]
    if missing:
        raise PlaitValueError(f"{pi.where}: outputs {missing} are missing from the result")
    if pi.output_kind == "none":
        return None
    if pi.output_kind == "single":
        return values[0]
    if pi.output_kind == "namedtuple":
        assert pi.output_class is not None
        return pi.output_class(*values)
    return tuple(values)
