"""``plait flyte import | run | exec``: the command line of the Flyte boundary.

`add_parser` hangs the ``flyte`` command group under ``plait``; `main` runs it on its own
(``python -m plait.flyte``). Nothing here imports flyteidl until a command runs, so ``plait``
works without the ``plait[flyte]`` extra.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from plait._errors import PlaitError

_EXTRA = "plait flyte needs the plait[flyte] extra: pip install 'plait[flyte]'"


def _connection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="embedded engine state (default $PLAIT_DATA_DIR or ~/.plait)")
    p.add_argument("--remote", metavar="HOST:PORT", help="use this server instead")
    p.add_argument("--token", default=os.environ.get("PLAIT_TOKEN") or None, help="bearer token")
    p.add_argument("--tls", action="store_true", help="connect with TLS (system roots)")
    p.add_argument("--ca-cert", default=os.environ.get("PLAIT_CA_CERT") or None, help="CA file")
    p.add_argument("--project", default="default", help="project (default: default)")
    p.add_argument("--domain", default="development", help="domain (default: development)")


def _fill(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="flyte_command", required=True)
    imp = sub.add_parser(
        "import",
        help="register what `pyflyte package` produced",
        description="Translate a pyflyte package to plait templates and register them. Tasks "
        "become process targets that run flytekit in the Python given by --env.",
    )
    imp.add_argument("package", help="the .tgz written by `pyflyte --pkgs ... package`")
    imp.add_argument("--version", default="", help="version (default: the package's digest)")
    imp.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="[IMAGE=]PYTHON",
        help="the Python (with flytekit and plait) that plays the tasks' image; IMAGE=PYTHON "
        "for one image (default: this Python)",
    )
    imp.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder with the tasks' code, put first on sys.path (default: the current "
        "folder; a --fast package brings its own)",
    )
    imp.add_argument("--strict", action="store_true", help="refuse fields that are only ignored")
    _connection(imp)
    run = sub.add_parser(
        "run",
        help="launch an imported launch plan",
        description="Run a launch plan (Flyte names each workflow's default plan after it); "
        "inputs follow as --name value (JSON, or a bare string).",
    )
    run.add_argument("launch_plan", help="the launch plan's name")
    run.add_argument("--version", default="", help="version (default: the newest)")
    run.add_argument("--name", default="", help="the execution's name (default: generated)")
    run.add_argument("-q", "--quiet", action="store_true", help="print only the outputs")
    _connection(run)
    run.add_argument("inputs", nargs=argparse.REMAINDER, help="--input value ...")
    ex = sub.add_parser(
        "exec",
        help="the shim a process target runs: exec [options] -- pyflyte-execute ...",
        description="Run flytekit's entry point between plait's files (what an imported "
        "task's process target runs).",
    )
    ex.add_argument("--python", default=sys.executable, help="the Python of other images")
    ex.add_argument("--env", action="append", default=[], metavar="IMAGE=PYTHON")
    ex.add_argument("--source", action="append", default=[], metavar="DIR")
    ex.add_argument("--template", help="the task's plaitidl template ({{.taskTemplatePath}})")
    ex.add_argument("argv", nargs=argparse.REMAINDER, help="-- pyflyte-execute ...")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``flyte`` command group to a `plait` CLI's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "flyte", help="run what flytekit produces: import, run, exec (needs plait[flyte])"
    )
    _fill(p)
    return p


def _options(args: argparse.Namespace) -> Any:
    from plait.flyte._ids import Options

    python = next((e for e in args.env if "=" not in e), sys.executable)
    envs = dict(e.split("=", 1) for e in args.env if "=" in e)
    sources = tuple(str(Path(s).resolve()) for s in args.source)
    return Options(args.project, args.domain, args.version, python, envs, sources)


def _remote(args: argparse.Namespace) -> Any:
    from plait.flyte._engine import Remote

    if not args.remote:
        return None
    return Remote(args.remote, args.token, args.tls or bool(args.ca_cert), args.ca_cert)


def _import(args: argparse.Namespace) -> int:
    import dataclasses

    from plait.flyte._import import import_package
    from plait.flyte._package import read_package

    opts = _options(args)
    if not opts.sources and read_package(args.package).fast_archive is None:
        opts = dataclasses.replace(opts, sources=(os.getcwd(),))
    data_dir = Path(args.data_dir) if args.data_dir else None
    result = import_package(
        args.package, opts, data_dir=data_dir, remote=_remote(args), strict=args.strict
    )
    for n in result.notices:
        print(f"ignored: {n}", file=sys.stderr)
    kinds = {1: "task", 2: "workflow", 3: "launch plan"}
    for label, ids in (("created", result.created), ("unchanged", result.unchanged)):
        for i in ids:
            kind = kinds.get(i.resource_type, "?")
            print(f"{label:9} {kind:11} {i.project}/{i.domain}/{i.name}@{i.version}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from plaitidl.core.v1 import identifier_pb2

    from plait.flyte import _engine
    from plait.flyte._inputs import parse_pairs
    from plait.flyte._types import natural

    values = parse_pairs(args.inputs)
    lp = identifier_pb2.Identifier(
        resource_type=identifier_pb2.RESOURCE_TYPE_LAUNCH_PLAN,
        project=args.project,
        domain=args.domain,
        name=args.launch_plan,
        version=args.version,
    )
    data_dir = Path(args.data_dir) if args.data_dir else None
    outcome = _engine.run(lp, values, data_dir=data_dir, remote=_remote(args), name=args.name)
    if not args.quiet:
        c = outcome.counts
        print(
            f"execution {outcome.execution}: {outcome.phase} ({c.get('succeeded', 0)} nodes "
            f"succeeded, {c.get('cached', 0)} cached)",
            file=sys.stderr,
        )
    if outcome.phase != "SUCCEEDED":
        err = outcome.error
        where = f" at node {err.node_id}" if err.node_id else ""
        print(f"error{where}: {err.code}: {err.message}", file=sys.stderr)
        return 1
    names = natural(outcome.outputs.literals)
    for name in names:
        lit = outcome.outputs.literals[name]
        value = json.dumps(
            _engine.value_from_literal(lit, outcome.output_types[name], name), default=_plain
        )
        print(value if len(names) == 1 else f"{name}: {value}")
    return 0


def _plain(value: object) -> object:
    """JSON for what json does not know: files and folders as their local path (or URI)."""
    try:
        path = getattr(value, "path", None)
    except PlaitError:  # not a local file: its URI
        return getattr(value, "uri", str(value))
    return path if isinstance(path, str) else str(value)


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``flyte`` command; its exit code."""
    try:
        if args.flyte_command == "exec":
            from plait.flyte._exec import execute
            from plait.flyte._ids import Options

            envs = dict(e.split("=", 1) for e in args.env if "=" in e)
            opts = Options(python=args.python, envs=envs, sources=tuple(args.source))
            argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
            return execute(opts, args.template, argv)
        if args.flyte_command == "import":
            return _import(args)
        return _run(args)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("flyteidl", "msgpack"):
            print(f"plait: {_EXTRA}", file=sys.stderr)
            return 2
        raise
    except PlaitError as exc:
        print(f"plait flyte {args.flyte_command}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        from plait_engine.errors import EngineError

        if not isinstance(exc, EngineError):
            raise
        print(f"plait flyte {args.flyte_command}: {exc.message}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m plait.flyte import|run|exec ...``."""
    parser = argparse.ArgumentParser(prog="plait flyte", description="Run what flytekit produces.")
    _fill(parser)
    return run(parser.parse_args(argv))
