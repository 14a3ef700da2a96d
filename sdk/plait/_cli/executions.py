"""`plait executions list|get|watch|terminate`: executions of a remote engine."""

from __future__ import annotations

import argparse
from typing import Any

from plait._cli.common import EP, Subparsers, add_remote_options, client, phase_name, time_text


def add_parser(sub: Subparsers[argparse.ArgumentParser]) -> None:
    """Add `executions` and its actions."""
    ex = sub.add_parser("executions", help="list, inspect, watch or stop executions")
    actions = ex.add_subparsers(dest="action", required=True)
    ls = actions.add_parser("list", help="executions, newest first")
    ls.add_argument("--project", help="only this project (default: default)")
    ls.add_argument("--domain", help="only this domain (default: development)")
    ls.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    add_remote_options(ls)
    ls.set_defaults(handler=_list)
    for action, what, handler in (
        ("get", "an execution's state", _get),
        ("watch", "print an execution's events as they happen", _watch),
        ("terminate", "abort a running execution", _terminate),
    ):
        a = actions.add_parser(action, help=what)
        a.add_argument("id", help="execution name (or project/domain/name)")
        if action == "watch":
            a.add_argument("--after", type=int, default=0, help="events after this sequence")
        if action == "terminate":
            a.add_argument("--reason", help="why; recorded in the execution's error")
        add_remote_options(a)
        a.set_defaults(handler=handler)


def _list(args: argparse.Namespace, rest: list[str]) -> int:
    with client(args) as engine:
        rows = engine.list_executions(args.project or "", args.domain or "", limit=args.limit)
    print(f"{'NAME':20} {'PHASE':10} {'NODES':>9}  {'CREATED':19}  WORKFLOW")
    for e in rows:
        nodes = f"{e.nodes.succeeded}/{e.nodes.total}"
        print(
            f"{e.id.name:20} {phase_name(e.phase):10} {nodes:>9}  {time_text(e.created_at):19}"
            f"  {e.workflow_id.name}@{e.workflow_id.version}"
        )
    return 0


def _get(args: argparse.Namespace, rest: list[str]) -> int:
    with client(args) as engine:
        e = engine.get(args.id)
    print(f"name:      {e.id.project}/{e.id.domain}/{e.id.name}")
    print(f"workflow:  {e.workflow_id.name}@{e.workflow_id.version}")
    print(f"phase:     {phase_name(e.phase)}")
    print(f"created:   {time_text(e.created_at)}")
    print(f"updated:   {time_text(e.updated_at)}")
    c = e.nodes
    print(
        f"nodes:     {c.total} total, {c.succeeded} succeeded, {c.running} running, "
        f"{c.failed} failed, {c.skipped} skipped, {c.cached} cached"
    )
    if e.error.code:
        where = f" at node {e.error.node_id}" if e.error.node_id else ""
        print(f"error:     {e.error.code}{where}: {e.error.message}")
    for k, v in sorted(e.labels.items()):
        print(f"label:     {k}={v}")
    return 0


def _event_line(event: Any) -> str:
    when = time_text(event.occurred_at)
    if event.WhichOneof("transition") == "execution":
        t = event.execution
        line = f"{event.sequence:>6} {when}  execution -> {phase_name(t.phase)}"
        if t.error.code:
            line += f"  {t.error.code}: {t.error.message}"
        return line
    n = event.node
    phase = EP.NodePhase.Name(n.phase).removeprefix("NODE_PHASE_")
    line = f"{event.sequence:>6} {when}  node {n.node_id} -> {phase}"
    if n.attempt:
        line += f" (attempt {n.attempt})"
    if n.error.code:
        line += f"  {n.error.code}: {n.error.message}"
    return line


def _watch(args: argparse.Namespace, rest: list[str]) -> int:
    with client(args) as engine:
        for batch in engine.watch(args.id, args.after):
            for event in batch.events:
                print(_event_line(event), flush=True)
        return 0 if engine.get(args.id).phase == EP.EXECUTION_PHASE_SUCCEEDED else 1


def _terminate(args: argparse.Namespace, rest: list[str]) -> int:
    with client(args) as engine:
        e = engine.terminate(args.id, args.reason or "")
    print(f"execution {e.id.name}: {phase_name(e.phase)}")
    return 0
