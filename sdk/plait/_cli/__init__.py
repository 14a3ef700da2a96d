"""The `plait` command line: one module per command group.

Each module in `COMMANDS` adds its subcommand with `add_parser(subparsers)` and sets a
``handler(args, rest) -> exit code`` default; a command that takes arguments of its own
beyond argparse's (a workflow's inputs) also sets ``extra_args=True``. Adding a command group
is adding a module and naming it here.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from plait._cli import console, executions, flyte, register, run, serve, worker
from plait._errors import PlaitError

__all__ = ["main"]

COMMANDS = (run, serve, worker, register, executions, flyte, console)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plait", description="plait: dynamic workflows.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `plait` command; returns its exit code."""
    # Like `python -m`, make the working directory importable, so that a worker can import a
    # task's module by the dotted name a client registered it under (`examples.merge_sort`).
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "extra_args", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return int(args.handler(args, rest))
    except PlaitError as exc:
        print(f"plait: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        # The embedded engine's domain errors (an unknown execution to resume, a workflow
        # that does not compile) are the user's to fix: say so without a traceback.
        from plait_engine.errors import EngineError

        if not isinstance(exc, EngineError):
            raise
        print(f"plait: {exc.message}", file=sys.stderr)
        return 1
