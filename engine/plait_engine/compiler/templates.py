"""Checks of one template on its own: identifiers, interfaces, retries, targets, launch plans."""

from __future__ import annotations

import re

from plaitidl.core.v1 import (
    identifier_pb2,
    interface_pb2,
    literals_pb2,
    tasks_pb2,
    types_pb2,
    workflow_pb2,
)

from plait_engine.compiler.limits import DEFAULT_LIMITS, MAX_RETRIES, Limits, Resolver
from plait_engine.compiler.report import raise_problems
from plait_engine.compiler.validation import (
    Problem,
    identifier_problems,
    literal_depth_problem,
    show,
    type_depth_problem,
)
from plait_engine.ids import id_key
from plait_engine.type_check import literal_problem, same_type, type_problems, type_str

__all__ = [
    "interface_problems",
    "launch_plan_problems",
    "literal_value_problem",
    "reference_problems",
    "task_problems",
    "template_id_problems",
    "validate_launch_plan",
    "validate_task",
]

_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A secret's name is a file name in a secrets folder: nothing that could leave it.
_SECRET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,252}")
_ENV_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
_RT = identifier_pb2.ResourceType


def template_id_problems(
    id: identifier_pb2.Identifier, field: str, kind: identifier_pb2.ResourceType.ValueType
) -> list[Problem]:
    """Problems of the identifier a template is registered under.

    Args:
        id: The identifier.
        field: Its field path.
        kind: The resource type the template has (an unspecified one is accepted).

    Returns:
        Problems of charset, length, presence and resource type.
    """
    out = identifier_problems(id, field)
    if id.resource_type not in (identifier_pb2.RESOURCE_TYPE_UNSPECIFIED, kind):
        out.append(
            (
                f"{field}.resource_type",
                f"resource_type is {_RT.Name(id.resource_type)}, expected {_RT.Name(kind)}",
            )
        )
    return out


def reference_problems(id: identifier_pb2.Identifier, field: str) -> list[Problem]:
    """Problems of an identifier that refers to a template (an empty version means newest).

    A reference with problems is never looked up: its name could be a path or hold NUL.
    """
    return identifier_problems(id, field, reference=True)


def literal_value_problem(
    lit: literals_pb2.Literal, t: types_pb2.LiteralType, limits: Limits
) -> str | None:
    """Why a literal in a template (a default, a fixed input) does not fit its type, or None.

    The nesting is checked first: the type checks recurse and must never see a value nested
    beyond the limit.
    """
    return literal_depth_problem(lit, limits.max_literal_depth) or literal_problem(lit, t)


def _variables_problems(
    vmap: interface_pb2.VariableMap, field: str, limits: Limits
) -> list[Problem]:
    out: list[Problem] = []
    seen: set[str] = set()
    for i, v in enumerate(vmap.variables):
        f = f"{field}[{i}]"
        if len(v.name) > limits.max_name_length:
            out.append((f"{f}.name", f"{show(v.name)} is over {limits.max_name_length} characters"))
        elif not _VAR_NAME.fullmatch(v.name):
            out.append((f"{f}.name", f"{show(v.name)} is not a valid identifier"))
        elif v.name in seen:
            out.append((f"{f}.name", f"duplicate variable {v.name!r}"))
        seen.add(v.name)
        if not v.HasField("type"):
            out.append((f"{f}.type", f"variable {show(v.name)} has no type"))
            continue
        deep = type_depth_problem(v.type, limits.max_type_depth)
        if deep is not None:
            out.append((f"{f}.type", deep))
        else:
            out.extend(type_problems(v.type, f"{f}.type"))
    return out


def interface_problems(
    iface: interface_pb2.TypedInterface, field: str, limits: Limits
) -> list[Problem]:
    """Problems of an interface: variable names, duplicates, well-formed and shallow types."""
    return _variables_problems(iface.inputs, f"{field}.inputs", limits) + _variables_problems(
        iface.outputs, f"{field}.outputs", limits
    )


def _retry_problems(r: tasks_pb2.RetryStrategy, field: str) -> list[Problem]:
    out: list[Problem] = []
    if r.retries > MAX_RETRIES:
        out.append((f"{field}.retries", f"{r.retries} retries is over the limit of {MAX_RETRIES}"))
    if r.HasField("system_retries") and r.system_retries > MAX_RETRIES:
        out.append(
            (
                f"{field}.system_retries",
                f"{r.system_retries} system retries is over the limit of {MAX_RETRIES}",
            )
        )
    return out


def _target_problems(task: tasks_pb2.TaskTemplate) -> list[Problem]:
    target = task.WhichOneof("target")
    if target is None:
        return [("target", "the task has no target (worker or process)")]
    out: list[Problem] = []
    if target == "worker":
        if not task.worker.queue:
            out.append(("worker.queue", "a worker target needs a queue"))
        if not task.worker.handler:
            out.append(("worker.handler", "a worker target needs a handler"))
    elif not task.process.command or not task.process.command[0]:
        out.append(("process.command", "a process target needs a command"))
    return out


def _secret_problems(md: tasks_pb2.TaskMetadata) -> list[Problem]:
    out: list[Problem] = []
    seen: set[str] = set()
    for i, s in enumerate(md.secrets):
        f = f"metadata.secrets[{i}]"
        if not _SECRET_NAME.fullmatch(s.name):
            out.append(
                (f"{f}.name", f"{show(s.name)} is not a secret name ([A-Za-z0-9][A-Za-z0-9_.-]*)")
            )
        elif s.name in seen:
            out.append((f"{f}.name", f"secret {s.name!r} is named twice"))
        seen.add(s.name)
        if s.env_var and not _ENV_VAR.fullmatch(s.env_var):
            out.append((f"{f}.env_var", f"{show(s.env_var)} is not an environment variable name"))
    return out


def task_problems(task: tasks_pb2.TaskTemplate, limits: Limits) -> list[Problem]:
    """Every problem of a task template; field paths are relative to the task."""
    out = template_id_problems(task.id, "id", identifier_pb2.RESOURCE_TYPE_TASK)
    out.extend(interface_problems(task.interface, "interface", limits))
    md = task.metadata
    out.extend(_retry_problems(md.retries, "metadata.retries"))
    if md.timeout.seconds < 0 or md.timeout.nanos < 0:
        out.append(("metadata.timeout", "the timeout is negative"))
    inputs = {v.name for v in task.interface.inputs.variables}
    for i, name in enumerate(md.cache_ignore_inputs):
        if name not in inputs:
            out.append((f"metadata.cache_ignore_inputs[{i}]", f"{show(name)} is not an input"))
    out.extend(_secret_problems(md))
    out.extend(_target_problems(task))
    return out


def validate_task(task: tasks_pb2.TaskTemplate, limits: Limits = DEFAULT_LIMITS) -> None:
    """Check a task template on its own.

    The identifier has a name and version within the charset and length rules of
    `validation`; interface variable names are valid identifiers, unique, and their types
    well formed and within the nesting limit; the target is complete (a worker target names a
    queue and a handler, a process target a command); retry budgets are at most `MAX_RETRIES`
    and the timeout is not negative.

    Args:
        task: The template.
        limits: Bounds to enforce.

    Raises:
        InvalidArgument: With one violation per problem; field paths are relative to the task.
    """
    raise_problems(f"task {id_key(task.id)}", task_problems(task, limits))


def _fixed_input_problems(
    lp: workflow_pb2.LaunchPlan, types: dict[str, types_pb2.LiteralType], limits: Limits
) -> list[Problem]:
    out: list[Problem] = []
    for name in sorted(lp.fixed_inputs.literals):
        t = types.get(name)
        if t is None:
            out.append((f"fixed_inputs.{name}", f"{show(name)} is not an input of the workflow"))
            continue
        p = literal_value_problem(lp.fixed_inputs.literals[name], t, limits)
        if p is not None:
            out.append((f"fixed_inputs.{name}", p))
    return out


def _default_input_problems(
    lp: workflow_pb2.LaunchPlan, wf: workflow_pb2.WorkflowTemplate, limits: Limits
) -> list[Problem]:
    types = {v.name: v.type for v in wf.interface.inputs.variables}
    out: list[Problem] = []
    for i, param in enumerate(lp.default_inputs.parameters):
        name = param.var.name
        f = f"default_inputs.parameters[{i}]"
        t = types.get(name)
        if t is None:
            out.append((f"{f}.var.name", f"{show(name)} is not an input of the workflow"))
            continue
        if name in lp.fixed_inputs.literals:
            out.append((f"{f}.var.name", f"{name!r} is both fixed and defaulted"))
        if param.var.HasField("type"):
            declared = param.var.type
            deep = type_depth_problem(declared, limits.max_type_depth)
            if deep is not None:
                out.append((f"{f}.var.type", deep))
            elif not same_type(declared, t):
                out.append(
                    (
                        f"{f}.var.type",
                        f"declared {type_str(declared)}, the workflow says {type_str(t)}",
                    )
                )
        if param.WhichOneof("behavior") == "default":
            p = literal_value_problem(param.default, t, limits)
            if p is not None:
                out.append((f"{f}.default", p))
    return out


def launch_plan_problems(
    lp: workflow_pb2.LaunchPlan, wf: workflow_pb2.WorkflowTemplate | None, limits: Limits
) -> list[Problem]:
    """Every problem of a launch plan, given its workflow (None: not found).

    Args:
        lp: The launch plan.
        wf: Its workflow; not consulted when `lp.workflow_id` itself has problems.
        limits: Bounds to enforce.

    Returns:
        Problems; field paths are relative to the launch plan.
    """
    out = template_id_problems(lp.id, "id", identifier_pb2.RESOURCE_TYPE_LAUNCH_PLAN)
    ref = reference_problems(lp.workflow_id, "workflow_id")
    if ref:
        return out + ref
    if wf is None:
        out.append(("workflow_id", f"workflow {id_key(lp.workflow_id)} not found"))
        return out
    types = {v.name: v.type for v in wf.interface.inputs.variables}
    out.extend(_fixed_input_problems(lp, types, limits))
    out.extend(_default_input_problems(lp, wf, limits))
    return out


def validate_launch_plan(
    lp: workflow_pb2.LaunchPlan, resolver: Resolver, limits: Limits = DEFAULT_LIMITS
) -> None:
    """Check a launch plan against its (registered) workflow.

    Args:
        lp: The launch plan.
        resolver: Where its workflow is looked up.
        limits: Bounds to enforce.

    Raises:
        InvalidArgument: When an identifier breaks the rules of `validation`, the workflow is
            unknown, a fixed or default input names no input of the workflow, has the wrong
            type or nests too deeply, or an input is both fixed and defaulted.
    """
    ok_ref = not reference_problems(lp.workflow_id, "workflow_id")
    wf = resolver.get_workflow(lp.workflow_id) if ok_ref else None
    raise_problems(f"launch plan {id_key(lp.id)}", launch_plan_problems(lp, wf, limits))
