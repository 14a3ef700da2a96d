"""What a token may call, and which projects a request names.

Roles decide the RPCs (`permitted`); projects are checked on every project a request names
(`named_projects`): each ``Identifier`` and ``ExecutionIdentifier`` anywhere in it (templates'
ids and the references between them, execution ids, node execution ids, launch plan ids) and
a top-level ``project`` field (list requests). An empty project means the default one, as
everywhere in the engine. New RPCs are covered without change as long as they name projects
through these messages; `DataService.ReadData` names a payload by URI, so its handler calls
`plait_engine.api.auth.require_project` with the project the URI belongs to.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from plait_engine import ids


class Role(enum.Enum):
    """What a token is for."""

    ADMIN = "admin"
    CLIENT = "client"
    WORKER = "worker"


_PACKAGE = "plaitidl.service.v1."
# Calls that need no token: load balancers and tools must be able to ask whether the engine is
# up, and what it serves, before they hold a token. See README, "Security".
OPEN_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
_CLIENT_SERVICES = frozenset(
    f"/{_PACKAGE}{s}/"
    for s in ("RegistryService", "ExecutionService", "ScheduleService", "DataService")
)
_WORKER_SERVICES = frozenset(f"/{_PACKAGE}{s}/" for s in ("WorkerService", "DataService"))
_WORKER_METHODS = frozenset(
    f"/{_PACKAGE}RegistryService/{m}" for m in ("Register", "ValidateTemplates")
)


def permitted(role: Role, method: str) -> bool:
    """Whether a role may call a method (``/package.Service/Method``).

    An admin may call everything; a client the registry, executions, schedules and data; a
    worker its sessions, data, and registering (or validating) templates.
    """
    if role is Role.ADMIN:
        return True
    service = method[: method.rfind("/") + 1]
    if role is Role.CLIENT:
        return service in _CLIENT_SERVICES
    return service in _WORKER_SERVICES or method in _WORKER_METHODS


_IDENTIFIERS = frozenset({"plaitidl.core.v1.Identifier", "plaitidl.core.v1.ExecutionIdentifier"})
# Request types whose empty top-level `project` is not the default project: an execution
# created without one lives in its target's project (named by the target's identifier).
_PROJECT_FROM_TARGET = frozenset({f"{_PACKAGE}CreateExecutionRequest"})
# Message types that can hold an identifier, by full name; filled per request type on first
# use. Literal payloads hold none, so they are never walked.
_HOLDS: dict[str, bool] = {}


def _reachable(root: Descriptor) -> dict[str, Descriptor]:
    seen: dict[str, Descriptor] = {}
    todo = [root]
    while todo:
        d = todo.pop()
        if d.full_name in seen:
            continue
        seen[d.full_name] = d
        todo.extend(f.message_type for f in d.fields if f.message_type is not None)
    return seen


def _learn(root: Descriptor) -> None:
    """Decide `_HOLDS` for every type reachable from `root` (a fixpoint: types recurse)."""
    types = _reachable(root)
    holds = {n: n in _IDENTIFIERS or _HOLDS.get(n, False) for n in types}
    changed = True
    while changed:
        changed = False
        for name, d in types.items():
            if not holds[name] and any(
                f.message_type is not None and holds[f.message_type.full_name] for f in d.fields
            ):
                holds[name] = changed = True
    _HOLDS.update(holds)


def _holds(d: Descriptor) -> bool:
    if d.full_name not in _HOLDS:
        _learn(d)
    return _HOLDS[d.full_name]


def _walk(message: Message, path: str) -> Iterator[tuple[str, str]]:
    name = message.DESCRIPTOR.full_name
    if name in _IDENTIFIERS:
        yield (
            f"{path}.project" if path else "project",
            (getattr(message, "project", "") or ids.DEFAULT_PROJECT),
        )
        return
    for fd, value in message.ListFields():
        sub = fd.message_type
        if sub is None or not _holds(sub):
            continue
        where = f"{path}.{fd.name}" if path else fd.name
        if sub.GetOptions().map_entry:
            value_fd = sub.fields_by_name["value"]
            if value_fd.message_type is not None:
                for key, item in value.items():
                    yield from _walk(item, f"{where}[{key!r}]")
        elif fd.is_repeated:
            for i, item in enumerate(value):
                yield from _walk(item, f"{where}[{i}]")
        else:
            yield from _walk(value, where)


def named_projects(request: Message) -> Iterator[tuple[str, str]]:
    """Every ``(field path, project)`` a request names (empty projects as the default one).

    Args:
        request: A request message of any RPC.
    """
    d = request.DESCRIPTOR
    top = d.fields_by_name.get("project")
    if top is not None and top.type == FieldDescriptor.TYPE_STRING:
        value: str = request.project  # type: ignore[attr-defined]
        if value or d.full_name not in _PROJECT_FROM_TARGET:
            yield "project", value or ids.DEFAULT_PROJECT
    if _holds(d):  # type: ignore[arg-type]
        yield from _walk(request, "")


__all__ = ["OPEN_PREFIXES", "Role", "named_projects", "permitted"]
