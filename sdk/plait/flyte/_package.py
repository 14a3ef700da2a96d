"""What `pyflyte package` writes: a .tgz of numbered ``.pb`` files (and, with ``--fast``, a
source archive), read and translated into one plait `RegisterRequest`."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from flyteidl.admin import launch_plan_pb2 as fa_lp
from flyteidl.admin import task_pb2 as fa_task
from flyteidl.admin import workflow_pb2 as fa_wf
from plaitidl.service.v1 import registry_service_pb2 as rs

from plait._errors import PlaitError
from plait.flyte._context import Context, check_fields
from plait.flyte._errors import Refusal
from plait.flyte._graph import Graph, launch_plan_to_plait, workflow_interface, workflow_to_plait
from plait.flyte._ids import Options, Scope
from plait.flyte._tasks import task_to_plait

# `pyflyte package` names each entity "<index>_<name>_<kind>.pb": 1 task, 2 workflow, 3 plan.
_MEMBER = re.compile(r"^\d+_(?P<name>.+)_(?P<kind>[123])\.pb$")
_FAST = re.compile(r"^fast[0-9a-f]*\.tar\.gz$")


@dataclass
class Package:
    """The entities of one pyflyte package.

    Attributes:
        tasks: Task specs in package order.
        workflows: Workflow specs (each with its subworkflows).
        launch_plans: Launch plans.
        fast_archive: ``(name, bytes)`` of the source archive of ``pyflyte package --fast``.
        digest: Hex SHA-256 of the entity files (and the archive's name, itself a digest).
        skipped: Members that are none of these, reported as notices.
    """

    tasks: list[fa_task.TaskSpec] = field(default_factory=list)
    workflows: list[fa_wf.WorkflowSpec] = field(default_factory=list)
    launch_plans: list[fa_lp.LaunchPlan] = field(default_factory=list)
    fast_archive: tuple[str, bytes] | None = None
    digest: str = ""
    skipped: list[str] = field(default_factory=list)


def read_package(path: str | Path) -> Package:
    """Read a package written by ``pyflyte package``.

    Raises:
        PlaitError: The file is not a gzip'ed tar, or an entity file does not parse.
    """
    pkg = Package()
    h = hashlib.sha256()
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name)
            for m in members:
                name = Path(m.name).name
                data = tar.extractfile(m).read()  # type: ignore[union-attr]
                _add_member(pkg, name, data, h)
    except (OSError, tarfile.TarError) as exc:
        raise PlaitError(f"{path}: not a pyflyte package: {exc}") from None
    pkg.digest = h.hexdigest()
    return pkg


def _add_member(pkg: Package, name: str, data: bytes, h: hashlib._Hash) -> None:
    if _FAST.match(name):
        pkg.fast_archive = (name, data)
        h.update(name.encode())
        return
    m = _MEMBER.match(name)
    if m is None:
        pkg.skipped.append(name)
        return
    h.update(name.encode() + b"\0" + data)
    try:
        if m["kind"] == "1":
            pkg.tasks.append(fa_task.TaskSpec.FromString(data))
        elif m["kind"] == "2":
            pkg.workflows.append(fa_wf.WorkflowSpec.FromString(data))
        else:
            pkg.launch_plans.append(fa_lp.LaunchPlan.FromString(data))
    except Exception as exc:  # a corrupt member: name it
        raise PlaitError(f"package member {name}: does not parse: {exc}") from None


def extract_sources(archive: tuple[str, bytes], root: Path) -> Path:
    """Unpack the ``--fast`` source archive under `root` (once: its name is its digest)."""
    name, data = archive
    dest = root / name.removesuffix(".tar.gz")
    if not dest.is_dir():
        tmp = dest.with_name(dest.name + ".partial")
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            tar.extractall(tmp, filter="data")
        tmp.rename(dest)
    return dest


@dataclass
class Translation:
    """A package as plait templates.

    Attributes:
        request: Every task, workflow and launch plan, ready to register.
        notices: Fields ignored because they change nothing a local process computes.
    """

    request: rs.RegisterRequest
    notices: list[Refusal]


def _description(spec: fa_task.TaskSpec | fa_wf.WorkflowSpec) -> str:
    d = spec.description
    return d.short_description or d.long_description.value


def translate_package(pkg: Package, opts: Options) -> Translation:
    """Translate every entity; all refusals are collected before raising.

    Raises:
        FlyteRefusedError: Some entity uses a field plait has no equivalent for.
    """
    ctx = Context()
    out = rs.RegisterRequest()
    scope = Scope()
    for ts in pkg.tasks:
        with ctx.at(f"task {ts.template.id.name!r}"):
            t = task_to_plait(ts.template, opts, ctx, "template", _description(ts))
            check_fields(ctx, ts, "", {"template", "description"})
        scope.tasks[ts.template.id.name] = t.interface
        out.tasks.append(t)
    templates = []
    for ws in pkg.workflows:
        for j, w in enumerate([ws.template, *ws.sub_workflows]):
            where = "template" if j == 0 else f"sub_workflows[{j - 1}]"
            if w.id.name not in scope.workflows:
                templates.append((w, where, _description(ws) if j == 0 else ""))
                scope.workflows[w.id.name] = workflow_interface(w, ctx, f"{where}.interface")
    for lp in pkg.launch_plans:
        scope.launch_plans[lp.id.name] = lp.spec.workflow_id.name
    g = Graph(ctx, opts, scope)
    for w, where, desc in templates:
        with ctx.at(f"workflow {w.id.name!r}"):
            out.workflows.append(workflow_to_plait(w, g, where, desc))
    for lp in pkg.launch_plans:
        with ctx.at(f"launch plan {lp.id.name!r}"):
            out.launch_plans.append(launch_plan_to_plait(lp, g, ""))
    ctx.notices.extend(Refusal("package", n, "not a pyflyte entity; skipped") for n in pkg.skipped)
    ctx.raise_refusals()
    return Translation(out, ctx.notices)
