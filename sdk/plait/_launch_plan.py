"""`LaunchPlan`: a workflow with fixed inputs and its own defaults."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from plaitidl.core.v1 import identifier_pb2, interface_pb2, literals_pb2, workflow_pb2

from plait import _types
from plait._constants import DEFAULT_DOMAIN, DEFAULT_PROJECT
from plait._context import Builder, current
from plait._errors import PlaitTypeError, PlaitValueError
from plait._interface import PyInterface, bind_arguments, digest
from plait._promise import add_call
from plait._workflow import Workflow

R = TypeVar("R")


class LaunchPlan(Generic[R]):
    """A named way to launch a workflow: some inputs fixed, others with new defaults.

    Args:
        workflow: The workflow launched.
        name: The launch plan's registered name.
        fixed_inputs: Inputs that callers cannot change.
        default_inputs: Defaults that override the workflow's own.
        schedule: Start an execution on every tick: a cron expression in UTC
            (``"0 * * * *"``, ``"@daily"``) or a `timedelta` (a fixed rate). A server runs
            it once the launch plan is registered; `plait schedules` pauses and resumes it.
        kickoff_time_input: A datetime input of the workflow that receives the tick's time.
        catch_up: Ticks missed while no engine ran: ``"latest"`` (run the last one, the
            default), ``"all"`` or ``"none"``.

    Raises:
        PlaitTypeError: An input name is not an input of the workflow.
        PlaitValueError: An input is both fixed and defaulted, or the schedule is malformed.
    """

    def __init__(
        self,
        workflow: Workflow[Any, R],
        name: str,
        fixed_inputs: Mapping[str, Any] | None = None,
        default_inputs: Mapping[str, Any] | None = None,
        *,
        schedule: str | timedelta | None = None,
        kickoff_time_input: str = "",
        catch_up: str = "latest",
    ) -> None:
        if not isinstance(workflow, Workflow):
            raise PlaitTypeError(f"LaunchPlan needs a @workflow, not {workflow!r}")
        if not name:
            raise PlaitValueError("LaunchPlan needs a name")
        self.workflow = workflow
        self.name = name
        self.fixed_inputs = dict(fixed_inputs or {})
        default_inputs = dict(default_inputs or {})
        wi = workflow.python_interface
        for kind, given in (("fixed", self.fixed_inputs), ("default", default_inputs)):
            for k in given:
                if k not in wi.inputs:
                    raise PlaitTypeError(
                        f"launch plan '{name}': {kind} input '{k}' is not an input of workflow "
                        f"'{workflow.name}' (inputs: {', '.join(wi.inputs) or '(none)'})"
                    )
        both = set(self.fixed_inputs) & set(default_inputs)
        if both:
            raise PlaitValueError(
                f"launch plan '{name}': input(s) {sorted(both)} are both fixed and defaulted"
            )
        inputs = {n: h for n, h in wi.inputs.items() if n not in self.fixed_inputs}
        defaults = {n: v for n, v in {**wi.defaults, **default_inputs}.items() if n in inputs}
        self.python_interface = PyInterface(
            where=f"launch plan '{name}'",
            inputs=inputs,
            defaults=defaults,
            outputs=wi.outputs,
            output_kind=wi.output_kind,
            output_class=wi.output_class,
            input_types={n: wi.input_types[n] for n in inputs},
            output_types=wi.output_types,
        )
        self._schedule = _schedule(name, schedule, kickoff_time_input, catch_up, wi)
        # Fail now, not at registration, when a value does not fit.
        self._fixed = {
            n: _types.to_literal(v, wi.inputs[n], var=n) for n, v in self.fixed_inputs.items()
        }
        self._defaults = {n: _types.to_literal(v, wi.inputs[n], var=n) for n, v in defaults.items()}

    @property
    def short_name(self) -> str:
        """Node display name."""
        return self.name.rsplit(".", 1)[-1]

    @functools.cached_property
    def proto(self) -> workflow_pb2.LaunchPlan:
        """The `LaunchPlan` proto; its version is a digest of its content."""
        types = self.python_interface.input_types
        lp = workflow_pb2.LaunchPlan(
            id=identifier_pb2.Identifier(
                resource_type=identifier_pb2.RESOURCE_TYPE_LAUNCH_PLAN,
                project=DEFAULT_PROJECT,
                domain=DEFAULT_DOMAIN,
                name=self.name,
            ),
            workflow_id=self.workflow.id,
            fixed_inputs=literals_pb2.LiteralMap(literals=self._fixed),
            default_inputs=interface_pb2.ParameterMap(
                parameters=[
                    interface_pb2.Parameter(
                        var=interface_pb2.Variable(name=n, type=t), default=self._defaults[n]
                    )
                    if n in self._defaults
                    else interface_pb2.Parameter(
                        var=interface_pb2.Variable(name=n, type=t), required=True
                    )
                    for n, t in types.items()
                ]
            ),
        )
        if self._schedule is not None:
            lp.schedule.CopyFrom(self._schedule)
        lp.id.version = digest(lp.SerializeToString(deterministic=True))
        return lp

    @property
    def template(self) -> workflow_pb2.LaunchPlan:
        """Same as `proto`, for symmetry with tasks and workflows."""
        return self.proto

    @property
    def id(self) -> identifier_pb2.Identifier:
        """The launch plan's identifier."""
        return self.proto.id

    def _references(self) -> list[Any]:
        return [self.workflow]

    def _set_node_target(self, node: workflow_pb2.Node) -> None:
        node.workflow_node.launch_plan_id.CopyFrom(self.id)

    def __repr__(self) -> str:
        return f"<launch plan {self.name} of {self.workflow.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> R:
        """In a workflow or dynamic body: adds a launch-plan node. Elsewhere: runs it."""
        ctx = current()
        iface = self.python_interface
        if isinstance(ctx, Builder):
            return add_call(  # type: ignore[no-any-return]
                ctx, self, bind_arguments(iface, args, kwargs, positional_ok=False)
            )
        bound = bind_arguments(iface, args, kwargs, positional_ok=True)
        merged = {**iface.defaults, **bound, **self.fixed_inputs}
        return self.workflow(**merged)


_CATCH_UP = {
    "latest": workflow_pb2.Schedule.CATCH_UP_LATEST,
    "all": workflow_pb2.Schedule.CATCH_UP_ALL,
    "none": workflow_pb2.Schedule.CATCH_UP_NONE,
}


def _schedule(
    name: str,
    schedule: str | timedelta | None,
    kickoff: str,
    catch_up: str,
    wi: PyInterface,
) -> workflow_pb2.Schedule | None:
    """The `Schedule` proto of a launch plan's options (the engine checks a cron in full)."""
    if schedule is None:
        if kickoff:
            raise PlaitValueError(f"launch plan '{name}': kickoff_time_input needs a schedule")
        return None
    out = workflow_pb2.Schedule(kickoff_time_input=kickoff)
    if isinstance(schedule, timedelta):
        if schedule.total_seconds() < 1:
            raise PlaitValueError(f"launch plan '{name}': a fixed rate is at least 1 second")
        out.fixed_rate.FromTimedelta(schedule)
    elif isinstance(schedule, str) and (schedule.startswith("@") or len(schedule.split()) == 5):
        out.cron = schedule
    else:
        raise PlaitValueError(
            f"launch plan '{name}': schedule must be a cron expression of 5 fields (or @daily, "
            f"@hourly, ...) or a timedelta, got {schedule!r}"
        )
    if catch_up not in _CATCH_UP:
        raise PlaitValueError(
            f"launch plan '{name}': catch_up must be one of {sorted(_CATCH_UP)}, got {catch_up!r}"
        )
    out.catch_up = _CATCH_UP[catch_up]
    if kickoff and wi.inputs.get(kickoff) is not datetime:
        raise PlaitTypeError(
            f"launch plan '{name}': kickoff_time_input {kickoff!r} is not a datetime input of "
            f"the workflow"
        )
    return out
