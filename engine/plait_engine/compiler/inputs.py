"""A caller's execution inputs: checked against the interface, completed with defaults."""

from __future__ import annotations

from plaitidl.core.v1 import interface_pb2, literals_pb2

from plait_engine.compiler.limits import DEFAULT_LIMITS, Limits
from plait_engine.compiler.report import raise_problems
from plait_engine.compiler.templates import literal_value_problem
from plait_engine.compiler.validation import Problem, show
from plait_engine.type_check import type_str

__all__ = ["resolve_execution_inputs"]


def resolve_execution_inputs(
    interface: interface_pb2.TypedInterface,
    defaults: interface_pb2.ParameterMap,
    inputs: literals_pb2.LiteralMap,
    fixed: literals_pb2.LiteralMap | None = None,
    *,
    limits: Limits = DEFAULT_LIMITS,
) -> literals_pb2.LiteralMap:
    """Validate a caller's execution inputs and complete them with defaults and fixed inputs.

    Args:
        interface: The workflow's interface.
        defaults: Defaults (the workflow's, or a launch plan's default_inputs). A parameter
            marked `required` has no default.
        inputs: What the caller gave.
        fixed: A launch plan's fixed inputs; the caller may not give them.
        limits: Bounds to enforce (the nesting of each value).

    Returns:
        The complete inputs: the caller's, then defaults for what is missing, then fixed.

    Raises:
        InvalidArgument: Field ``inputs.<name>`` for an unknown, fixed, missing, mistyped or
            too deeply nested input; all problems at once.
    """
    fixed_map = fixed.literals if fixed is not None else {}
    types = {v.name: v.type for v in interface.inputs.variables}
    default_of = {
        p.var.name: p.default for p in defaults.parameters if p.WhichOneof("behavior") == "default"
    }
    problems: list[Problem] = []
    result = literals_pb2.LiteralMap()
    for name in sorted(inputs.literals):
        f = f"inputs.{name}"
        t = types.get(name)
        if t is None:
            known = ", ".join(types) or "none"
            problems.append((f, f"unknown input {show(name)} (inputs: {known})"))
        elif name in fixed_map:
            problems.append((f, f"input {name!r} is fixed by the launch plan and cannot be set"))
        else:
            p = literal_value_problem(inputs.literals[name], t, limits)
            if p is not None:
                problems.append((f, f"input {name!r}: {p}"))
            else:
                result.literals[name].CopyFrom(inputs.literals[name])
    for name, t in types.items():
        if name in inputs.literals:
            continue
        if name in fixed_map:
            result.literals[name].CopyFrom(fixed_map[name])
        elif name in default_of:
            result.literals[name].CopyFrom(default_of[name])
        else:
            problems.append((f"inputs.{name}", f"missing required input {name!r} ({type_str(t)})"))
    raise_problems("execution inputs", problems)
    return result
