"""`plait console`: the web console over a local data dir (what `plait run` stores)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from plait._cli.common import Subparsers
from plait._constants import ENV_DATA_DIR

DEFAULT_ADDRESS = "127.0.0.1:8090"


def add_parser(sub: Subparsers[argparse.ArgumentParser]) -> None:
    """Add `console`."""
    p = sub.add_parser(
        "console",
        help="serve the web console of a local data dir",
        description="Serve the web console (and the Connect/JSON endpoint) of the executions "
        "in a local data dir, as `plait run` stores them. It runs nothing itself: launch from "
        "the console of `plait serve --console-address HOST:PORT`.",
    )
    p.add_argument("--data-dir", help=f"engine state (default ${ENV_DATA_DIR} or ~/.plait)")
    p.add_argument(
        "--address",
        default=DEFAULT_ADDRESS,
        metavar="HOST:PORT",
        help=f"where to listen (default {DEFAULT_ADDRESS}; port 0 picks a free one)",
    )
    p.set_defaults(handler=_console)


def _console(args: argparse.Namespace, rest: list[str]) -> int:
    import asyncio

    from plait_engine.config import EngineConfig

    from plait._embedded import default_data_dir

    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    if ":" not in args.address or not args.address.rsplit(":", 1)[1].isdigit():
        print(f"plait console: --address {args.address!r}: expected HOST:PORT", file=sys.stderr)
        return 2
    try:
        from plait_engine.console.local import serve_local
    except ImportError as exc:
        print(
            f"plait console: needs the console extra ({exc.name} is missing): "
            "pip install 'plait[console]'",
            file=sys.stderr,
        )
        return 2
    config = EngineConfig(data_dir=data_dir, console_address=args.address)
    try:
        asyncio.run(serve_local(config))
    except OSError as exc:
        print(f"plait console: cannot listen on {args.address}: {exc}", file=sys.stderr)
        return 2
    return 0
