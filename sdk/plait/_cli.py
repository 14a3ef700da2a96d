"""The `plait` command line."""

from __future__ import annotations

import argparse
import datetime
import enum
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from plaitidl.core.v1 import literals_pb2

from plait import _embedded, _loader, _serialize, _types
from plait._errors import PlaitError
from plait._serialize import Entity


def _format(value: object) -> str:
    def default(o: object) -> object:
        if isinstance(o, enum.Enum):
            return o.value
        if isinstance(o, datetime.datetime | datetime.timedelta):
            return str(o)
        if hasattr(o, "__dataclass_fields__"):
            return {k: getattr(o, k) for k in o.__dataclass_fields__}
        return repr(o)

    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=default)
    except (TypeError, ValueError):
        return repr(value)


def _entity(path: str, name: str) -> Entity:
    module = _loader.load_path(path)
    try:
        found = getattr(module, name)
    except AttributeError:
        found = None
    if _embedded._is_entity(found):
        return found  # type: ignore[no-any-return]
    known = sorted(k for k, v in vars(module).items() if _embedded._is_entity(v))
    raise PlaitError(
        f"{path} has no workflow, task or launch plan named {name!r}; it defines {known}"
    )


def _input_parser(entity: Entity, prog: str) -> argparse.ArgumentParser:
    hints, defaults, _ = _serialize.python_interface(entity)
    p = argparse.ArgumentParser(prog=prog, description="Inputs of the workflow.")
    for name, hint in hints.items():
        has_default = name in defaults
        p.add_argument(
            f"--{name}",
            dest=name,
            required=not has_default,
            default=argparse.SUPPRESS,
            metavar=_types.type_repr(_types.literal_type(hint, where=f"input {name!r}")).upper(),
            help=f"default: {defaults[name]!r}" if has_default else "required",
        )
    return p


def _cmd_run(args: argparse.Namespace, rest: list[str]) -> int:
    data_dir = Path(args.data_dir) if args.data_dir else None
    if args.resume:
        if args.file:
            _loader.load_path(args.file)
        entity: Entity | None = None
        inputs = None
    else:
        if not args.file or not args.workflow:
            print("plait run: FILE and WORKFLOW are required (or --resume ID)", file=sys.stderr)
            return 2
        entity = _entity(args.file, args.workflow)
        parser = _input_parser(entity, f"plait run {args.file} {args.workflow}")
        ns = parser.parse_args(rest)
        hints, _, _ = _serialize.python_interface(entity)
        values = {k: _types.parse_text(v, hints[k], var=k) for k, v in vars(ns).items()}
        inputs = _embedded.inputs_to_literals(entity, values)
    bar = _embedded.ProgressBar() if sys.stderr.isatty() and not args.quiet else None
    labels = {}
    if args.file and args.workflow and not args.resume:
        labels = {"plait.source": str(Path(args.file).resolve()) if args.file.endswith(".py")
                  else args.file, "plait.entity": args.workflow}  # fmt: skip
    result = _embedded.run(
        entity,
        inputs or literals_pb2.LiteralMap(),
        data_dir,
        resume=args.resume,
        progress=bar,
        name=args.name or "",
        labels=labels,
    )
    entity = result.entity
    if bar is not None:
        bar.close(result.counts)
    if not args.quiet:
        print(
            f"execution {result.execution}: {result.phase} in {result.seconds:.2f}s "
            f"({result.counts['succeeded']} nodes succeeded, {result.counts['cached']} cached)",
            file=sys.stderr,
        )
    if result.phase != "SUCCEEDED":
        err = result.error
        where = f" at node {err.node_id}" if err.node_id else ""
        print(f"error{where}: {err.code}: {err.message}", file=sys.stderr)
        return 1
    if entity is None:
        for k in sorted(result.outputs.literals):
            print(f"{k}: {result.outputs.literals[k]}")
        return 0
    value = _serialize.outputs_to_python(entity, result.outputs)
    _, _, outs = _serialize.python_interface(entity)
    if len(outs) == 1:
        print(_format(value))
    else:
        for name, v in zip(outs, value if isinstance(value, tuple) else (), strict=False):
            print(f"{name}: {_format(v)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `plait` command."""
    parser = argparse.ArgumentParser(prog="plait", description="plait: dynamic workflows.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run a workflow on the embedded engine",
        description="Run WORKFLOW from FILE; its inputs are given as --name value.",
    )
    run.add_argument("file", nargs="?", help="a .py file or a module name")
    run.add_argument("workflow", nargs="?", help="the workflow, launch plan or task to run")
    run.add_argument("--data-dir", help="engine state (default $PLAIT_DATA_DIR or ~/.plait)")
    run.add_argument("--resume", metavar="EXECUTION", help="resume an interrupted execution")
    run.add_argument("--name", help="name of the new execution (default: generated)")
    run.add_argument("-q", "--quiet", action="store_true", help="print only the outputs")
    args, rest = parser.parse_known_args(argv)
    try:
        if args.command == "run":
            return _cmd_run(args, rest)
    except PlaitError as exc:
        print(f"plait: {exc}", file=sys.stderr)
        return 1
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
