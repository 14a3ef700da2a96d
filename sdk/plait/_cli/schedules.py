"""`plait schedules list|pause|resume`: launch plans that start executions on a schedule."""

from __future__ import annotations

import argparse
import json
from typing import Any

from plaitidl.core.v1 import identifier_pb2, workflow_pb2

from plait._cli.common import (
    EXIT_OK,
    Subparsers,
    add_output_option,
    add_target_options,
    backend,
    time_text,
    to_json,
)
from plait._cli.templates import parse_ref

_CATCH_UP = {
    workflow_pb2.Schedule.CATCH_UP_UNSPECIFIED: "latest",
    workflow_pb2.Schedule.CATCH_UP_LATEST: "latest",
    workflow_pb2.Schedule.CATCH_UP_ALL: "all",
    workflow_pb2.Schedule.CATCH_UP_NONE: "none",
}


def add_parser(sub: Subparsers[argparse.ArgumentParser]) -> None:
    """Add `schedules` with `list`, `pause` and `resume`."""
    group = sub.add_parser(
        "schedules",
        help="list, pause or resume schedules",
        description="Launch plans with a schedule (cron or a fixed rate) start an execution at "
        "each tick on a server. Pausing one skips its ticks until it is resumed.",
    )
    actions = group.add_subparsers(dest="action", required=True)
    ls = actions.add_parser("list", help="schedules with their next tick and last execution")
    ls.add_argument("--project", default="", help="only this project (default: default)")
    ls.add_argument("--domain", default="", help="only this domain (default: development)")
    add_output_option(ls)
    add_target_options(ls)
    ls.set_defaults(handler=_list)
    for action, what in (("pause", "stop starting executions"), ("resume", "start them again")):
        p = actions.add_parser(action, help=f"{what} (a launch plan's schedule)")
        p.add_argument("ref", metavar="[PROJECT/DOMAIN/]LAUNCH_PLAN", help="the launch plan")
        add_output_option(p)
        add_target_options(p)
        p.set_defaults(handler=_set, pause=action == "pause")


def timing(schedule: workflow_pb2.Schedule) -> str:
    """A schedule as people read it: its cron expression or ``every 90s``."""
    if schedule.HasField("fixed_rate"):
        seconds = schedule.fixed_rate.ToTimedelta().total_seconds()
        return f"every {seconds:g}s"
    return schedule.cron


def _print(rows: list[Any]) -> None:
    width = max([len(r.launch_plan_id.name) for r in rows] + [11])
    print(f"{'LAUNCH PLAN':{width}}  {'SCHEDULE':16}  {'STATE':7}  {'CATCH-UP':8}  "
          f"{'NEXT TICK':19}  LAST EXECUTION")  # fmt: skip
    for r in rows:
        state = "paused" if r.paused else "active"
        last = r.last_execution.name or "-"
        print(
            f"{r.launch_plan_id.name:{width}}  {timing(r.schedule):16}  {state:7}  "
            f"{_CATCH_UP[r.schedule.catch_up]:8}  {time_text(r.next_tick):19}  {last}"
        )


def _list(args: argparse.Namespace, rest: list[str]) -> int:
    with backend(args) as engine:
        rows = engine.list_schedules(args.project, args.domain)
    if args.output == "json":
        print(json.dumps([to_json(r) for r in rows], indent=2))
    else:
        _print(rows)
    return EXIT_OK


def _set(args: argparse.Namespace, rest: list[str]) -> int:
    lp = parse_ref(args.ref, identifier_pb2.RESOURCE_TYPE_LAUNCH_PLAN)
    with backend(args) as engine:
        row = engine.pause_schedule(lp) if args.pause else engine.resume_schedule(lp)
    if args.output == "json":
        print(json.dumps(to_json(row), indent=2))
    else:
        _print([row])
    return EXIT_OK
