"""The `plait` command line: one module per command group.

Each module in `COMMANDS` adds its subcommand with `add_parser(subparsers)` and sets a
``handler(args, rest) -> exit code`` default; a command that takes arguments of its own
beyond argparse's (a workflow's inputs) also sets ``extra_args=True``. Adding a command group
is adding a module and naming it here.

Exit codes: 0 success; 1 a failed execution, or an engine that refused or failed a call;
2 a wrong command line (arguments, input values, unknown names); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Sequence

from plait._cli import (
    console,
    executions,
    flyte,
    logs,
    register,
    run,
    schedules,
    serve,
    templates,
    worker,
)
from plait._cli.common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, UsageError
from plait._constants import SDK_VERSION
from plait._errors import PlaitError

__all__ = ["main"]

COMMANDS = (
    run,
    logs,
    executions,
    templates,
    schedules,
    register,
    serve,
    worker,
    flyte,
    console,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plait", description="plait: dynamic workflows.")
    parser.add_argument(
        "--version",
        action="version",
        version=f"plait {SDK_VERSION} (Python {platform.python_version()})",
    )
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
    try:
        parser = _parser()
        argv = list(sys.argv[1:] if argv is None else argv)
        # After `--`, every argument is the workflow's own (an input named like an option of
        # `run`, such as --name): argparse would take the first of them for a positional.
        tail: list[str] = []
        if "--" in argv:
            at = argv.index("--")
            argv, tail = argv[:at], argv[at + 1 :]
        args, rest = parser.parse_known_args(argv)
        rest += tail
        if rest and not getattr(args, "extra_args", False):
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return int(args.handler(args, rest))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`plait logs ... | head`): nothing more to say, to anyone.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except UsageError as exc:
        print(f"plait: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PlaitError as exc:
        print(f"plait: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        # The embedded engine's domain errors (an unknown execution to resume, a workflow
        # that does not compile) are the user's to fix: say so without a traceback.
        from plait_engine.errors import EngineError

        if not isinstance(exc, EngineError):
            raise
        print(f"plait: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
