"""`plait run --remote`: start an execution on a server and follow it until it ends.

The execution's name is printed as soon as it exists; Ctrl-C stops following, not the
execution (``plait executions watch`` reattaches).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from typing import Any

from plaitidl.service.v1 import execution_service_pb2 as es

from plait._cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    UsageError,
    client_of,
    counts,
    load_entity,
    parse_inputs,
    phase_name,
    print_outputs,
    print_values,
)
from plait._cli.executions import outputs_by_type
from plait._cli.templates import find_target, target_inputs
from plait._client import resume_sequence
from plait._errors import InvalidArgumentError, UnavailableError
from plait._progress import ProgressBar, Snapshot

# Seconds between attempts to follow the execution again while the server is unreachable.
_RECONNECT = 0.5


class _Follower:
    """Draws the progress the server sends (counts, what runs, why nodes wait) on the bar."""

    def __init__(self, bar: ProgressBar | None) -> None:
        self.bar = bar

    def __call__(self, batch: es.WatchExecutionResponse) -> None:
        if self.bar is None:
            return
        running = Counter({r.name: r.count for r in batch.running}).elements()
        # The server sends at most ten updates a second: each one is drawn.
        self.bar.update(
            Snapshot(counts(batch.nodes), running=running, waiting=batch.waiting), force=True
        )


def _check(args: argparse.Namespace) -> None:
    from plait._cli.run import LIMITS

    if args.resume:
        raise UsageError(
            "--resume is for the embedded engine; a server resumes executions by itself"
        )
    given = [f for f, _, _ in LIMITS if getattr(args, f[2:].replace("-", "_")) is not None]
    if given:
        raise UsageError(
            f"{', '.join(given)} set the embedded engine's limits; a server's are set by "
            "`plait serve`"
        )
    if not args.file:
        raise UsageError("give FILE WORKFLOW or the NAME of a registered workflow")


def _start(engine: Any, args: argparse.Namespace, rest: list[str]) -> tuple[Any, Any]:
    """Start the execution; returns its handle and the SDK entity it runs (None by name)."""
    from plait._cli.run import labels_of, names_registered

    try:
        if names_registered(args):
            target = find_target(engine, args.file)
            inputs = target_inputs(target, f"plait run {args.file}", rest)
            return engine.execute(target.id, inputs, name=args.name or ""), None
        entity = load_entity(args.file, args.workflow)
        values = parse_inputs(entity, f"plait run {args.file} {args.workflow}", rest)
        handle = engine.execute(entity, values, name=args.name or "", labels=labels_of(args))
        return handle, entity
    except InvalidArgumentError as exc:  # the server refused the inputs: bad input too
        raise UsageError(str(exc)) from None


def run(args: argparse.Namespace, rest: list[str], address: str) -> int:
    """Run on the server at `address`; returns the exit code."""
    _check(args)
    bar = ProgressBar() if sys.stderr.isatty() and not args.quiet else None
    hint = f" --remote {address}"
    with client_of(args, address) as engine:
        handle, entity = _start(engine, args, rest)
        if not args.quiet:
            print(
                f"execution {handle.name} started on {address} "
                f"(follow it with: plait executions watch{hint} {handle.name})",
                file=sys.stderr,
                flush=True,
            )
        started = time.monotonic()
        try:
            _follow(engine, handle, _Follower(bar))
        except KeyboardInterrupt:
            if bar is not None:
                bar.clear()
            print(
                f"\ninterrupted: execution {handle.name} keeps running on {address}; "
                f"reattach with: plait executions watch{hint} {handle.name}",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
        return _finish(engine, args, handle, entity, (bar, started, hint))


def _finish(
    engine: Any, args: argparse.Namespace, handle: Any, entity: Any,
    shown: tuple[ProgressBar | None, float, str],
) -> int:  # fmt: skip
    """The summary, the error or the outputs of the ended execution."""
    from plait._cli.run import report_error, summary

    bar, started, hint = shown
    state = engine.get(handle)
    nodes = counts(state.nodes)
    if bar is not None:
        bar.close(nodes)
    phase = phase_name(state.phase)
    if not args.quiet:
        summary(state.id.name, phase, time.monotonic() - started, nodes)
    if phase != "SUCCEEDED":
        name = _node_name(engine, handle, state.error.node_id)
        return report_error(state.error, state.id.name, name, hint)
    if entity is not None:
        print_outputs(entity, engine.data(handle).outputs)
    else:
        values = outputs_by_type(engine, state)
        if values:
            print_values(values)
    return EXIT_OK


def _follow(engine: Any, handle: Any, follower: _Follower) -> None:
    """Follow the execution's progress (counts, not its events) until it ends, resuming
    across restarts of the server."""
    seq = 0
    while True:
        try:
            for batch in engine.watch(handle, seq, counts_only=True):
                seq = resume_sequence(batch, seq)
                follower(batch)
            return
        except UnavailableError:
            time.sleep(_RECONNECT)


def _node_name(engine: Any, handle: Any, node_id: str) -> str:
    if not node_id:
        return ""
    nodes = engine.node_executions(handle)
    return next((n.name for n in nodes if n.id.node_id == node_id), "")
