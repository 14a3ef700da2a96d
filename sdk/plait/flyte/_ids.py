"""Identifiers, import options and the interfaces a translation can look up."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from flyteidl.core import identifier_pb2 as fid
from plaitidl.core.v1 import identifier_pb2 as pid
from plaitidl.core.v1 import interface_pb2 as pi

from plait.flyte._context import Context

_KIND = {
    fid.TASK: pid.RESOURCE_TYPE_TASK,
    fid.WORKFLOW: pid.RESOURCE_TYPE_WORKFLOW,
    fid.LAUNCH_PLAN: pid.RESOURCE_TYPE_LAUNCH_PLAN,
}
# A dynamic spec's embedded templates get "<version>+<content digest>": never a registered one.
_CONTENT_SUFFIX = re.compile(r"\+[0-9a-f]{16}$")


def base_version(version: str) -> str:
    """The version without the content suffix a dynamic spec's templates get."""
    return _CONTENT_SUFFIX.sub("", version)


def content_version(version: str, digest: str) -> str:
    """`version` re-versioned by a content digest (an earlier suffix is replaced)."""
    return f"{base_version(version)}+{digest[:16]}"


@dataclass(frozen=True)
class Options:
    """How Flyte entities become plait templates.

    Attributes:
        project: Project of entities whose Flyte identifier has none (a package's).
        domain: Domain of entities whose identifier has none.
        version: Version of entities whose identifier has none.
        python: The Python of the tasks' own environment (flytekit and plait installed), used
            for every image not in `envs`.
        envs: Image (as written in the task, or its name without a tag) → that image's Python.
        sources: Folders put first on the tasks' ``sys.path`` (the code the image would hold).
    """

    project: str = "default"
    domain: str = "development"
    version: str = ""
    python: str = field(default_factory=lambda: sys.executable)
    envs: Mapping[str, str] = field(default_factory=dict)
    sources: tuple[str, ...] = ()

    def python_for(self, image: str) -> str:
        """The Python that plays `image`."""
        name = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
        return self.envs.get(image) or self.envs.get(name) or self.python


def id_to_plait(
    i: fid.Identifier, ctx: Context, path: str, opts: Options, kind: pid.ResourceType.ValueType
) -> pid.Identifier:
    """A Flyte identifier, with project, domain and version filled from `opts` when empty."""
    if i.org:
        ctx.refuse(f"{path}.org", "organizations have no plait equivalent")
    if i.resource_type not in (fid.UNSPECIFIED, *_KIND) or (
        i.resource_type != fid.UNSPECIFIED and _KIND[i.resource_type] != kind
    ):
        ctx.refuse(f"{path}.resource_type", f"expected {pid.ResourceType.Name(kind)}")
    return pid.Identifier(
        resource_type=kind,
        project=i.project or opts.project,
        domain=i.domain or opts.domain,
        name=i.name,
        version=i.version or opts.version,
    )


@dataclass
class Scope:
    """Interfaces by entity name, so that constants in bindings are read as their types.

    Attributes:
        tasks: Translated task interfaces (a map task's per-element one).
        workflows: Translated workflow interfaces.
        launch_plans: Launch plan name → the name of the workflow it launches.
        map_tasks: Names of map tasks (run by an array node, one element per instance).
    """

    tasks: dict[str, pi.TypedInterface] = field(default_factory=dict)
    workflows: dict[str, pi.TypedInterface] = field(default_factory=dict)
    launch_plans: dict[str, str] = field(default_factory=dict)
    map_tasks: set[str] = field(default_factory=set)
