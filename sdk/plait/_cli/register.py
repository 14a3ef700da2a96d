"""`plait register`: register every task, workflow and launch plan of some files."""

from __future__ import annotations

import argparse
from typing import Any

from plaitidl.core.v1 import identifier_pb2
from plaitidl.service.v1 import registry_service_pb2

from plait import _embedded, _loader, _serialize
from plait._cli.common import Subparsers, add_remote_options, client
from plait._errors import PlaitError

_KINDS = {
    identifier_pb2.RESOURCE_TYPE_TASK: "task",
    identifier_pb2.RESOURCE_TYPE_WORKFLOW: "workflow",
    identifier_pb2.RESOURCE_TYPE_LAUNCH_PLAN: "launch plan",
}


def add_parser(sub: Subparsers[argparse.ArgumentParser]) -> None:
    """Add `register`."""
    reg = sub.add_parser("register", help="register every task and workflow of files")
    reg.add_argument("paths", nargs="+", metavar="FILE")
    add_remote_options(reg)
    reg.set_defaults(handler=_register)


def _register(args: argparse.Namespace, rest: list[str]) -> int:
    entities: list[Any] = []
    for path in args.paths:
        module = _loader.load_path(path)
        entities += [v for v in vars(module).values() if _embedded._is_entity(v)]
    if not entities:
        raise PlaitError(f"no task, workflow or launch plan is defined in {args.paths}")
    tasks, workflows, lps = _serialize.closure(entities)
    with client(args) as engine:
        response = engine.register_templates(
            registry_service_pb2.RegisterRequest(tasks=tasks, workflows=workflows, launch_plans=lps)
        )
    for label, ids in (("created", response.created), ("unchanged", response.unchanged)):
        for i in ids:
            kind = _KINDS.get(i.resource_type, "?")
            print(f"{label:9} {kind:11} {i.project}/{i.domain}/{i.name}@{i.version}")
    return 0
