"""One-call conversions of single messages, for programs and tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flyteidl.admin import launch_plan_pb2 as fa
from flyteidl.core import dynamic_job_pb2 as fdj
from flyteidl.core import errors_pb2 as fe
from flyteidl.core import interface_pb2 as fi
from flyteidl.core import literals_pb2 as fl
from flyteidl.core import tasks_pb2 as ftk
from flyteidl.core import types_pb2 as ft
from flyteidl.core import workflow_pb2 as fw
from google.protobuf.message import Message
from plaitidl.core.v1 import literals_pb2 as pl
from plaitidl.core.v1 import tasks_pb2 as ptk
from plaitidl.core.v1 import types_pb2 as pt

from plait.flyte._context import Context
from plait.flyte._dynamic import dynamic_to_plait, error_to_plait
from plait.flyte._graph import Graph, launch_plan_to_plait, workflow_interface, workflow_to_plait
from plait.flyte._ids import Options, Scope
from plait.flyte._literals import (
    literal_map_to_flyte,
    literal_map_to_plait,
    literal_to_flyte,
    literal_to_plait,
)
from plait.flyte._tasks import task_to_plait
from plait.flyte._types import interface_to_plait, type_to_flyte, type_to_plait


def to_plait(
    msg: Message,
    *,
    options: Options | None = None,
    types: pt.LiteralType | Mapping[str, pt.LiteralType] | None = None,
    generator: ptk.TaskTemplate | None = None,
) -> Any:
    """Translate one flyteidl message into its plaitidl counterpart.

    Args:
        msg: A ``LiteralType``, ``Literal``, ``LiteralMap``, ``TypedInterface``,
            ``TaskTemplate``, ``WorkflowTemplate``, admin ``LaunchPlan``, ``DynamicJobSpec`` or
            ``ErrorDocument`` of flyteidl.
        options: Identity defaults and task environments (templates and specs).
        types: The plait type of a ``Literal`` (or types by name of a ``LiteralMap``'s values),
            which turns msgpack dataclass values into records.
        generator: The plait template of the task that yielded a ``DynamicJobSpec``.

    Returns:
        The plaitidl message.

    Raises:
        FlyteRefusedError: The message uses fields plait has no equivalent for.
        TypeError: The message is none of the above.
    """
    opts = options or Options()
    ctx = Context("value")
    out: Message
    if isinstance(msg, ft.LiteralType):
        out = type_to_plait(msg, ctx, "type")
    elif isinstance(msg, fl.Literal):
        out = literal_to_plait(
            msg, types if isinstance(types, pt.LiteralType) else None, ctx, "value"
        )
    elif isinstance(msg, fl.LiteralMap):
        named = types if isinstance(types, Mapping) else None
        out = literal_map_to_plait(msg, named, ctx, "literals")
    elif isinstance(msg, fi.TypedInterface):
        out = interface_to_plait(msg, ctx, "interface")
    elif isinstance(msg, ftk.TaskTemplate):
        ctx.entity = f"task {msg.id.name!r}"
        out = task_to_plait(msg, opts, ctx, "template")
    elif isinstance(msg, fw.WorkflowTemplate):
        ctx.entity = f"workflow {msg.id.name!r}"
        scope = Scope(workflows={msg.id.name: workflow_interface(msg, ctx, "interface")})
        out = workflow_to_plait(msg, Graph(ctx, opts, scope), "template")
    elif isinstance(msg, fa.LaunchPlan):
        ctx.entity = f"launch plan {msg.id.name!r}"
        out = launch_plan_to_plait(msg, Graph(ctx, opts, Scope()), "")
    elif isinstance(msg, fdj.DynamicJobSpec):
        ctx.entity = "dynamic job spec"
        out = dynamic_to_plait(msg, generator or ptk.TaskTemplate(), opts, ctx)
    elif isinstance(msg, fe.ErrorDocument):
        return error_to_plait(msg)
    else:
        raise TypeError(f"no plait counterpart for {type(msg).__name__}")
    ctx.raise_refusals()
    return out


def to_flyte(msg: Message) -> Any:
    """Translate a plaitidl ``Literal``, ``LiteralMap`` or ``LiteralType`` into flyteidl.

    Records become msgpack ``Binary`` values, as flytekit writes dataclasses.

    Raises:
        ValueError: A literal is empty, or an offloaded value cannot be read.
        TypeError: The message is none of the above.
    """
    if isinstance(msg, pl.Literal):
        return literal_to_flyte(msg)
    if isinstance(msg, pl.LiteralMap):
        return literal_map_to_flyte(msg)
    if isinstance(msg, pt.LiteralType):
        return type_to_flyte(msg)
    raise TypeError(f"no flyte counterpart for {type(msg).__name__}")
