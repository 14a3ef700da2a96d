"""Identifiers, reserved names, defaults and phase sets: defined once for the whole engine."""

from __future__ import annotations

from plaitidl.core.v1 import execution_pb2, identifier_pb2

_EP = execution_pb2

# The pseudo node whose outputs are a graph's inputs (bindings read ``start-node.x``).
START_NODE = "start-node"
DEFAULT_PROJECT = "default"
DEFAULT_DOMAIN = "development"

TERMINAL_EXECUTION_PHASES = frozenset(
    (_EP.EXECUTION_PHASE_SUCCEEDED, _EP.EXECUTION_PHASE_FAILED, _EP.EXECUTION_PHASE_ABORTED)
)
UNFINISHED_EXECUTION_PHASES = frozenset((_EP.EXECUTION_PHASE_QUEUED, _EP.EXECUTION_PHASE_RUNNING))
TERMINAL_NODE_PHASES = frozenset(
    (
        _EP.NODE_PHASE_SUCCEEDED,
        _EP.NODE_PHASE_FAILED,
        _EP.NODE_PHASE_SKIPPED,
        _EP.NODE_PHASE_ABORTED,
    )
)
# Phases counted as "running" in node counts.
ACTIVE_NODE_PHASES = frozenset(
    (_EP.NODE_PHASE_RUNNING, _EP.NODE_PHASE_DYNAMIC_RUNNING, _EP.NODE_PHASE_RETRYING)
)
# Phases a node may be in while something of it is still in flight.
UNFINISHED_NODE_PHASES = ACTIVE_NODE_PHASES | {_EP.NODE_PHASE_QUEUED}

# The names of an execution's node counts (fields of `NodeCounts`).
COUNT_NAMES = ("total", "succeeded", "running", "failed", "skipped", "cached")


def id_key(id: identifier_pb2.Identifier) -> str:
    """``project/domain/name/version``: the canonical key of a template identifier.

    The resource type is excluded; an empty project or domain takes its default, so both
    spellings name the same template.
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
