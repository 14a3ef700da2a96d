"""Records and the abstract store interface."""

from __future__ import annotations

import abc
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple


class TemplateKind(enum.IntEnum):
    """Kinds of registered templates; values equal `ResourceType`."""

    TASK = 1
    WORKFLOW = 2
    LAUNCH_PLAN = 3


@dataclass
class ExecutionRecord:
    """One execution as stored. Proto fields are kept serialized."""

    eid: int
    project: str
    domain: str
    name: str
    workflow_key: str
    launch_plan_key: str
    phase: int
    closure: bytes  # a compiled DynamicJobSpec: the root graph and every template it reaches
    workflow: bytes  # the root WorkflowTemplate (for its interface)
    inputs: bytes  # LiteralMap
    outputs: bytes  # LiteralMap, empty until succeeded
    error: bytes  # ExecutionError, empty unless failed
    created_at: float
    updated_at: float
    request_id: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    last_seq: int = 0
    # Node counts by phase, stored when the execution finishes (None before).
    counts: dict[str, int] | None = None


class NodeRecord(NamedTuple):
    """The latest state of one node of one execution.

    A tuple in the column order of the store's node rows: the scheduler writes thousands of
    these per second, and a tuple goes to the database as it is.
    """

    eid: int
    node_id: str
    phase: int
    attempt: int = 0
    user_failures: int = 0
    system_failures: int = 0
    inputs: bytes = b""
    outputs: bytes = b""
    error: bytes = b""
    cache_status: int = 0
    parent_id: str = ""
    task_key: str = ""
    is_dynamic: bool = False
    detail: str = ""  # kind-specific state, e.g. the branch case taken
    created_at: float = 0.0
    updated_at: float = 0.0


class NodeUpdate(NamedTuple):
    """A transition of a node whose row exists: everything but inputs and identity.

    A tuple in the order of the store's UPDATE parameters (the key comes last).
    """

    phase: int
    attempt: int
    user_failures: int
    system_failures: int
    outputs: bytes
    error: bytes
    cache_status: int
    is_dynamic: bool
    detail: str
    updated_at: float
    eid: int
    node_id: str


@dataclass(slots=True)
class CacheEntry:
    """Outputs stored under a cache key."""

    key: str
    outputs: bytes
    eid: int
    node_id: str
    created_at: float


@dataclass
class WriteBatch:
    """Everything one scheduler pass changes; `Store.apply` commits it atomically."""

    executions: list[ExecutionRecord] = field(default_factory=list)
    nodes: list[NodeRecord] = field(default_factory=list)  # new rows (or whole rows)
    node_updates: list[NodeUpdate] = field(default_factory=list)  # applied after `nodes`
    # (eid, seq, serialized ExecutionEvent)
    events: list[tuple[int, int, bytes]] = field(default_factory=list)
    # (eid, node_id, serialized closure DynamicJobSpec, depth)
    dynamic_specs: list[tuple[int, str, bytes, int]] = field(default_factory=list)
    cache_entries: list[CacheEntry] = field(default_factory=list)
    # cache keys whose serialization reservation is released
    released_reservations: list[str] = field(default_factory=list)

    def size(self) -> int:
        """Rows the batch writes (a measure of its commit time)."""
        return (
            len(self.executions)
            + len(self.nodes)
            + len(self.node_updates)
            + len(self.events)
            + len(self.dynamic_specs)
            + len(self.cache_entries)
            + len(self.released_reservations)
        )

    def __bool__(self) -> bool:
        return bool(
            self.executions
            or self.nodes
            or self.node_updates
            or self.events
            or self.dynamic_specs
            or self.cache_entries
            or self.released_reservations
        )


class Store(abc.ABC):
    """Durable state of the engine. Methods are synchronous and thread-compatible."""

    # -- templates -------------------------------------------------------------------------
    @abc.abstractmethod
    def put_templates(self, items: Sequence[tuple[TemplateKind, str, str, bytes]]) -> list[bool]:
        """Store templates atomically as (kind, key, digest, body).

        Returns, per item, True when it was created and False when identical content existed.
        Raises `AlreadyExists` (and stores nothing) when a key holds different content.
        """

    @abc.abstractmethod
    def get_template(self, kind: TemplateKind, key: str) -> bytes | None:
        """Body of a template, or None."""

    @abc.abstractmethod
    def latest_template_key(self, kind: TemplateKind, prefix: str) -> str | None:
        """Newest key starting with `prefix` ("project/domain/name/"), or None."""

    @abc.abstractmethod
    def list_templates(
        self, kind: TemplateKind, prefix: str, limit: int, offset: int
    ) -> list[bytes]:
        """Bodies of templates whose key starts with `prefix`, newest first."""

    # -- executions ------------------------------------------------------------------------
    @abc.abstractmethod
    def create_execution(self, record: ExecutionRecord, first_event: bytes) -> ExecutionRecord:
        """Insert an execution with its first event; assigns `eid`.

        When `record.request_id` was used before, returns the earlier execution unchanged.
        Raises `AlreadyExists` when the (project, domain, name) is taken.
        """

    @abc.abstractmethod
    def get_execution(self, project: str, domain: str, name: str) -> ExecutionRecord | None:
        """One execution, or None."""

    @abc.abstractmethod
    def get_execution_by_eid(self, eid: int) -> ExecutionRecord | None:
        """One execution by its internal id, or None."""

    @abc.abstractmethod
    def list_executions(
        self, project: str, domain: str, phases: Iterable[int], limit: int, offset: int
    ) -> list[ExecutionRecord]:
        """Executions, newest first."""

    @abc.abstractmethod
    def unfinished_executions(self) -> list[ExecutionRecord]:
        """Executions in a non-terminal phase, oldest first (for recovery)."""

    # -- nodes, specs, events ----------------------------------------------------------------
    @abc.abstractmethod
    def node_records(self, eid: int) -> list[NodeRecord]:
        """Every node record of an execution."""

    @abc.abstractmethod
    def get_node(self, eid: int, node_id: str) -> NodeRecord | None:
        """One node record, or None."""

    @abc.abstractmethod
    def list_nodes(
        self, eid: int, parent_id: str | None, limit: int, offset: int
    ) -> list[NodeRecord]:
        """Node records ordered by id; only children of `parent_id` unless it is None."""

    @abc.abstractmethod
    def dynamic_specs(self, eid: int) -> dict[str, tuple[bytes, int]]:
        """Compiled specs of an execution's dynamic nodes: node id -> (closure, depth)."""

    @abc.abstractmethod
    def events(self, eid: int, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        """Events with sequence > after_seq, in order, as (seq, serialized event)."""

    # -- cache -------------------------------------------------------------------------------
    @abc.abstractmethod
    def cache_get_many(self, keys: Sequence[str]) -> dict[str, CacheEntry]:
        """Cache entries for the keys that have one."""

    @abc.abstractmethod
    def cache_reserve(self, key: str, owner: str, now: float, ttl: float) -> str:
        """Take the serialization reservation of `key` for `owner` unless another live owner
        holds it; returns the holder after the call (== owner when taken)."""

    # -- writes ------------------------------------------------------------------------------
    @abc.abstractmethod
    def apply(self, batch: WriteBatch) -> None:
        """Commit a scheduler pass's changes and events in one transaction."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""
