"""`plait serve`: the engine as a gRPC server."""

from __future__ import annotations

import argparse
import sys

from plait._cli import oplog
from plait._cli.common import Subparsers


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
    from plait_engine.config import HELP, setting_kind

    srv.add_argument("--config", help="TOML file of settings (default $PLAIT_CONFIG)")
    # One flag per engine setting, generated: `plait serve --help` lists them all.
    for name, what in HELP.items():
        flag = "--" + name.replace("_", "-")
        kind = setting_kind(name)
        if kind is tuple:
            srv.add_argument(flag, action="append", metavar="VALUE", help=what)
        else:
            srv.add_argument(flag, type=kind if kind in (int, float) else str, help=what)
    srv.add_argument("-v", "--verbose", action="store_true", help="same as --log-level debug")
    srv.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace, rest: list[str]) -> int:
    import asyncio

    from plait_engine.api.server import serve
    from plait_engine.config import HELP, ConfigError, load_config

    overrides = {k: getattr(args, k) for k in HELP}
    if args.verbose:
        overrides["log_level"] = "debug"
    try:
        config = load_config(args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"plait serve: {exc}", file=sys.stderr)
        return 2
    oplog.configure(config.log_format, config.log_level)
    from plait_engine.store import StoreError

    try:
        asyncio.run(serve(config))
    except (ConfigError, StoreError) as exc:
        print(f"plait serve: {exc}", file=sys.stderr)
        return 2
    return 0
