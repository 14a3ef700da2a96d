"""What several command groups share: engine options, loading entities, printing values."""

from __future__ import annotations

import argparse
import datetime
import enum
import json
import os
from typing import TYPE_CHECKING, Any

from plaitidl.core.v1 import execution_pb2, literals_pb2

from plait import _embedded, _loader, _serialize, _types
from plait._constants import ENV_CA_CERT, ENV_ENGINE, ENV_TOKEN
from plait._errors import PlaitError
from plait._files import Directory, File
from plait._serialize import Entity

if TYPE_CHECKING:
    from plait._client import Client

EP = execution_pb2
# What a command module's `add_parser` receives: `ArgumentParser.add_subparsers()`'s result.
Subparsers = argparse._SubParsersAction  # argparse names no public type for it


def format_value(value: object) -> str:
    """One output as `plait run` prints it: text as is, a File by URI, the rest as JSON."""
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


def load_entity(path: str, name: str) -> Entity:
    """The workflow, launch plan or task `name` of the file or module `path`.

    Raises:
        PlaitError: There is none by that name; the message lists those there are.
    """
    module = _loader.load_path(path)
    found: Entity | None = getattr(module, name, None)
    if found is not None and _embedded._is_entity(found):
        return found
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


def parse_inputs(entity: Entity, prog: str, rest: list[str]) -> dict[str, object]:
    """The entity's inputs from ``--name value`` arguments, as Python values.

    Raises:
        SystemExit: An input is missing or unknown (argparse prints the usage).
        PlaitValueError: A value does not parse; the message names the input.
    """
    ns = _input_parser(entity, prog).parse_args(rest)
    hints, _, _ = _serialize.python_interface(entity)
    return {k: _types.parse_text(v, hints[k], var=k) for k, v in vars(ns).items()}


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


def engine_address(args: argparse.Namespace, attr: str = "engine") -> str:
    """The engine's address from ``--engine`` (or `attr`) or ``$PLAIT_ENGINE``.

    Raises:
        PlaitError: Neither is given.
    """
    address = getattr(args, attr, None) or os.environ.get(ENV_ENGINE)
    if not address:
        raise PlaitError(f"no engine address: pass --{attr} HOST:PORT or set {ENV_ENGINE}")
    return str(address)


def client(args: argparse.Namespace, attr: str = "engine") -> Client:
    """A `Client` of the engine the arguments name, with their token and TLS settings."""
    from plait._client import Client  # grpc: only the commands that talk to an engine load it

    return Client(engine_address(args, attr), token=args.token, tls=args.tls, ca_cert=args.ca_cert)


def add_remote_options(p: argparse.ArgumentParser, flag: str = "--engine") -> None:
    """The options of commands that talk to an engine: its address (unless `flag` is
    empty), token and TLS settings."""
    if flag:
        p.add_argument(flag, metavar="HOST:PORT", help=f"the engine (default ${ENV_ENGINE})")
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


def phase_name(phase: int) -> str:
    """An execution phase without its prefix: ``SUCCEEDED``."""
    return EP.ExecutionPhase.Name(phase).removeprefix("EXECUTION_PHASE_")  # type: ignore[arg-type]


def counts(nodes: Any) -> dict[str, int]:
    """A `NodeCounts` message as the dict the progress bar and summaries read."""
    return {
        k: getattr(nodes, k)
        for k in ("total", "succeeded", "running", "failed", "skipped", "cached")
    }


def time_text(ts: Any) -> str:
    """A Timestamp to the second, or ``-`` when unset."""
    return str(ts.ToDatetime().replace(microsecond=0)) if ts.seconds else "-"
