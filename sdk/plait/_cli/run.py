"""`plait run`: run a workflow on the embedded engine, or on a remote one."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from plaitidl.core.v1 import errors_pb2, literals_pb2

from plait import _embedded, _loader
from plait._cli.common import (
    Subparsers,
    add_remote_options,
    client,
    counts,
    load_entity,
    parse_inputs,
    phase_name,
    print_outputs,
)
from plait._constants import ENV_DATA_DIR, ENV_ENGINE, LABEL_ENTITY, LABEL_SOURCE
from plait._errors import ExecutionFailedError
from plait._serialize import Entity


def add_parser(sub: Subparsers[argparse.ArgumentParser]) -> None:
    """Add `run`; the workflow's own inputs follow as ``--name value``."""
    # No abbreviations: a workflow input --n must not be taken for --name.
    run = sub.add_parser(
        "run",
        allow_abbrev=False,
        help="run a workflow (embedded engine, or --remote HOST:PORT)",
        description="Run WORKFLOW from FILE; its inputs are given as --name value.",
    )
    run.add_argument("file", nargs="?", help="a .py file or a module name")
    run.add_argument("workflow", nargs="?", help="the workflow, launch plan or task to run")
    run.add_argument("--data-dir", help=f"engine state (default ${ENV_DATA_DIR} or ~/.plait)")
    run.add_argument("--resume", metavar="EXECUTION", help="resume an interrupted execution")
    run.add_argument("--name", help="name of the new execution (default: generated)")
    run.add_argument("-q", "--quiet", action="store_true", help="print only the outputs")
    run.add_argument(
        "--remote",
        metavar="HOST:PORT",
        help=f"run on this engine instead of the embedded one (default ${ENV_ENGINE})",
    )
    run.add_argument(
        "--local",
        action="store_true",
        help=f"run on the embedded engine even when ${ENV_ENGINE} is set",
    )
    add_remote_options(run, "")
    run.set_defaults(handler=_run, extra_args=True)


def _run(args: argparse.Namespace, rest: list[str]) -> int:
    if not args.local and (args.remote or os.environ.get(ENV_ENGINE)):
        return _run_remote(args, rest)
    return _run_embedded(args, rest)


def _announcer(data_dir: str | None) -> Callable[[str], None]:
    where = f" --data-dir {data_dir}" if data_dir else ""

    def announce(execution: str) -> None:
        # Printed first, so that an interrupted run can be resumed by name.
        print(
            f"execution {execution} started "
            f"(resume it with: plait run{where} --resume {execution})",
            file=sys.stderr,
            flush=True,
        )

    return announce


def _labels(args: argparse.Namespace) -> dict[str, str]:
    # Where the workflow came from, so that `--resume` can load its tasks again.
    source = str(Path(args.file).resolve()) if args.file.endswith(".py") else args.file
    return {LABEL_SOURCE: source, LABEL_ENTITY: args.workflow}


def _summary(name: str, phase: str, seconds: float, nodes: dict[str, int]) -> None:
    print(
        f"execution {name}: {phase} in {seconds:.2f}s "
        f"({nodes['succeeded']} nodes succeeded, {nodes['cached']} cached)",
        file=sys.stderr,
    )


def _report_error(err: errors_pb2.ExecutionError) -> int:
    where = f" at node {err.node_id}" if err.node_id else ""
    print(f"error{where}: {err.code}: {err.message}", file=sys.stderr)
    return 1


def _run_embedded(args: argparse.Namespace, rest: list[str]) -> int:
    data_dir = Path(args.data_dir) if args.data_dir else None
    entity: Entity | None = None
    inputs = literals_pb2.LiteralMap()
    labels: dict[str, str] = {}
    if args.resume:
        if args.file:
            _loader.load_path(args.file)
    else:
        if not args.file or not args.workflow:
            print("plait run: FILE and WORKFLOW are required (or --resume ID)", file=sys.stderr)
            return 2
        entity = load_entity(args.file, args.workflow)
        values = parse_inputs(entity, f"plait run {args.file} {args.workflow}", rest)
        inputs = _embedded.inputs_to_literals(entity, values)
        labels = _labels(args)
    bar = _embedded.ProgressBar() if sys.stderr.isatty() and not args.quiet else None
    result = _embedded.run(
        entity,
        inputs,
        data_dir,
        resume=args.resume,
        progress=bar,
        name=args.name or "",
        labels=labels,
        on_start=None if args.quiet or args.resume else _announcer(args.data_dir),
    )
    if bar is not None:
        bar.close(result.counts)
    if not args.quiet:
        _summary(result.execution, result.phase, result.seconds, result.counts)
    if result.phase != "SUCCEEDED":
        return _report_error(result.error)
    print_outputs(result.entity, result.outputs)
    return 0


def _run_remote(args: argparse.Namespace, rest: list[str]) -> int:
    if args.resume:
        print(
            "plait run: --resume is for the embedded engine; a remote engine resumes "
            "executions by itself",
            file=sys.stderr,
        )
        return 2
    if not args.file or not args.workflow:
        print("plait run: FILE and WORKFLOW are required", file=sys.stderr)
        return 2
    entity = load_entity(args.file, args.workflow)
    values = parse_inputs(entity, f"plait run {args.file} {args.workflow}", rest)
    bar = _embedded.ProgressBar() if sys.stderr.isatty() and not args.quiet else None
    with client(args, "remote") as engine:
        handle = engine.execute(entity, values, name=args.name or "", labels=_labels(args))
        started = time.monotonic()

        def show(nodes: Any) -> None:
            if bar is not None:
                bar(counts(nodes))

        try:
            engine.wait(handle, progress=show)
        except ExecutionFailedError:
            pass  # reported below, like the embedded run does
        state = engine.get(handle)
        nodes = counts(state.nodes)
        if bar is not None:
            bar.close(nodes)
        phase = phase_name(state.phase)
        if not args.quiet:
            _summary(state.id.name, phase, time.monotonic() - started, nodes)
        if phase != "SUCCEEDED":
            return _report_error(state.error)
        print_outputs(entity, engine.data(handle).outputs)
    return 0
