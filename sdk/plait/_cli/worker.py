"""`plait worker`: serve the tasks of Python modules to an engine."""

from __future__ import annotations

import argparse

from plait._channels import Endpoint
from plait._cli.common import Subparsers, add_remote_options, engine_address


def add_parser(sub: Subparsers[argparse.ArgumentParser]) -> None:
    """Add `worker`."""
    wrk = sub.add_parser("worker", help="serve tasks of Python modules to an engine")
    wrk.add_argument("paths", nargs="+", metavar="MODULE_OR_FILE")
    wrk.add_argument("--slots", type=int, default=4, help="tasks run at once (default 4)")
    wrk.add_argument("--queue", action="append", help="serve this queue (repeatable)")
    wrk.add_argument("--worker-id", help="this worker's id (default: generated)")
    add_remote_options(wrk)
    wrk.set_defaults(handler=_worker)


def _worker(args: argparse.Namespace, rest: list[str]) -> int:
    from plait._worker import run_worker  # grpc: loaded only by the commands that need it

    try:
        engine = Endpoint(
            engine_address(args), token=args.token, tls=args.tls, ca_cert=args.ca_cert
        )
        run_worker(
            engine, args.paths, slots=args.slots, queues=args.queue or None,
            worker_id=args.worker_id,
        )  # fmt: skip
    except KeyboardInterrupt:
        pass
    return 0
