"""The `plait` command line."""

from __future__ import annotations

import argparse
import datetime
import enum
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from plaitidl.core.v1 import execution_pb2, literals_pb2

from plait import _embedded, _loader, _serialize, _types
from plait._errors import ExecutionFailedError, PlaitError
from plait._files import Directory, File
from plait._serialize import Entity
from plait.flyte import _cli as _flyte_cli

EP = execution_pb2


def _format(value: object) -> str:
    if isinstance(value, File | Directory):
        return value.uri

    def default(o: object) -> object:
        if isinstance(o, File | Directory):
            return o.uri
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
        labels = {
            "plait.source": str(Path(args.file).resolve())
            if args.file.endswith(".py")
            else args.file,
            "plait.entity": args.workflow,
        }
    result = _embedded.run(
        entity,
        inputs or literals_pb2.LiteralMap(),
        data_dir,
        resume=args.resume,
        progress=bar,
        name=args.name or "",
        labels=labels,
        on_start=None if args.quiet or args.resume else _announcer(args.data_dir),
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
    _print_outputs(entity, result.outputs)
    return 0


def _print_outputs(entity: Entity | None, outputs: literals_pb2.LiteralMap) -> None:
    if entity is None:
        for k in sorted(outputs.literals):
            print(f"{k}: {outputs.literals[k]}")
        return
    value = _serialize.outputs_to_python(entity, outputs)
    _, _, outs = _serialize.python_interface(entity)
    if len(outs) == 1 and not hasattr(value, "_fields"):
        print(_format(value))
    else:  # several outputs, or named ones (a NamedTuple): one `name: value` line each
        for name, v in zip(outs, value if isinstance(value, tuple) else (), strict=False):
            print(f"{name}: {_format(v)}")


def _engine_address(args: argparse.Namespace, attr: str = "engine") -> str:
    address = getattr(args, attr, None) or os.environ.get("PLAIT_ENGINE")
    if not address:
        raise PlaitError(f"no engine address: pass --{attr} HOST:PORT or set PLAIT_ENGINE")
    return str(address)


def _client(args: argparse.Namespace, attr: str = "engine") -> Any:
    from plait._client import Client

    return Client(_engine_address(args, attr), token=args.token, tls=args.tls, ca_cert=args.ca_cert)


def _counts(nodes: Any) -> dict[str, int]:
    return {
        k: getattr(nodes, k)
        for k in ("total", "succeeded", "running", "failed", "skipped", "cached")
    }


def _phase(phase: int) -> str:
    return EP.ExecutionPhase.Name(phase).removeprefix("EXECUTION_PHASE_")  # type: ignore[arg-type]


def _cmd_run_remote(args: argparse.Namespace, rest: list[str]) -> int:
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
    entity = _entity(args.file, args.workflow)
    parser = _input_parser(entity, f"plait run {args.file} {args.workflow}")
    ns = parser.parse_args(rest)
    hints, _, _ = _serialize.python_interface(entity)
    values = {k: _types.parse_text(v, hints[k], var=k) for k, v in vars(ns).items()}
    labels = {
        "plait.source": str(Path(args.file).resolve()) if args.file.endswith(".py") else args.file,
        "plait.entity": args.workflow,
    }
    bar = _embedded.ProgressBar() if sys.stderr.isatty() and not args.quiet else None
    with _client(args, "remote") as client:
        handle = client.execute(entity, values, name=args.name or "", labels=labels)
        started = time.monotonic()

        def show(nodes: Any) -> None:
            if bar is not None:
                bar(_counts(nodes))

        try:
            client.wait(handle, progress=show)
        except ExecutionFailedError:
            pass  # reported below, like the embedded run does
        state = client.get(handle)
        counts = _counts(state.nodes)
        if bar is not None:
            bar.close(counts)
        phase = _phase(state.phase)
        if not args.quiet:
            print(
                f"execution {state.id.name}: {phase} in {time.monotonic() - started:.2f}s "
                f"({counts['succeeded']} nodes succeeded, {counts['cached']} cached)",
                file=sys.stderr,
            )
        if phase != "SUCCEEDED":
            err = state.error
            where = f" at node {err.node_id}" if err.node_id else ""
            print(f"error{where}: {err.code}: {err.message}", file=sys.stderr)
            return 1
        _print_outputs(entity, client.data(handle).outputs)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from plait_engine.api.server import serve
    from plait_engine.config import ConfigError, load_config

    overrides = {
        k: getattr(args, k)
        for k in (
            "address",
            "data_dir",
            "max_nodes",
            "max_depth",
            "max_literal_bytes",
            "max_message_bytes",
            "heartbeat_interval",
            "lease_duration",
            "system_retries",
            "token",
            "tls_cert",
            "tls_key",
        )
    }
    try:
        config = load_config(args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"plait serve: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(serve(config))
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from plait._worker import run_worker

    try:
        run_worker(
            _engine_address(args),
            args.paths,
            slots=args.slots,
            queues=args.queue or None,
            token=args.token,
            worker_id=args.worker_id,
            tls=args.tls,
            ca_cert=args.ca_cert,
        )
    except KeyboardInterrupt:
        pass
    return 0


def _cmd_register(args: argparse.Namespace) -> int:
    entities: list[Any] = []
    for path in args.paths:
        module = _loader.load_path(path)
        entities += [v for v in vars(module).values() if _embedded._is_entity(v)]
    if not entities:
        raise PlaitError(f"no task, workflow or launch plan is defined in {args.paths}")
    tasks, workflows, lps = _serialize.closure(entities)
    from plaitidl.service.v1 import registry_service_pb2

    with _client(args) as client:
        response = client.register_templates(
            registry_service_pb2.RegisterRequest(tasks=tasks, workflows=workflows, launch_plans=lps)
        )
    kinds = {1: "task", 2: "workflow", 3: "launch plan"}
    for label, ids in (("created", response.created), ("unchanged", response.unchanged)):
        for i in ids:
            kind = kinds.get(i.resource_type, "?")
            print(f"{label:9} {kind:11} {i.project}/{i.domain}/{i.name}@{i.version}")
    return 0


def _time(ts: Any) -> str:
    return str(ts.ToDatetime().replace(microsecond=0)) if ts.seconds else "-"


def _event_line(event: Any) -> str:
    when = _time(event.occurred_at)
    if event.WhichOneof("transition") == "execution":
        t = event.execution
        line = f"{event.sequence:>6} {when}  execution -> {_phase(t.phase)}"
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


def _cmd_executions(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.action == "list":
            rows = client.list_executions(args.project or "", args.domain or "", limit=args.limit)
            print(f"{'NAME':20} {'PHASE':10} {'NODES':>9}  {'CREATED':19}  WORKFLOW")
            for e in rows:
                nodes = f"{e.nodes.succeeded}/{e.nodes.total}"
                print(
                    f"{e.id.name:20} {_phase(e.phase):10} {nodes:>9}  {_time(e.created_at):19}"
                    f"  {e.workflow_id.name}@{e.workflow_id.version}"
                )
            return 0
        if args.action == "get":
            e = client.get(args.id)
            print(f"name:      {e.id.project}/{e.id.domain}/{e.id.name}")
            print(f"workflow:  {e.workflow_id.name}@{e.workflow_id.version}")
            print(f"phase:     {_phase(e.phase)}")
            print(f"created:   {_time(e.created_at)}")
            print(f"updated:   {_time(e.updated_at)}")
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
        if args.action == "watch":
            for batch in client.watch(args.id, args.after):
                for event in batch.events:
                    print(_event_line(event), flush=True)
            return 0 if client.get(args.id).phase == EP.EXECUTION_PHASE_SUCCEEDED else 1
        e = client.terminate(args.id, args.reason or "")
        print(f"execution {e.id.name}: {_phase(e.phase)}")
        return 0


def _remote_options(p: argparse.ArgumentParser, flag: str = "--engine") -> None:
    if flag:
        p.add_argument(flag, metavar="HOST:PORT", help="the engine (default $PLAIT_ENGINE)")
    p.add_argument(
        "--token",
        default=os.environ.get("PLAIT_TOKEN") or None,
        help="bearer token (default $PLAIT_TOKEN)",
    )
    p.add_argument("--tls", action="store_true", help="connect with TLS (system roots)")
    p.add_argument(
        "--ca-cert",
        default=os.environ.get("PLAIT_CA_CERT") or None,
        help="PEM file of the CA to trust; implies --tls (default $PLAIT_CA_CERT)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `plait` command."""
    # Like `python -m`, make the working directory importable, so that a worker can import a
    # task's module by the dotted name a client registered it under (`examples.merge_sort`).
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    parser = argparse.ArgumentParser(prog="plait", description="plait: dynamic workflows.")
    sub = parser.add_subparsers(dest="command", required=True)
    # No abbreviations: a workflow input --n must not be taken for --name.
    run = sub.add_parser(
        "run",
        allow_abbrev=False,
        help="run a workflow (embedded engine, or --remote HOST:PORT)",
        description="Run WORKFLOW from FILE; its inputs are given as --name value.",
    )
    run.add_argument("file", nargs="?", help="a .py file or a module name")
    run.add_argument("workflow", nargs="?", help="the workflow, launch plan or task to run")
    run.add_argument("--data-dir", help="engine state (default $PLAIT_DATA_DIR or ~/.plait)")
    run.add_argument("--resume", metavar="EXECUTION", help="resume an interrupted execution")
    run.add_argument("--name", help="name of the new execution (default: generated)")
    run.add_argument("-q", "--quiet", action="store_true", help="print only the outputs")
    run.add_argument(
        "--remote",
        metavar="HOST:PORT",
        help="run on this engine instead of the embedded one (default $PLAIT_ENGINE)",
    )
    run.add_argument(
        "--local",
        action="store_true",
        help="run on the embedded engine even when $PLAIT_ENGINE is set",
    )
    _remote_options(run, "")

    srv = sub.add_parser(
        "serve",
        help="run the engine as a gRPC server",
        description="Serve the registry, execution and worker services. "
        "Settings: defaults < --config FILE ($PLAIT_CONFIG) < PLAIT_* "
        "environment variables < flags.",
    )
    srv.add_argument("--config", help="TOML file of settings (default $PLAIT_CONFIG)")
    srv.add_argument("--address", help="HOST:PORT to listen on (default 127.0.0.1:8089)")
    srv.add_argument("--data-dir", help="engine state (default ~/.plait/server)")
    for flag, kind, what in (
        ("--max-nodes", int, "nodes per workflow or dynamic spec"),
        ("--max-depth", int, "nesting depth of dynamic specs"),
        ("--max-literal-bytes", int, "size of one inline literal"),
        ("--max-message-bytes", int, "largest gRPC message (default 64 MiB)"),
        ("--heartbeat-interval", float, "seconds between worker heartbeats"),
        ("--lease-duration", float, "seconds an assignment lives without a heartbeat"),
        ("--system-retries", int, "retries of system errors per node"),
    ):
        srv.add_argument(flag, type=kind, help=what)
    srv.add_argument("--token", help="require 'authorization: Bearer TOKEN' on every call")
    srv.add_argument("--tls-cert", help="PEM certificate chain (with --tls-key)")
    srv.add_argument("--tls-key", help="PEM private key")
    srv.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")

    wrk = sub.add_parser("worker", help="serve tasks of Python modules to an engine")
    wrk.add_argument("paths", nargs="+", metavar="MODULE_OR_FILE")
    wrk.add_argument("--slots", type=int, default=4, help="tasks run at once (default 4)")
    wrk.add_argument("--queue", action="append", help="serve this queue (repeatable)")
    wrk.add_argument("--worker-id", help="this worker's id (default: generated)")
    _remote_options(wrk)

    reg = sub.add_parser("register", help="register every task and workflow of files")
    reg.add_argument("paths", nargs="+", metavar="FILE")
    _remote_options(reg)

    ex = sub.add_parser("executions", help="list, inspect, watch or stop executions")
    actions = ex.add_subparsers(dest="action", required=True)
    ls = actions.add_parser("list", help="executions, newest first")
    ls.add_argument("--project", help="only this project (default: default)")
    ls.add_argument("--domain", help="only this domain (default: development)")
    ls.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    _remote_options(ls)
    for action, what in (
        ("get", "an execution's state"),
        ("watch", "print an execution's events as they happen"),
        ("terminate", "abort a running execution"),
    ):
        a = actions.add_parser(action, help=what)
        a.add_argument("id", help="execution name (or project/domain/name)")
        if action == "watch":
            a.add_argument("--after", type=int, default=0, help="events after this sequence")
        if action == "terminate":
            a.add_argument("--reason", help="why; recorded in the execution's error")
        _remote_options(a)

    _flyte_cli.add_parser(sub)

    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        if args.command == "run":
            if not args.local and (args.remote or os.environ.get("PLAIT_ENGINE")):
                return _cmd_run_remote(args, rest)
            return _cmd_run(args, rest)
        if args.command == "serve":
            return _cmd_serve(args)
        if args.command == "worker":
            return _cmd_worker(args)
        if args.command == "register":
            return _cmd_register(args)
        if args.command == "executions":
            return _cmd_executions(args)
        if args.command == "flyte":
            return _flyte_cli.run(args)
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
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
