"""`plait logs EXECUTION [NODE] [--follow]`: what an execution's tasks printed and logged."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from plait._cli.common import (
    EXIT_OK,
    Subparsers,
    add_output_option,
    add_target_options,
    backend,
)

_STREAMS = {1: "stdout", 2: "stderr", 3: "logger", 4: "engine"}


def add_parser(sub: Subparsers[argparse.ArgumentParser]) -> None:
    """Add `logs` (also `executions logs`)."""
    p = sub.add_parser(
        "logs",
        help="what an execution's tasks printed and logged",
        description="The captured stdout, stderr and logger lines of an execution's task "
        "attempts, oldest first; of one node when NODE is given.",
    )
    add_arguments(p)
    p.set_defaults(handler=handle)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of `logs` and `executions logs`."""
    p.add_argument("id", metavar="EXECUTION", help="execution name (or project/domain/name)")
    p.add_argument("node", metavar="NODE", nargs="?", default="", help="only this node (n0/n3)")
    p.add_argument("--attempt", type=int, default=0, help="only this attempt of the node")
    p.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new lines until it ends"
    )
    add_output_option(p)
    add_target_options(p)


def _text(line: Any, whole: bool, last: dict[str, int]) -> str:
    stream = _STREAMS.get(line.stream, "?")
    mark = "" if stream in ("stdout", "logger") else f"[{stream}] "
    if whole:  # every node: say whose line it is
        return f"{line.node_id}#{line.attempt} | {mark}{line.text}"
    head = ""
    if last.get("attempt") != line.attempt:
        if last:
            head = f"--- attempt {line.attempt} ---\n"
        last["attempt"] = line.attempt
    return f"{head}{mark}{line.text}"


def handle(args: argparse.Namespace, rest: list[str]) -> int:
    """Print the lines (JSON lines with ``-o json``)."""
    last: dict[str, int] = {}
    with backend(args) as engine:
        for batch in engine.logs(args.id, args.node, args.attempt, follow=args.follow):
            for line in batch.lines:
                if args.output == "json":
                    print(
                        json.dumps(
                            {
                                "node_id": line.node_id,
                                "attempt": line.attempt,
                                "stream": _STREAMS.get(line.stream, "?"),
                                "time": line.time.ToJsonString(),
                                "text": line.text,
                            }
                        )
                    )
                else:
                    print(_text(line, not args.node, last))
            if args.follow:
                sys.stdout.flush()
    return EXIT_OK
