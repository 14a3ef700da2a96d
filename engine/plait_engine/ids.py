"""Identifiers and reserved names: the one place the engine spells them.

Every module that keys templates, names the reserved input node or asks "is this phase
final?" imports from here, so the spelling cannot drift between the compiler, the scheduler
and the service layer.
"""

from __future__ import annotations

from plaitidl.core.v1 import execution_pb2, identifier_pb2

__all__ = [
    "ACTIVE_NODE_PHASES",
    "DEFAULT_DOMAIN",
    "DEFAULT_PROJECT",
    "START_NODE",
    "TERMINAL_EXECUTION_PHASES",
    "TERMINAL_NODE_PHASES",
    "id_key",
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
