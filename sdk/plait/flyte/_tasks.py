"""Task templates: a Flyte container running flytekit becomes a plait process target.

The process target runs the boundary shim (``python -m plait.flyte exec``) in the Python that
plays the task's image, with flytekit's own arguments after ``--``; the engine substitutes the
placeholders in them. A map task (``pyflyte-map-execute``) is given its per-element interface:
plait's array node hands each instance one element, where Flyte hands it the whole lists.
"""

from __future__ import annotations

from flyteidl.core import tasks_pb2 as ftk
from plaitidl.core.v1 import identifier_pb2 as pid
from plaitidl.core.v1 import interface_pb2 as pi
from plaitidl.core.v1 import tasks_pb2 as ptk

from plait.flyte._context import Context, check_fields
from plait.flyte._ids import Options, id_to_plait
from plait.flyte._types import interface_to_plait

ENTRY_POINTS = ("pyflyte-execute", "pyflyte-map-execute")
FAST_ENTRY = "pyflyte-fast-execute"
LOCAL_TYPES = ("python-task", "dynamic")
TEMPLATE_PLACEHOLDER = "{{.taskTemplatePath}}"
_PLACEMENT = "only places the work on a Flyte cluster; a local process ignores it"
_TASK_REFUSALS = {
    "k8s_pod": "pod tasks (k8s_pod) have no plait equivalent",
    "sql": "SQL tasks run by a Flyte backend plugin have no plait equivalent",
    "security_context": "security contexts (secrets, service accounts) have no plait equivalent",
    "config": "task config (backend plugin settings) has no plait equivalent",
}
_METADATA_NOTICES = {
    "generates_deck": "decks are written next to the outputs but not shown",
    "metadata": _PLACEMENT,
    "tags": "task tags are not kept",
    "deprecated_error_message": "the deprecation message is not shown",
}
_METADATA_REFUSALS = {
    "pod_template_name": "pod templates have no plait equivalent",
    "is_eager": "eager workflows call a Flyte backend from the task; plait has none",
}
_CONTAINER_REFUSALS = {
    "config": "container config has no plait equivalent",
    "ports": "container ports have no plait equivalent",
    "data_config": "raw containers read inputs through Flyte's copilot; declare a plait "
    "ProcessTask instead",
}


def entry_argv(argv: list[str]) -> list[str]:
    """flytekit's arguments without the fast-registration wrapper (sources come from plait)."""
    if argv[:1] == [FAST_ENTRY] and "--" in argv:
        return argv[argv.index("--") + 1 :]
    return argv


def map_bound_inputs(argv: list[str]) -> set[str] | None:
    """The inputs a map task passes whole to each instance; None when it is no map task."""
    if argv[:1] != ["pyflyte-map-execute"]:
        return None
    rest = argv[argv.index("--") + 1 :] if "--" in argv else []
    if rest[:1] == ["vars"] and len(rest) > 1:
        return {v for v in rest[1].split(",") if v}
    return set()


def shim_command(opts: Options, python: str) -> list[str]:
    """The shim's command line up to (and with) the ``--`` before flytekit's arguments."""
    cmd = [python, "-m", "plait.flyte", "exec", "--python", opts.python]
    for image, py in sorted(opts.envs.items()):
        cmd += ["--env", f"{image}={py}"]
    for source in opts.sources:
        cmd += ["--source", source]
    return [*cmd, "--template", TEMPLATE_PLACEHOLDER, "--"]


def _element_interface(
    iface: pi.TypedInterface, bound: set[str], ctx: Context, path: str
) -> pi.TypedInterface:
    out = pi.TypedInterface()
    out.CopyFrom(iface)
    for side, names in (("inputs", bound), ("outputs", set())):
        for v in getattr(out, side).variables:
            if v.name in names:
                continue
            if not v.type.HasField("collection_type"):
                ctx.refuse(
                    f"{path}.{side}.{v.name}", "a mapped variable of a map task is not a list"
                )
                continue
            v.type.CopyFrom(v.type.collection_type)
    return out


def _metadata(md: ftk.TaskMetadata, ctx: Context, path: str) -> ptk.TaskMetadata:
    out = ptk.TaskMetadata(
        cache=md.discoverable,
        cache_version=md.discovery_version,
        cache_serialize=md.cache_serializable,
    )
    out.cache_ignore_inputs.extend(md.cache_ignore_input_vars)
    if md.retries.retries:
        out.retries.retries = md.retries.retries
    if md.HasField("timeout"):
        out.timeout.CopyFrom(md.timeout)
    if md.HasField("interruptible"):
        out.interruptible = md.interruptible
    if md.HasField("runtime"):
        out.runtime.type = ptk.RuntimeMetadata.RUNTIME_TYPE_OTHER
        out.runtime.language = md.runtime.flavor
        out.runtime.version = f"flytekit {md.runtime.version}"
    handled = {"discoverable", "discovery_version", "cache_serializable", "retries", "timeout"}
    handled |= {"cache_ignore_input_vars", "interruptible", "runtime"}
    check_fields(ctx, md, path, handled, notices=_METADATA_NOTICES, refusals=_METADATA_REFUSALS)
    return out


def _process(
    c: ftk.Container, opts: Options, ctx: Context, path: str
) -> tuple[ptk.ProcessTarget, set[str] | None]:
    argv = entry_argv([*c.command, *c.args])
    out = ptk.ProcessTarget(image=c.image)
    if not argv or argv[0] not in ENTRY_POINTS:
        ctx.refuse(
            f"{path}.args",
            f"runs {argv[:1]}, not flytekit's pyflyte-execute; for any other program declare a "
            "plait ProcessTask",
        )
        return out, None
    if any(TEMPLATE_PLACEHOLDER.lower() in a.lower().replace(" ", "") for a in argv):
        ctx.refuse(
            f"{path}.args",
            "tasks loaded from their own template ({{.taskTemplatePath}}) are not supported",
        )
    out.command.extend(shim_command(opts, opts.python_for(c.image)))
    out.args.extend(argv)
    for kv in c.env:
        out.env[kv.key] = kv.value
    check_fields(
        ctx,
        c,
        path,
        {"image", "command", "args", "env"},
        notices={"resources": _PLACEMENT, "architecture": _PLACEMENT},
        refusals=_CONTAINER_REFUSALS,
    )
    return out, map_bound_inputs(argv)


def task_to_plait(
    t: ftk.TaskTemplate, opts: Options, ctx: Context, path: str, description: str = ""
) -> ptk.TaskTemplate:
    """A Flyte task template as a plait one whose process target runs the shim."""
    out = ptk.TaskTemplate(type=t.type)
    out.id.CopyFrom(id_to_plait(t.id, ctx, f"{path}.id", opts, pid.RESOURCE_TYPE_TASK))
    out.metadata.CopyFrom(_metadata(t.metadata, ctx, f"{path}.metadata"))
    out.metadata.description = description
    iface = interface_to_plait(t.interface, ctx, f"{path}.interface")
    if t.type not in LOCAL_TYPES:
        ctx.refuse(
            f"{path}.type",
            f"task type {t.type!r} is run by a Flyte backend plugin; plait runs "
            f"{' and '.join(LOCAL_TYPES)} tasks (map tasks included) through flytekit",
        )
    if t.WhichOneof("target") == "container":
        target, bound = _process(t.container, opts, ctx, f"{path}.container")
        out.process.CopyFrom(target)
        if bound is not None:
            iface = _element_interface(iface, bound, ctx, f"{path}.interface")
    elif t.WhichOneof("target") is None:
        ctx.refuse(f"{path}.target", "the task has no target")
    out.interface.CopyFrom(iface)
    if t.HasField("custom"):
        out.custom.CopyFrom(t.custom)
    check_fields(
        ctx,
        t,
        path,
        {"id", "type", "metadata", "interface", "custom", "container", "task_type_version"},
        notices={"extended_resources": _PLACEMENT},
        refusals=_TASK_REFUSALS,
    )
    return out
