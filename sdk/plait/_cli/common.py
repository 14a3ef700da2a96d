"""What several command groups share: where executions are (a server or the local data dir),
loading entities, parsing inputs, printing values, and the exit codes."""

from __future__ import annotations

import argparse
import datetime
import enum
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from google.protobuf import json_format
from google.protobuf.message import Message
from plaitidl.core.v1 import execution_pb2, identifier_pb2, literals_pb2
from plaitidl.service.v1 import execution_service_pb2 as es

from plait import _embedded, _loader, _serialize, _types
from plait._constants import ENV_CA_CERT, ENV_DATA_DIR, ENV_ENGINE, ENV_TOKEN
from plait._errors import PlaitError, PlaitTypeError, PlaitValueError
from plait._files import Directory, File
from plait._serialize import Entity

if TYPE_CHECKING:
    from plait._client import Client

EP = execution_pb2
# What a command module's `add_parser` receives: `ArgumentParser.add_subparsers()`'s result.
Subparsers = argparse._SubParsersAction  # argparse names no public type for it

EXIT_OK = 0
EXIT_FAILED = 1  # the execution failed, or the engine refused or failed a call
EXIT_USAGE = 2  # the command line is wrong: arguments, input values, unknown names
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT


class UsageError(PlaitError):
    """The command line is wrong (exit code 2); the message says how."""


class Backend(Protocol):
    """Where the CLI finds executions and templates: `plait.Client` (a server) or
    `plait._local.LocalEngine` (the local data dir). Each command is written once against it."""

    address: str

    def close(self) -> None: ...

    def __enter__(self) -> Backend: ...

    def __exit__(self, *exc: object) -> None: ...

    def register_templates(self, request: Any) -> Any: ...

    def get(self, execution: Any) -> es.Execution: ...

    def list_executions(
        self, project: str = "", domain: str = "", phases: Any = (), *, limit: int | None = None
    ) -> list[es.Execution]: ...

    def node_executions(
        self, execution: Any, parent_node_id: str = ""
    ) -> list[es.NodeExecution]: ...

    def data(self, execution: Any) -> es.GetExecutionDataResponse: ...

    def watch(
        self, execution: Any, after_sequence: int = 0, *, counts_only: bool = False
    ) -> Iterator[es.WatchExecutionResponse]: ...

    def logs(
        self,
        execution: Any,
        node_id: str = "",
        attempt: int = 0,
        *,
        follow: bool = False,
        after: int = 0,
    ) -> Iterator[es.StreamLogsResponse]: ...

    def terminate(self, execution: Any, reason: str = "") -> es.Execution: ...

    def delete(self, execution: Any) -> None: ...

    def list_templates(
        self, kind: Any, project: str = "", domain: str = "", name: str = "", *, limit: int = 100
    ) -> list[Any]: ...

    def get_template(self, kind: Any, id: identifier_pb2.Identifier) -> Any: ...

    def list_schedules(self, project: str = "", domain: str = "") -> list[Any]: ...

    def pause_schedule(self, launch_plan: identifier_pb2.Identifier) -> Any: ...

    def resume_schedule(self, launch_plan: identifier_pb2.Identifier) -> Any: ...


# -- where: a server or the local data dir ------------------------------------------------
def add_target_options(p: argparse.ArgumentParser) -> None:
    """``--remote`` (a server) or the local data dir (default), with token and TLS settings."""
    p.add_argument(
        "--remote",
        "--engine",
        dest="remote",
        metavar="HOST:PORT",
        help=f"a plait server (default ${ENV_ENGINE}; without it, the local data dir)",
    )
    p.add_argument(
        "--local",
        action="store_true",
        help=f"use the local data dir even when ${ENV_ENGINE} is set",
    )
    p.add_argument("--data-dir", help=f"the local data dir (default ${ENV_DATA_DIR} or ~/.plait)")
    add_remote_options(p, "")


def remote_address(args: argparse.Namespace) -> str | None:
    """The server the arguments name (``--remote``, else ``$PLAIT_ENGINE``), or None when the
    local data dir is meant (none given, or ``--local``)."""
    if getattr(args, "local", False):
        return None
    return getattr(args, "remote", None) or os.environ.get(ENV_ENGINE) or None


def data_dir(args: argparse.Namespace) -> Path:
    """The local data dir the arguments name."""
    given = getattr(args, "data_dir", None)
    return Path(given).expanduser() if given else _embedded.default_data_dir()


def backend(args: argparse.Namespace) -> Backend:
    """The server (``--remote``) or the local data dir the arguments name."""
    address = remote_address(args)
    if address is None:
        from plait._local import LocalEngine

        return LocalEngine(data_dir(args))
    return client_of(args, address)


def client_of(args: argparse.Namespace, address: str) -> Client:
    """A `Client` of `address` with the arguments' token and TLS settings."""
    from plait._client import Client  # grpc: only the commands that talk to an engine load it

    return Client(address, token=args.token, tls=args.tls, ca_cert=args.ca_cert)


def engine_address(args: argparse.Namespace, attr: str = "engine") -> str:
    """The engine's address from ``--engine`` (or `attr`) or ``$PLAIT_ENGINE``.

    Raises:
        UsageError: Neither is given.
    """
    address = getattr(args, attr, None) or os.environ.get(ENV_ENGINE)
    if not address:
        raise UsageError(f"no engine address: pass --{attr} HOST:PORT or set {ENV_ENGINE}")
    return str(address)


def add_remote_options(p: argparse.ArgumentParser, flag: str = "--engine") -> None:
    """The options of commands that talk to an engine: its address (unless `flag` is
    empty), token and TLS settings."""
    if flag:
        p.add_argument(
            flag, "--remote", dest=flag.lstrip("-"), metavar="HOST:PORT",
            help=f"the engine (default ${ENV_ENGINE})",
        )  # fmt: skip
    p.add_argument(
        "--token",
        default=os.environ.get(ENV_TOKEN) or None,
        help=f"bearer token (default ${ENV_TOKEN})",
    )
    p.add_argument("--tls", action="store_true", help="connect with TLS (system roots)")
    p.add_argument(
        "--ca-cert",
        default=os.environ.get(ENV_CA_CERT) or None,
        help=f"PEM file of the CA to trust; implies --tls (default ${ENV_CA_CERT})",
    )


def add_output_option(p: argparse.ArgumentParser) -> None:
    """``-o/--output text|json``."""
    p.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help="text for people (default) or json for scripts",
    )


# -- entities and inputs ------------------------------------------------------------------
def load_entity(path: str, name: str) -> Entity:
    """The workflow, launch plan or task `name` of the file or module `path`.

    Raises:
        UsageError: There is none by that name; the message lists those there are.
    """
    try:
        module = _loader.load_path(path)
    except PlaitValueError as exc:
        raise UsageError(str(exc)) from None
    except ModuleNotFoundError as exc:
        if exc.name != path.partition(".")[0]:
            raise  # the file was found; something it imports was not: the user's traceback
        raise UsageError(f"no file or module {path!r}: {exc}") from None
    found: Entity | None = getattr(module, name, None)
    if found is not None and _embedded._is_entity(found):
        return found
    known = sorted(k for k, v in vars(module).items() if _embedded._is_entity(v))
    raise UsageError(
        f"{path} has no workflow, task or launch plan named {name!r}; it defines {known}"
    )


def input_parser(entity: Entity, prog: str) -> argparse.ArgumentParser:
    """The parser of an entity's inputs: ``--name VALUE`` each, with type and default."""
    hints, defaults, _ = _serialize.python_interface(entity)
    p = argparse.ArgumentParser(
        prog=prog, description="Inputs of the workflow.", allow_abbrev=False
    )
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


def parse_inputs(entity: Entity, prog: str, rest: list[str]) -> dict[str, object]:
    """The entity's inputs from ``--name value`` arguments, as Python values.

    Raises:
        SystemExit: An input is missing or unknown (argparse prints the usage, exit code 2).
        UsageError: A value does not parse; the message names the input.
    """
    ns = input_parser(entity, prog).parse_args(rest)
    hints, _, _ = _serialize.python_interface(entity)
    try:
        return {k: _types.parse_text(v, hints[k], var=k) for k, v in vars(ns).items()}
    except (PlaitValueError, PlaitTypeError) as exc:
        raise UsageError(str(exc)) from None


# -- printing -----------------------------------------------------------------------------
def json_default(o: object) -> object:
    """What `json.dumps` cannot encode itself, as plait prints it."""
    if isinstance(o, File | Directory):
        return o.uri
    if isinstance(o, enum.Enum):
        return o.value
    if isinstance(o, datetime.datetime | datetime.timedelta):
        return str(o)
    if isinstance(o, bytes):
        return o.decode(errors="replace")
    if hasattr(o, "__dataclass_fields__"):
        return {k: getattr(o, k) for k in o.__dataclass_fields__}
    return repr(o)


def format_value(value: object) -> str:
    """One output as `plait run` prints it: text as is, a File by URI, the rest as JSON."""
    if isinstance(value, File | Directory):
        return value.uri
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=json_default)
    except (TypeError, ValueError):
        return repr(value)


def print_outputs(entity: Entity | None, outputs: literals_pb2.LiteralMap) -> None:
    """Print an execution's outputs on stdout: one value alone, or one ``name: value`` line each.

    Without the entity (a resumed run whose source is gone) the literals are printed as such.
    """
    if entity is None:
        for k in sorted(outputs.literals):
            print(f"{k}: {outputs.literals[k]}")
        return
    value = _serialize.outputs_to_python(entity, outputs)
    _, _, outs = _serialize.python_interface(entity)
    if len(outs) == 1 and not hasattr(value, "_fields"):
        print(format_value(value))
    else:  # several outputs, or named ones (a NamedTuple): one `name: value` line each
        for name, v in zip(outs, value if isinstance(value, tuple) else (), strict=False):
            print(f"{name}: {format_value(v)}")


def print_values(values: dict[str, object]) -> None:
    """Outputs decoded by type: one value alone, or one ``name: value`` line each."""
    if len(values) == 1:
        print(format_value(next(iter(values.values()))))
        return
    for name, v in values.items():
        print(f"{name}: {format_value(v)}")


def phase_name(phase: int) -> str:
    """An execution phase without its prefix: ``SUCCEEDED``."""
    return EP.ExecutionPhase.Name(phase).removeprefix("EXECUTION_PHASE_")  # type: ignore[arg-type]


def node_phase_name(phase: int) -> str:
    """A node phase without its prefix: ``RUNNING``."""
    return EP.NodePhase.Name(phase).removeprefix("NODE_PHASE_")  # type: ignore[arg-type]


def counts(nodes: Any) -> dict[str, int]:
    """A `NodeCounts` message as the dict the progress bar and summaries read."""
    return {
        k: getattr(nodes, k)
        for k in ("total", "succeeded", "running", "queued", "failed", "skipped", "cached")
    }


def time_text(ts: Any) -> str:
    """A Timestamp to the second, or ``-`` when unset."""
    return str(ts.ToDatetime().replace(microsecond=0)) if ts.seconds else "-"


def node_label(node_id: str, name: str) -> str:
    """A node as people read it: its id with its name, ``n0/n3 (merge)``."""
    return f"{node_id} ({name})" if name and name != node_id else node_id


def to_json(message: Message) -> dict[str, Any]:
    """A message as JSON-ready data, field names as in the protos (``code_digest``)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)
