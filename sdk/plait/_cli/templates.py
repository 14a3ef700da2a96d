"""`plait tasks|workflows|launchplans list|get`: registered templates, on the local data dir or
a server; and what `plait run` needs to run a registered workflow or launch plan by name."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any

from plaitidl.core.v1 import identifier_pb2, interface_pb2, literals_pb2, types_pb2

from plait import _types
from plait._cli.common import (
    EXIT_OK,
    Backend,
    Subparsers,
    UsageError,
    add_output_option,
    add_target_options,
    backend,
    format_value,
    to_json,
)
from plait._errors import NotFoundError, PlaitTypeError, PlaitValueError

_GROUPS = (
    ("tasks", "task", "registered tasks"),
    ("workflows", "workflow", "registered workflows"),
    ("launchplans", "launch_plan", "registered launch plans"),
)


def add_parser(sub: Subparsers[argparse.ArgumentParser]) -> None:
    """Add `tasks`, `workflows` and `launchplans`, each with `list` and `get`."""
    for command, kind, what in _GROUPS:
        group = sub.add_parser(
            command,
            help=f"list or show {what}",
            description=f"{what.capitalize()} of the local data dir (default) or of a server "
            "(--remote).",
        )
        actions = group.add_subparsers(dest="action", required=True)
        ls = actions.add_parser("list", help=f"{what}, most recent first")
        ls.add_argument("--project", default="", help="only this project (default: default)")
        ls.add_argument("--domain", default="", help="only this domain (default: development)")
        ls.add_argument("--name", default="", help="only the versions of this name")
        ls.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
        add_output_option(ls)
        add_target_options(ls)
        ls.set_defaults(handler=_list, kind=kind)
        get = actions.add_parser("get", help=f"one of the {what}")
        get.add_argument(
            "ref", metavar="[PROJECT/DOMAIN/]NAME[@VERSION]", help="without a version: the newest"
        )
        add_output_option(get)
        add_target_options(get)
        get.set_defaults(handler=_get, kind=kind)


def parse_ref(text: str, resource_type: int = 0) -> identifier_pb2.Identifier:
    """``[project/domain/]name[@version]`` as an identifier (empty parts: the defaults).

    Raises:
        UsageError: It has two or more than three ``/``-separated parts, or no name.
    """
    path, _, version = text.partition("@")
    parts = path.split("/")
    if len(parts) not in (1, 3) or not parts[-1]:
        raise UsageError(f"{text!r} is not [PROJECT/DOMAIN/]NAME[@VERSION]")
    project, domain = (parts[0], parts[1]) if len(parts) == 3 else ("", "")
    return identifier_pb2.Identifier(
        resource_type=resource_type,  # type: ignore[arg-type]
        project=project,
        domain=domain,
        name=parts[-1],
        version=version,
    )


def _type(t: types_pb2.LiteralType) -> str:
    return _types.type_repr(t)


def _value(literal: literals_pb2.Literal, t: types_pb2.LiteralType, name: str) -> str:
    try:
        return format_value(_types.to_python_by_type(literal, t, var=name))
    except PlaitTypeError:
        return str(literal).strip()


def _list(args: argparse.Namespace, rest: list[str]) -> int:
    with backend(args) as engine:
        rows = engine.list_templates(
            args.kind, args.project, args.domain, args.name, limit=args.limit
        )
    if args.output == "json":
        print(json.dumps([to_json(r) for r in rows], indent=2))
        return EXIT_OK
    width = max([len(r.id.name) for r in rows] + [4])
    print(f"{'NAME':{width}}  {'VERSION':16}  {'PROJECT/DOMAIN':24}  INPUTS")
    for r in rows:
        iface = getattr(r, "interface", None)
        inputs = ", ".join(v.name for v in iface.inputs.variables) if iface else ""
        print(
            f"{r.id.name:{width}}  {r.id.version:16}  {r.id.project + '/' + r.id.domain:24}  "
            f"{inputs}"
        )
    return EXIT_OK


def _get(args: argparse.Namespace, rest: list[str]) -> int:
    with backend(args) as engine:
        t = engine.get_template(args.kind, parse_ref(args.ref))
        if args.output == "json":
            print(json.dumps(to_json(t), indent=2))
            return EXIT_OK
        ident = t.id
        print(f"{args.kind.replace('_', ' ')}: {ident.project}/{ident.domain}/{ident.name}")
        print(f"version:  {ident.version}")
        if args.kind == "task":
            _show_task(t)
        elif args.kind == "workflow":
            _show_interface(t.interface, t.defaults)
            print(f"nodes:    {len(t.nodes)}")
        else:
            target = Target(engine, t)
            print(f"workflow: {t.workflow_id.name}@{t.workflow_id.version}")
            _show_interface(target.interface, target.defaults)
            for name, literal in sorted(t.fixed_inputs.literals.items()):
                print(f"fixed:    {name} = {literal}".strip())
    return EXIT_OK


def _show_task(t: Any) -> None:
    print(f"type:     {t.type}")
    if t.HasField("worker"):
        print(f"target:   worker queue {t.worker.queue!r}, handler {t.worker.handler}")
    elif t.HasField("process"):
        print(f"target:   process {' '.join([*t.process.command, *t.process.args])}")
    m = t.metadata
    print(f"retries:  {m.retries.retries}")
    if m.timeout.seconds or m.timeout.nanos:
        print(f"timeout:  {m.timeout.ToTimedelta()}")
    if m.cache:
        key = f"cache_version {m.cache_version!r}" if m.cache_version else "the code digest"
        print(f"cache:    on, keyed by {key}")
    if m.code_digest:
        print(f"code:     {m.code_digest}")
    if m.description:
        print(f"about:    {m.description}")
    _show_interface(t.interface, interface_pb2.ParameterMap())


def _show_interface(iface: Any, defaults: interface_pb2.ParameterMap) -> None:
    by_name = {p.var.name: p for p in defaults.parameters}
    for v in iface.inputs.variables:
        p = by_name.get(v.name)
        extra = ""
        if p is not None and p.HasField("default"):
            extra = f" = {_value(p.default, v.type, v.name)}"
        print(f"input:    {v.name}: {_type(v.type)}{extra}")
    for v in iface.outputs.variables:
        print(f"output:   {v.name}: {_type(v.type)}")


@dataclass
class Target:
    """A registered workflow or launch plan: what to run, and its inputs.

    Attributes:
        id: The launch plan's or the workflow's identifier (with its resource type).
        interface: The workflow's interface.
        defaults: Defaults of the inputs (a launch plan's over its workflow's).
        fixed: Inputs a launch plan fixes (not given on the command line).
    """

    id: identifier_pb2.Identifier
    interface: interface_pb2.TypedInterface
    defaults: interface_pb2.ParameterMap
    fixed: frozenset[str]

    def __init__(self, engine: Backend, template: Any) -> None:
        self.id = template.id
        if self.id.resource_type == identifier_pb2.RESOURCE_TYPE_LAUNCH_PLAN:
            wf = engine.get_template("workflow", template.workflow_id)
            self.fixed = frozenset(template.fixed_inputs.literals)
            self.defaults = interface_pb2.ParameterMap()
            self.defaults.CopyFrom(wf.defaults)
            self.defaults.parameters.extend(template.default_inputs.parameters)
        else:
            wf = template
            self.fixed = frozenset()
            self.defaults = wf.defaults
        self.interface = wf.interface


def find_target(engine: Backend, ref: str) -> Target:
    """The launch plan, or else the workflow, registered under `ref`.

    Raises:
        UsageError: Neither is registered.
    """
    ident = parse_ref(ref)
    for kind, rtype in (
        ("launch_plan", identifier_pb2.RESOURCE_TYPE_LAUNCH_PLAN),
        ("workflow", identifier_pb2.RESOURCE_TYPE_WORKFLOW),
    ):
        ident.resource_type = rtype
        try:
            return Target(engine, engine.get_template(kind, ident))
        except NotFoundError:
            continue
    raise UsageError(
        f"no workflow or launch plan {ref!r} is registered at {engine.address}; "
        "`plait workflows list` and `plait launchplans list` show what is"
    )


def target_inputs(target: Target, prog: str, rest: list[str]) -> literals_pb2.LiteralMap:
    """The target's inputs from ``--name value`` arguments, typed by its interface.

    Raises:
        SystemExit: An input is missing or unknown (argparse prints the usage, exit code 2).
        UsageError: A value does not parse; the message names the input.
    """
    parser = target_parser(target, prog)
    ns = parser.parse_args(rest)
    types = {v.name: v.type for v in target.interface.inputs.variables}
    try:
        values = {k: _types.parse_text_by_type(v, types[k], var=k) for k, v in vars(ns).items()}
        return _types.to_literal_map_by_type(target.interface.inputs, values)
    except (PlaitValueError, PlaitTypeError) as exc:
        raise UsageError(str(exc)) from None


def target_parser(target: Target, prog: str) -> argparse.ArgumentParser:
    """The parser of a registered target's inputs (``--help`` lists them)."""
    p = argparse.ArgumentParser(
        prog=prog, description=f"Inputs of {target.id.name}.", allow_abbrev=False
    )
    defaults = {d.var.name: d for d in target.defaults.parameters}
    for v in target.interface.inputs.variables:
        if v.name in target.fixed:
            continue
        d = defaults.get(v.name)
        shown = _value(d.default, v.type, v.name) if d and d.HasField("default") else None
        p.add_argument(
            f"--{v.name}",
            dest=v.name,
            required=shown is None,
            default=argparse.SUPPRESS,
            metavar=_type(v.type).upper(),
            help="required" if shown is None else f"default: {shown}",
        )
    return p
