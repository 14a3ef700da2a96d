"""The narrow interface node handlers use, and the protocol they implement.

Handlers never import the graph walker: it hands them a `Graph` (what they may do to the
graph) and calls them through `NodeHandler`. A kind that owns a frame's progress (array nodes)
hangs a `FrameHooks` object on the frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from plaitidl.core.v1 import errors_pb2, literals_pb2, workflow_pb2

from plait_engine import compiler
from plait_engine.scheduler.journal import Journal
from plait_engine.scheduler.state import Frame, FrameHooks, NodeExec, Templates
from plait_engine.store import NodeRecord


@dataclass
class SchedulerConfig:
    """Scheduler knobs.

    Attributes:
        limits: What the compiler accepts in a dynamic spec.
        system_retries: Default budget for system errors.
        default_timeout: Seconds an attempt may run when its task sets no timeout (0: none).
        cache_wait_poll: How often a serialized-cache waiter looks again (seconds).
        reservation_ttl: Lifetime of a cache_serialize reservation (seconds).
        lease: Seconds an execution stays owned without renewal.
        pass_budget: Most transitions started in one pass before it commits (the crash window
            stays small however much work arrives).
        adopt: Whether the scheduler adopts every unfinished execution it can claim (a server)
            or only those it is handed (the embedded runner).
    """

    limits: compiler.Limits = field(default_factory=compiler.Limits)
    system_retries: int = 3
    default_timeout: float = 24 * 3600.0
    cache_wait_poll: float = 0.5
    reservation_ttl: float = 600.0
    lease: float = 10.0
    pass_budget: int = 4000
    adopt: bool = True


def user_error(code: str, message: str, *, recoverable: bool = False) -> errors_pb2.ExecutionError:
    """An error caused by the user's code or spec."""
    return errors_pb2.ExecutionError(
        code=code,
        message=message,
        kind=errors_pb2.ExecutionError.KIND_USER,
        recoverable=recoverable,
    )


class Graph(Protocol):
    """What a node handler may do to the graph it is part of."""

    journal: Journal
    config: SchedulerConfig

    def succeed(self, n: NodeExec) -> None:
        """`n.outputs` is set: record the success and release its downstream nodes."""

    def fail(self, n: NodeExec, err: errors_pb2.ExecutionError) -> None:
        """Fail the node (and its frame, unless the frame tolerates it)."""

    def start_frame(
        self,
        owner: NodeExec,
        inputs: literals_pb2.LiteralMap,
        templates: Templates,
        depth: int,
        nodes: Sequence[workflow_pb2.Node],
        outputs: Sequence[literals_pb2.Binding],
        *,
        outer: Frame | None = None,
        tolerance: int = 0,
    ) -> Frame:
        """Run a graph as the sub-graph of `owner`; its nodes start as they become ready."""

    def open_frame(
        self,
        owner: NodeExec,
        inputs: literals_pb2.LiteralMap,
        hooks: FrameHooks,
        *,
        tolerance: int = 0,
    ) -> Frame:
        """An empty child frame of `owner` whose progress `hooks` drives (see `add_nodes`)."""

    def add_nodes(self, frame: Frame, nodes: Sequence[NodeExec]) -> None:
        """Add prepared nodes (with preset inputs) to an open frame without starting them; a
        frame left without nodes finishes at once."""

    def make_ready(self, n: NodeExec) -> None:
        """Start the node on this pass."""


class NodeHandler(Protocol):
    """One node kind."""

    def begin(self, n: NodeExec, recovered: NodeRecord | None) -> None:
        """Start a node whose inputs are resolved (`recovered`: its stored record, if any)."""


__all__ = ["FrameHooks", "Graph", "NodeHandler", "SchedulerConfig", "user_error"]
