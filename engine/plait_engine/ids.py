"""Identifiers and reserved names: the one place the engine spells them.

Every module that keys templates, names the reserved input node or asks "is this phase
final?" imports from here, so the spelling cannot drift between the compiler, the scheduler
and the service layer.
"""

from __future__ import annotations

from plaitidl.core.v1 import execution_pb2, identifier_pb2

__all__ = [
    "ACTIVE_NODE_PHASES",
    "COUNT_NAMES",
    "DEFAULT_DOMAIN",
    "DEFAULT_PROJECT",
    "START_NODE",
    "TERMINAL_EXECUTION_PHASES",
    "TERMINAL_NODE_PHASES",
    "UNFINISHED_EXECUTION_PHASES",
    "UNFINISHED_NODE_PHASES",
    "id_key",
    "key_to_id",
    "name_prefix",
]

START_NODE = "start-node"
"""The reserved node id whose outputs are the enclosing workflow's (or generator's) inputs."""

DEFAULT_PROJECT = "default"
"""The project of an identifier that names none."""

DEFAULT_DOMAIN = "development"
"""The domain of an identifier that names none."""

TERMINAL_NODE_PHASES: frozenset[execution_pb2.NodePhase.ValueType] = frozenset(
    {
        execution_pb2.NODE_PHASE_SUCCEEDED,
        execution_pb2.NODE_PHASE_FAILED,
        execution_pb2.NODE_PHASE_SKIPPED,
        execution_pb2.NODE_PHASE_ABORTED,
    }
)
"""Node phases that never change again."""

TERMINAL_EXECUTION_PHASES: frozenset[execution_pb2.ExecutionPhase.ValueType] = frozenset(
    {
        execution_pb2.EXECUTION_PHASE_SUCCEEDED,
        execution_pb2.EXECUTION_PHASE_FAILED,
        execution_pb2.EXECUTION_PHASE_ABORTED,
    }
)
"""Execution phases that never change again."""

ACTIVE_NODE_PHASES: frozenset[execution_pb2.NodePhase.ValueType] = frozenset(
    {
        execution_pb2.NODE_PHASE_RUNNING,
        execution_pb2.NODE_PHASE_DYNAMIC_RUNNING,
        execution_pb2.NODE_PHASE_RETRYING,
    }
)
"""Node phases counted as running: started and not yet finished."""

UNFINISHED_NODE_PHASES: frozenset[execution_pb2.NodePhase.ValueType] = ACTIVE_NODE_PHASES | {
    execution_pb2.NODE_PHASE_QUEUED
}
"""Node phases in which something of the node may still be in flight."""

UNFINISHED_EXECUTION_PHASES: frozenset[execution_pb2.ExecutionPhase.ValueType] = frozenset(
    {execution_pb2.EXECUTION_PHASE_QUEUED, execution_pb2.EXECUTION_PHASE_RUNNING}
)
"""Execution phases of executions still to be driven."""

COUNT_NAMES = ("total", "succeeded", "running", "failed", "skipped", "cached", "queued")
"""The names of an execution's node counts (the fields of `NodeCounts`)."""


def id_key(id: identifier_pb2.Identifier) -> str:
    """The canonical key of an identifier: ``project/domain/name/version``.

    The resource type is excluded; empty project and domain take their defaults
    (`DEFAULT_PROJECT`, `DEFAULT_DOMAIN`) so that both spellings name the same entity.

    Args:
        id: The identifier.

    Returns:
        The key used for every dict of templates in the engine.
    """
    project = id.project or DEFAULT_PROJECT
    domain = id.domain or DEFAULT_DOMAIN
    return f"{project}/{domain}/{id.name}/{id.version}"


def key_to_id(key: str, resource_type: int = 0) -> identifier_pb2.Identifier | None:
    """The identifier of a ``project/domain/name/version`` key (None for "")."""
    if not key:
        return None
    project, domain, rest = key.split("/", 2)
    name, _, version = rest.rpartition("/")
    return identifier_pb2.Identifier(
        resource_type=resource_type,  # type: ignore[arg-type]
        project=project,
        domain=domain,
        name=name,
        version=version,
    )


def name_prefix(id: identifier_pb2.Identifier) -> str:
    """``project/domain/name/``: the key prefix of every version of a template (defaults
    filled in)."""
    project = id.project or DEFAULT_PROJECT
    domain = id.domain or DEFAULT_DOMAIN
    return f"{project}/{domain}/{id.name}/"
