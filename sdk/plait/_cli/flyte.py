"""``plait flyte ...``: import and run what flytekit produces (see `plait.flyte`)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Add the ``flyte`` command group."""
    from plait.flyte import _cli as flyte_cli

    p = flyte_cli.add_parser(subparsers)
    p.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace, rest: list[str]) -> int:
    from plait.flyte import _cli as flyte_cli

    return flyte_cli.run(args)
