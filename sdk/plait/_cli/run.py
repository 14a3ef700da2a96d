"""`plait run`: run a workflow on the embedded engine, or on a server (``--remote``).

What runs is ``FILE WORKFLOW`` (a workflow, launch plan or task defined in a file or module),
or a registered workflow or launch plan by name (``[PROJECT/DOMAIN/]NAME[@VERSION]``); its
inputs follow as ``--name value``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from plaitidl.core.v1 import errors_pb2, literals_pb2

from plait import _attempt, _embedded, _loader
from plait._cli import run_remote
from plait._cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    Subparsers,
    UsageError,
    add_target_options,
    data_dir,
    input_parser,
    load_entity,
    node_label,
    parse_inputs,
    print_outputs,
    print_values,
    remote_address,
)
from plait._cli.templates import Target, find_target, target_inputs, target_parser
from plait._constants import LABEL_ENTITY, LABEL_SOURCE
from plait._progress import ProgressBar
from plait._serialize import Entity

# Flags that set the embedded engine's limits one to one: (flag, type, help).
LIMITS: tuple[tuple[str, type, str], ...] = (
    ("--max-nodes", int, "nodes per workflow or dynamic spec (default 1,000,000)"),
    ("--max-depth", int, "nesting depth of dynamic specs (default 64)"),
    ("--max-literal-bytes", int, "size of one inline literal"),
    ("--system-retries", int, "retries of system errors per node (default 3)"),
    ("--max-log-bytes", int, "output kept per task attempt (default 1 MiB)"),
)


def add_parser(sub: Subparsers[argparse.ArgumentParser]) -> None:
    """Add `run`; the workflow's own inputs follow as ``--name value``."""
    # No abbreviations: a workflow input --n must not be taken for --name. No automatic
    # --help: with FILE WORKFLOW it lists the workflow's inputs instead.
    run = sub.add_parser(
        "run",
        allow_abbrev=False,
        add_help=False,
        help="run a workflow (embedded engine, or --remote HOST:PORT)",
        description="Run WORKFLOW from FILE, or a registered workflow or launch plan by "
        "name ([PROJECT/DOMAIN/]NAME[@VERSION]); its inputs are given as --name value. "
        "`plait run FILE WORKFLOW --help` lists them.",
    )
    run.add_argument("-h", "--help", action="store_true", help="show this help (with FILE "
                     "WORKFLOW or NAME: the workflow's inputs) and exit")  # fmt: skip
    run.add_argument("file", nargs="?", metavar="FILE|NAME", help="a .py file or a module name; "
                     "or the name of a registered workflow or launch plan")  # fmt: skip
    run.add_argument("workflow", nargs="?", help="the workflow, launch plan or task in FILE")
    run.add_argument("--resume", metavar="EXECUTION", help="resume an interrupted execution")
    run.add_argument("--name", help="name of the new execution (default: generated)")
    run.add_argument("-q", "--quiet", action="store_true", help="print only the outputs")
    for flag, kind, what in LIMITS:
        run.add_argument(flag, type=kind, help=f"embedded engine: {what}")
    add_target_options(run)
    run.set_defaults(handler=_run, extra_args=True, parser=run)


def _run(args: argparse.Namespace, rest: list[str]) -> int:
    address = remote_address(args)
    if args.help:
        return _help(args, address)
    if address is not None:
        return run_remote.run(args, rest, address)
    return _run_embedded(args, rest)


def _help(args: argparse.Namespace, address: str | None) -> int:
    if not args.file:
        args.parser.print_help()
        return EXIT_OK
    prog = f"plait run {args.file}" + (f" {args.workflow}" if args.workflow else "")
    if args.workflow:
        parser = input_parser(load_entity(args.file, args.workflow), prog)
    else:
        from plait._cli.common import backend

        with backend(args) as engine:
            parser = target_parser(find_target(engine, args.file), prog)
    print(parser.format_help().rstrip())
    print("\n(`plait run --help` lists the options of run itself.)")
    return EXIT_OK


def names_registered(args: argparse.Namespace) -> bool:
    """Whether the arguments name a registered workflow rather than FILE WORKFLOW."""
    return bool(args.file) and not args.workflow and not args.file.endswith(".py")


def labels_of(args: argparse.Namespace) -> dict[str, str]:
    """Where the workflow came from, so that `--resume` can load its tasks again."""
    source = str(Path(args.file).resolve()) if args.file.endswith(".py") else args.file
    return {LABEL_SOURCE: source, LABEL_ENTITY: args.workflow}


def summary(name: str, phase: str, seconds: float, nodes: dict[str, int]) -> None:
    """The one-line summary on stderr."""
    print(
        f"execution {name}: {phase} in {seconds:.2f}s ({nodes['total']} "
        f"node{'' if nodes['total'] == 1 else 's'}: "
        f"{nodes['succeeded']} succeeded, {nodes['cached']} cached, {nodes['failed']} failed, "
        f"{nodes['skipped']} skipped)",
        file=sys.stderr,
    )


def report_error(err: errors_pb2.ExecutionError, execution: str, name: str, hint: str) -> int:
    """The error of a failed execution on stderr, with the command showing its node's logs."""
    where = f" at node {node_label(err.node_id, name)}" if err.node_id else ""
    print(f"error{where}: {err.code}: {err.message}", file=sys.stderr)
    if err.node_id:
        print(f"its output: plait logs{hint} {execution} {err.node_id}", file=sys.stderr)
    return EXIT_FAILED


def _settings(args: argparse.Namespace) -> Any:
    from plait_engine.config import EMBEDDED_DEFAULTS, ConfigError, load_config

    overrides: dict[str, object] = {"data_dir": str(data_dir(args))}
    for flag, _, _ in LIMITS:
        key = flag.removeprefix("--").replace("-", "_")
        overrides[key] = getattr(args, key)
    try:
        return load_config(None, overrides=overrides, defaults=EMBEDDED_DEFAULTS)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def _where(args: argparse.Namespace) -> str:
    return f" --data-dir {args.data_dir}" if args.data_dir else ""


def _announcer(args: argparse.Namespace, started: list[str]) -> Callable[[str], None]:
    def announce(execution: str) -> None:
        started.append(execution)
        if not args.quiet and not args.resume:
            # Printed first, so that an interrupted run can be resumed by name.
            print(
                f"execution {execution} started "
                f"(resume it with: plait run{_where(args)} --resume {execution})",
                file=sys.stderr,
                flush=True,
            )

    return announce


def _what(
    args: argparse.Namespace, rest: list[str]
) -> tuple[Entity | None, Target | None, literals_pb2.LiteralMap]:
    """The entity or registered target to run, and its inputs."""
    if args.resume:
        if args.file:
            _loader.load_path(args.file)
        return None, None, literals_pb2.LiteralMap()
    if not args.file:
        raise UsageError("give FILE WORKFLOW, a registered NAME, or --resume EXECUTION")
    if names_registered(args):
        from plait._local import LocalEngine

        with LocalEngine(data_dir(args)) as engine:
            target = find_target(engine, args.file)
        return None, target, target_inputs(target, f"plait run {args.file}", rest)
    entity = load_entity(args.file, args.workflow)
    values = parse_inputs(entity, f"plait run {args.file} {args.workflow}", rest)
    return entity, None, _embedded.inputs_to_literals(entity, values)


def _run_embedded(args: argparse.Namespace, rest: list[str]) -> int:
    entity, target, inputs = _what(args, rest)
    bar = ProgressBar() if sys.stderr.isatty() and not args.quiet else None
    started: list[str] = []
    options = _embedded.RunOptions(
        name=args.name or "",
        labels=labels_of(args) if entity is not None else {},
        resume=args.resume,
        progress=bar.update if bar is not None else None,
        on_start=_announcer(args, started),
        config=_settings(args),
        target=target.id if target is not None else None,
    )
    try:
        result = _embedded.run(entity, inputs, data_dir(args), options)
    except KeyboardInterrupt:
        if bar is not None:
            bar.clear()
        return _interrupted(args, started)
    if bar is not None:
        bar.close(result.counts)
    if not args.quiet:
        summary(result.execution, result.phase, result.seconds, result.counts)
    if result.phase != "SUCCEEDED":
        name = _node_name(args, result.execution, result.error.node_id)
        return report_error(result.error, result.execution, name, _where(args))
    if result.entity is None:  # a registered target, or a resumed run whose source is gone
        _print_registered(args, result.execution)
    else:
        print_outputs(result.entity, result.outputs)
    return EXIT_OK


def _node_name(args: argparse.Namespace, execution: str, node_id: str) -> str:
    if not node_id:
        return ""
    from plait._local import LocalEngine

    with LocalEngine(data_dir(args)) as engine:
        nodes = engine.node_executions(execution)
    return next((n.name for n in nodes if n.id.node_id == node_id), "")


def _print_registered(args: argparse.Namespace, execution: str) -> None:
    from plait._cli.executions import outputs_by_type
    from plait._local import LocalEngine

    with LocalEngine(data_dir(args)) as engine:
        values = outputs_by_type(engine, engine.get(execution))
    if values:
        print_values(values)


def _interrupted(args: argparse.Namespace, started: list[str]) -> int:
    if started:
        name = started[-1]
        print(
            f"\ninterrupted: execution {name} is kept; resume it with: "
            f"plait run{_where(args)} --resume {name}",
            file=sys.stderr,
        )
    else:
        print("\ninterrupted", file=sys.stderr)
    if _attempt.active():
        # Tasks still run in threads Python cannot stop, and would hold the exit until they
        # end; everything the engine committed is on disk, so leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)
    return EXIT_INTERRUPTED
