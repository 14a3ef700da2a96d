"""`plait serve`: the engine as a gRPC server."""

from __future__ import annotations

import argparse
import sys

from plait._cli import oplog
from plait._cli.common import Subparsers

# Flags that override the engine's settings one to one: (flag, type, help).
_LIMITS: tuple[tuple[str, type, str], ...] = (
    ("--max-nodes", int, "nodes per workflow or dynamic spec"),
    ("--max-depth", int, "nesting depth of dynamic specs"),
    ("--max-literal-bytes", int, "size of one inline literal"),
    ("--max-message-bytes", int, "largest gRPC message (default 64 MiB)"),
    ("--heartbeat-interval", float, "seconds between worker heartbeats"),
    ("--lease-duration", float, "seconds an assignment lives without a heartbeat"),
    ("--system-retries", int, "retries of system errors per node"),
)
_OVERRIDES = (
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
    "log_format",
    "log_level",
)


def add_parser(sub: Subparsers[argparse.ArgumentParser]) -> None:
    """Add `serve`; settings: defaults < --config < PLAIT_* environment < flags."""
    srv = sub.add_parser(
        "serve",
        help="run the engine as a gRPC server",
        description="Serve the registry, execution and worker services. "
        "Settings: defaults < --config FILE ($PLAIT_CONFIG) < PLAIT_* "
        "environment variables < flags. Logs sessions, registrations and executions at info "
        "level on stderr (--log-format json for JSON lines).",
    )
    srv.add_argument("--config", help="TOML file of settings (default $PLAIT_CONFIG)")
    srv.add_argument("--address", help="HOST:PORT to listen on (default 127.0.0.1:8089)")
    srv.add_argument("--data-dir", help="engine state (default ~/.plait/server)")
    for flag, kind, what in _LIMITS:
        srv.add_argument(flag, type=kind, help=what)
    srv.add_argument("--token", help="require 'authorization: Bearer TOKEN' on every call")
    srv.add_argument("--tls-cert", help="PEM certificate chain (with --tls-key)")
    srv.add_argument("--tls-key", help="PEM private key")
    oplog.add_arguments(srv)
    srv.add_argument("-v", "--verbose", action="store_true", help="same as --log-level debug")
    srv.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace, rest: list[str]) -> int:
    import asyncio

    from plait_engine.api.server import serve
    from plait_engine.config import ConfigError, load_config

    overrides = {k: getattr(args, k) for k in _OVERRIDES}
    if args.verbose:
        overrides["log_level"] = "debug"
    try:
        config = load_config(args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"plait serve: {exc}", file=sys.stderr)
        return 2
    oplog.configure(config.log_format, config.log_level)
    asyncio.run(serve(config))
    return 0
