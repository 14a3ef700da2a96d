"""`plait register`: register every task, workflow and launch plan of some files."""

from __future__ import annotations

import argparse
from typing import Any

from plaitidl.core.v1 import identifier_pb2
from plaitidl.service.v1 import registry_service_pb2

from plait import _embedded, _loader, _serialize
from plait._cli.common import Subparsers, UsageError, add_target_options, backend

_KINDS = {
    identifier_pb2.RESOURCE_TYPE_TASK: "task",
    identifier_pb2.RESOURCE_TYPE_WORKFLOW: "workflow",
    identifier_pb2.RESOURCE_TYPE_LAUNCH_PLAN: "launch plan",
}


def add_parser(sub: Subparsers[argparse.ArgumentParser]) -> None:
    """Add `register`."""
    reg = sub.add_parser(
        "register",
        help="register every task and workflow of files",
        description="Register every task, workflow and launch plan the files define, on a "
        "server (--remote) or in the local data dir. A task's version follows its code: an "
        "edited task is 'created' under a new version.",
    )
    reg.add_argument("paths", nargs="+", metavar="FILE")
    add_target_options(reg)
    reg.set_defaults(handler=_register)


def _register(args: argparse.Namespace, rest: list[str]) -> int:
    entities: list[Any] = []
    for path in args.paths:
        module = _loader.load_path(path)
        entities += [v for v in vars(module).values() if _embedded._is_entity(v)]
    if not entities:
        raise UsageError(f"no task, workflow or launch plan is defined in {args.paths}")
    tasks, workflows, lps = _serialize.closure(entities)
    with backend(args) as engine:
        response = engine.register_templates(
            registry_service_pb2.RegisterRequest(tasks=tasks, workflows=workflows, launch_plans=lps)
        )
    for label, ids in (("created", response.created), ("unchanged", response.unchanged)):
        for i in ids:
            kind = _KINDS.get(i.resource_type, "?")
            print(f"{label:9} {kind:11} {i.project}/{i.domain}/{i.name}@{i.version}")
    return 0
