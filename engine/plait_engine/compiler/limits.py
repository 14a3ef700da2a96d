"""What the compiler needs from outside: bounds to enforce and a way to look templates up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from plaitidl.core.v1 import identifier_pb2, tasks_pb2, workflow_pb2

__all__ = ["DEFAULT_LIMITS", "MAX_RETRIES", "MAX_VIOLATIONS", "Limits", "Resolver"]

MAX_VIOLATIONS = 100
"""At most this many violations are returned (the last one says how many more there were)."""

MAX_RETRIES = 100
"""Upper bound for retry budgets; more is almost certainly a unit mistake."""


@dataclass(frozen=True)
class Limits:
    """Bounds a template, a compiled graph and the values in them must respect.

    The nesting limits keep everything the engine accepts encodable: protobuf's parser refuses
    messages nested more than 100 deep, one level of a record, map or union costs up to three
    message levels, and an assignment or a worker result wraps a value in about eight more.
    24 levels (at most about 72 message levels) leave a safe margin.

    Attributes:
        max_nodes: Nodes per workflow or spec, counting branch cases and array inner nodes.
        max_depth: Nesting depth of dynamic specs (a spec yielded inside a spec is depth 2).
        max_literal_bytes: Serialized size of one inline literal in a binding.
        max_type_depth: Nesting of a `LiteralType`: each list, map, union or record level
            counts one (``list[dict[str, int]]`` is 2).
        max_literal_depth: Nesting of a `Literal` (lists, maps, records, union values and
            JSON objects or arrays each count one), including the bindings that build it.
        max_name_length: Characters in a variable name.
    """

    max_nodes: int = 10_000
    max_depth: int = 64
    max_literal_bytes: int = 1 << 20
    max_type_depth: int = 24
    max_literal_depth: int = 24
    max_name_length: int = 255


DEFAULT_LIMITS = Limits()
"""The limits used when a caller gives none."""


class Resolver(Protocol):
    """Looks up registered templates; each method returns None for an unknown identifier."""

    def get_task(self, id: identifier_pb2.Identifier) -> tasks_pb2.TaskTemplate | None:
        """The registered task template, or None."""
        ...

    def get_workflow(self, id: identifier_pb2.Identifier) -> workflow_pb2.WorkflowTemplate | None:
        """The registered workflow template, or None."""
        ...

    def get_launch_plan(self, id: identifier_pb2.Identifier) -> workflow_pb2.LaunchPlan | None:
        """The registered launch plan, or None."""
        ...
