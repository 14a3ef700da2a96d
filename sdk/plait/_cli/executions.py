"""`plait executions list|get|nodes|logs|result|watch|terminate|delete`, on the local data dir
or a server (``--remote``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from plait import _types
from plait._cli import logs
from plait._cli.common import (
    EP,
    EXIT_FAILED,
    EXIT_OK,
    Backend,
    Subparsers,
    add_output_option,
    add_target_options,
    backend,
    json_default,
    node_label,
    node_phase_name,
    phase_name,
    print_values,
    time_text,
    to_json,
)

_PHASES = ("queued", "running", "succeeded", "failed", "aborted")


def add_parser(sub: Subparsers[argparse.ArgumentParser]) -> None:
    """Add `executions` and its actions."""
    ex = sub.add_parser(
        "executions",
        help="list, inspect, watch, stop or delete executions",
        description="Executions of the local data dir (default) or of a server (--remote).",
    )
    actions = ex.add_subparsers(dest="action", required=True)
    ls = actions.add_parser("list", help="executions, newest first")
    ls.add_argument("--project", help="only this project (default: default)")
    ls.add_argument("--domain", help="only this domain (default: development)")
    ls.add_argument("--phase", action="append", choices=_PHASES, help="only this phase")
    ls.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    _common(ls, output=True)
    ls.set_defaults(handler=_list)
    for action, what, handler in (
        ("get", "an execution's state", _get),
        ("nodes", "an execution's nodes, with their phase, attempts and errors", _nodes),
        ("result", "a finished execution's outputs", _result),
        ("watch", "print an execution's events as they happen, until it ends", _watch),
        ("terminate", "abort a running execution", _terminate),
        ("delete", "delete a finished execution with its nodes, events, logs and data", _delete),
    ):
        a = actions.add_parser(action, help=what)
        a.add_argument("id", metavar="EXECUTION", help="execution name (or project/domain/name)")
        if action == "nodes":
            a.add_argument("--parent", default="", help="only the children of this node")
        if action == "watch":
            a.add_argument("--after", type=int, default=0, help="events after this sequence")
        if action == "terminate":
            a.add_argument("--reason", help="why; recorded in the execution's error")
        _common(a, output=action in ("get", "nodes", "result"))
        a.set_defaults(handler=handler)
    lg = actions.add_parser("logs", help="the captured output of an execution's tasks")
    logs.add_arguments(lg)
    lg.set_defaults(handler=logs.handle)


def _common(p: argparse.ArgumentParser, *, output: bool) -> None:
    if output:
        add_output_option(p)
    add_target_options(p)


def _print_json(data: object) -> None:
    print(json.dumps(data, indent=2, default=json_default))


def _list(args: argparse.Namespace, rest: list[str]) -> int:
    phases = [EP.ExecutionPhase.Value(f"EXECUTION_PHASE_{p.upper()}") for p in args.phase or ()]
    with backend(args) as engine:
        rows = engine.list_executions(
            args.project or "", args.domain or "", phases, limit=args.limit
        )
    if args.output == "json":
        _print_json([to_json(e) for e in rows])
        return EXIT_OK
    print(f"{'NAME':20} {'PHASE':10} {'NODES':>11}  {'CREATED':19}  WORKFLOW")
    for e in rows:
        nodes = f"{e.nodes.succeeded + e.nodes.skipped}/{e.nodes.total}"
        target = e.launch_plan_id if e.launch_plan_id.name else e.workflow_id
        print(
            f"{e.id.name:20} {phase_name(e.phase):10} {nodes:>11}  {time_text(e.created_at):19}"
            f"  {target.name}@{target.version}"
        )
    return EXIT_OK


def _get(args: argparse.Namespace, rest: list[str]) -> int:
    with backend(args) as engine:
        e = engine.get(args.id)
        failed = [
            n
            for n in (engine.node_executions(e) if e.error.node_id else [])
            if n.id.node_id == e.error.node_id
        ]
    if args.output == "json":
        _print_json(to_json(e))
        return EXIT_OK
    print(f"name:      {e.id.project}/{e.id.domain}/{e.id.name}")
    print(f"workflow:  {e.workflow_id.name}@{e.workflow_id.version}")
    if e.launch_plan_id.name:
        print(f"launch plan: {e.launch_plan_id.name}@{e.launch_plan_id.version}")
    print(f"phase:     {phase_name(e.phase)}")
    print(f"created:   {time_text(e.created_at)}")
    print(f"updated:   {time_text(e.updated_at)}")
    c = e.nodes
    print(
        f"nodes:     {c.total} total, {c.succeeded} succeeded, {c.running - c.queued} running, "
        f"{c.queued} queued, {c.failed} failed, {c.skipped} skipped, {c.cached} cached"
    )
    if e.error.code:
        node = e.error.node_id
        name = failed[0].name if failed else ""
        where = f" at node {node_label(node, name)}" if node else ""
        print(f"error:     {e.error.code}{where}: {e.error.message}")
        if node:
            print(f"logs:      plait logs {e.id.name} {node}")
    for k, v in sorted(e.labels.items()):
        print(f"label:     {k}={v}")
    return EXIT_OK


def _nodes(args: argparse.Namespace, rest: list[str]) -> int:
    with backend(args) as engine:
        rows = engine.node_executions(args.id, args.parent)
    if args.output == "json":
        _print_json([to_json(n) for n in rows])
        return EXIT_OK
    width = max([len(n.id.node_id) for n in rows] + [4])
    names = max([len(n.name) for n in rows] + [4])
    print(f"{'NODE':{width}}  {'NAME':{names}}  {'PHASE':16} {'ATTEMPT':>7}  {'CACHE':8}  DETAIL")
    for n in rows:
        cache = EP.CacheStatus.Name(n.cache_status).removeprefix("CACHE_STATUS_")
        cache = "" if cache == "UNSPECIFIED" else cache.lower()
        detail = f"{n.error.code}: {n.error.message}" if n.error.code else n.detail
        print(
            f"{n.id.node_id:{width}}  {n.name:{names}}  {node_phase_name(n.phase):16} "
            f"{n.attempt:>7}  {cache:8}  {detail.splitlines()[0] if detail else ''}"
        )
    return EXIT_OK


def outputs_by_type(engine: Backend, e: Any) -> dict[str, object]:
    """A succeeded execution's outputs as Python values, decoded by its workflow's interface."""
    data = engine.data(e)
    variables = engine.get_template("workflow", e.workflow_id).interface.outputs.variables
    return {
        v.name: _types.to_python_by_type(data.outputs.literals[v.name], v.type, var=v.name)
        for v in variables
        if v.name in data.outputs.literals
    }


def _result(args: argparse.Namespace, rest: list[str]) -> int:
    with backend(args) as engine:
        e = engine.get(args.id)
        if e.phase != EP.EXECUTION_PHASE_SUCCEEDED:
            print_failure(e)
            return EXIT_FAILED
        values = outputs_by_type(engine, e)
    if args.output == "json":
        _print_json(values)
    elif values:
        print_values(values)
    return EXIT_OK


def print_failure(e: Any) -> None:
    """Why an execution has no outputs, on stderr."""
    import sys

    phase = phase_name(e.phase)
    if e.error.code:
        where = f" at node {e.error.node_id}" if e.error.node_id else ""
        print(f"execution {e.id.name} {phase}{where}: {e.error.code}: {e.error.message}",
              file=sys.stderr)  # fmt: skip
    else:
        print(f"execution {e.id.name} is {phase}: it has no outputs yet", file=sys.stderr)


def event_line(event: Any, names: dict[str, str]) -> str:
    """One event as `watch` prints it; `names` collects node names from first events."""
    when = time_text(event.occurred_at)
    if event.WhichOneof("transition") == "execution":
        t = event.execution
        line = f"{event.sequence:>6} {when}  execution -> {phase_name(t.phase)}"
        if t.error.code:
            line += f"  {t.error.code}: {t.error.message}"
        return line
    n = event.node
    if n.name:
        names[n.node_id] = n.name
    line = f"{event.sequence:>6} {when}  node {node_label(n.node_id, names.get(n.node_id, ''))}"
    line += f" -> {node_phase_name(n.phase)}"
    if n.attempt:
        line += f" (attempt {n.attempt})"
    if n.reason:
        line += f"  waiting: {n.reason}"
    if n.error.code:
        line += f"  {n.error.code}: {n.error.message}"
    return line


def _watch(args: argparse.Namespace, rest: list[str]) -> int:
    names: dict[str, str] = {}
    with backend(args) as engine:
        for batch in engine.watch(args.id, args.after):
            for event in batch.events:
                print(event_line(event, names), flush=True)
        return EXIT_OK if engine.get(args.id).phase == EP.EXECUTION_PHASE_SUCCEEDED else EXIT_FAILED


def _terminate(args: argparse.Namespace, rest: list[str]) -> int:
    with backend(args) as engine:
        e = engine.terminate(args.id, args.reason or "")
    print(f"execution {e.id.name}: {phase_name(e.phase)}")
    return EXIT_OK


def _delete(args: argparse.Namespace, rest: list[str]) -> int:
    with backend(args) as engine:
        engine.delete(args.id)
    print(f"execution {args.id}: deleted")
    return EXIT_OK
