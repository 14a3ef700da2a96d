"""The store contract: the engine's durable state behind one async interface.

Every method is a coroutine, so the event loop that also serves workers and clients never waits
on I/O: a backend runs its blocking calls on threads of its own (SQLite) or speaks an async
driver (PostgreSQL). Every backend passes the one conformance suite
(``tests/integration/test_store_conformance.py``), which asserts behaviour and typed errors
(`Conflict`, `NotFound`, `OwnershipLost`) only.

Ownership: an execution is driven by one replica at a time. `claim` gives a replica the
execution with a lease and a new fencing epoch; `renew` extends the leases it still holds;
every `apply` is conditioned on the epochs it carries, so a replica that lost an execution (its
lease expired and another claimed it) can no longer write to it.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Mapping, Sequence

from plait_engine.store.records import (
    ApplyResult,
    CacheEntry,
    DynamicSpecRecord,
    ExecutionFilter,
    ExecutionPayload,
    ExecutionRecord,
    LogEntry,
    NodeRecord,
    QueuedDispatch,
    QueuedResult,
    ScheduleStateRecord,
    TemplateKind,
    WriteBatch,
)

TemplateItem = tuple[TemplateKind, str, str, bytes]  # (kind, key, digest, body)


class Store(abc.ABC):
    """Durable state of the engine."""

    async def open(self) -> None:  # noqa: B027 - optional: most backends open on construction
        """Connect and bring the schema up to date before first use (a backend that does it on
        construction needs nothing here).

        Raises:
            StoreError: The store cannot be reached or is of a newer schema.
        """

    # -- templates ---------------------------------------------------------------------
    @abc.abstractmethod
    async def put_templates(self, items: Sequence[TemplateItem]) -> list[bool]:
        """Store templates atomically as (kind, key, digest, body).

        Returns, per item, True when it was created and False when identical content existed.

        Raises:
            Conflict: A key holds different content (and nothing of the call is stored).
        """

    @abc.abstractmethod
    async def get_template(self, kind: TemplateKind, key: str) -> bytes | None:
        """Body of a template, or None."""

    @abc.abstractmethod
    async def latest_template_key(self, kind: TemplateKind, prefix: str) -> str | None:
        """The most recently registered key starting with `prefix` (``project/domain/name/``),
        or None: what an identifier without a version means."""

    @abc.abstractmethod
    async def list_templates(
        self, kind: TemplateKind, prefix: str, limit: int, offset: int
    ) -> list[bytes]:
        """Bodies of templates whose key starts with `prefix`, most recent first."""

    # -- executions --------------------------------------------------------------------
    @abc.abstractmethod
    async def create_execution(
        self, record: ExecutionRecord, payload: ExecutionPayload, first_event: bytes
    ) -> tuple[ExecutionRecord, bool]:
        """Insert an execution with its payload and first event (sequence 1); assigns `eid`.

        The record's `owner`, `epoch` and `lease_expires_at` are stored as given (the creating
        replica may own it from the start).

        Returns:
            The stored record and True, or, when `record.request_id` was used before, the
            earlier execution and False.

        Raises:
            Conflict: The (project, domain, name) is taken.
        """

    @abc.abstractmethod
    async def get_execution(self, project: str, domain: str, name: str) -> ExecutionRecord | None:
        """One execution, or None."""

    @abc.abstractmethod
    async def get_execution_by_eid(self, eid: int) -> ExecutionRecord | None:
        """One execution by its store id, or None."""

    @abc.abstractmethod
    async def get_payload(self, eid: int) -> ExecutionPayload | None:
        """The payload of an execution, or None."""

    @abc.abstractmethod
    async def list_executions(
        self, where: ExecutionFilter, limit: int, before_eid: int = 0
    ) -> list[ExecutionRecord]:
        """Executions matching `where`, newest first, with eid < `before_eid` when it is set
        (keyset paging)."""

    @abc.abstractmethod
    async def claimable(self, now: float, limit: int) -> list[ExecutionRecord]:
        """Unfinished executions nobody holds a live lease on (none, or expired at `now`),
        oldest first."""

    @abc.abstractmethod
    async def unfinished(self, limit: int, after_eid: int = 0) -> list[ExecutionRecord]:
        """Unfinished executions with eid > `after_eid`, oldest first, whoever owns them."""

    @abc.abstractmethod
    async def claim(
        self, eid: int, owner: str, now: float, until: float, *, expected_epoch: int | None = None
    ) -> ExecutionRecord | None:
        """Take ownership of an unfinished execution with a lease until `until` and a new
        epoch.

        Succeeds when nobody holds a live lease (none, expired at `now`, or held by `owner`),
        or, with `expected_epoch`, when the epoch is still that one (a takeover decided by the
        caller, e.g. the previous owner's process is known dead).

        Returns:
            The record with its new epoch, or None when it was not taken (finished, unknown,
            or held by another live owner).
        """

    @abc.abstractmethod
    async def renew(self, owner: str, epochs: Mapping[int, int], until: float) -> set[int]:
        """Extend the leases `owner` holds at these epochs to `until`.

        Returns:
            The executions whose lease was not renewed (ownership lost, finished or deleted).
        """

    @abc.abstractmethod
    async def release(self, owner: str, epochs: Mapping[int, int]) -> None:
        """Give up leases (a graceful stop): other replicas may claim them at once."""

    @abc.abstractmethod
    async def request_termination(self, eid: int, reason: str) -> ExecutionRecord | None:
        """Record that the execution should be aborted; the owner applies it.

        Returns:
            The record after the call, or None when the execution does not exist. A finished
            execution is returned unchanged.
        """

    @abc.abstractmethod
    async def termination_requests(self, eids: Collection[int]) -> dict[int, str]:
        """The termination reasons recorded for these executions (those that have one)."""

    @abc.abstractmethod
    async def delete_execution(self, eid: int) -> bool:
        """Delete a finished execution with its nodes, events, specs, logs and payload.

        Returns:
            True when it was deleted, False when it does not exist.

        Raises:
            Conflict: The execution has not finished.
        """

    # -- nodes, specs, events ------------------------------------------------------------
    @abc.abstractmethod
    async def node_records(self, eid: int) -> list[NodeRecord]:
        """Every node record of an execution."""

    @abc.abstractmethod
    async def get_node(self, eid: int, node_id: str) -> NodeRecord | None:
        """One node record, or None."""

    @abc.abstractmethod
    async def list_nodes(
        self,
        eid: int,
        parent_id: str | None,
        limit: int,
        after_node_id: str = "",
        *,
        phases: Sequence[int] = (),
        name: str | None = None,
    ) -> list[NodeRecord]:
        """Node records ordered by id, with id > `after_node_id`; only children of
        `parent_id` ("" for the top level) unless it is None, only in `phases` unless it is
        empty, only named `name` unless it is None."""

    @abc.abstractmethod
    async def count_nodes(self, eid: int, under: str = "") -> dict[int, int]:
        """Nodes per phase (phases with none left out): every node of the execution when
        `under` is "", else the nodes inside the node `under` at every depth (their ids start
        with ``under + "/"``)."""

    @abc.abstractmethod
    async def count_children(self, eid: int, parent_id: str) -> list[tuple[str, int, int]]:
        """The direct children of `parent_id` ("" for the top level) counted by name and
        phase, as (name, phase, count) rows."""

    @abc.abstractmethod
    async def dynamic_specs(self, eid: int) -> list[DynamicSpecRecord]:
        """The specs an execution's generator nodes yielded."""

    @abc.abstractmethod
    async def get_dynamic_spec(self, eid: int, node_id: str) -> DynamicSpecRecord | None:
        """The spec one node yielded, or None."""

    @abc.abstractmethod
    async def events(self, eid: int, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        """Events with sequence > `after_seq`, in order, as (sequence, serialized event with
        its sequence set)."""

    @abc.abstractmethod
    async def node_events(
        self, eid: int, node_id: str, after_seq: int, limit: int
    ) -> list[tuple[int, bytes]]:
        """`events`, only the transitions of the node `node_id`."""

    # -- named leases: one replica acts --------------------------------------------------
    @abc.abstractmethod
    async def acquire_lease(self, name: str, owner: str, now: float, until: float) -> bool:
        """Take or renew the lease `name` for `owner` until `until`; True when `owner` holds it
        after the call (it was free, expired at `now`, or already `owner`'s). Background duties
        (retention, schedules) run on the replica that holds their lease."""

    @abc.abstractmethod
    async def compact(self) -> None:
        """Give the space of deleted rows back (after retention), where the backend needs it."""

    @abc.abstractmethod
    async def delete_cache_before(self, before: float, limit: int) -> list[str]:
        """Delete up to `limit` cache entries created before `before`; returns their keys."""

    # -- the shared dispatch queue (many replicas) ---------------------------------------
    @abc.abstractmethod
    async def enqueue_dispatches(self, items: Sequence[QueuedDispatch]) -> None:
        """Queue attempts for whichever replica has a free worker slot for their queue."""

    @abc.abstractmethod
    async def take_dispatches(
        self, replica: str, wanted: Mapping[str, int], now: float, until: float
    ) -> list[QueuedDispatch]:
        """Take, oldest first, up to `wanted[queue]` queued attempts of each queue: those
        nobody holds, or whose holder's hold expired at `now`; hold them until `until`.
        Concurrent takers never get the same attempt."""

    @abc.abstractmethod
    async def renew_dispatches(
        self, replica: str, assignment_ids: Sequence[str], until: float
    ) -> None:
        """Keep holding attempts a replica's workers still run."""

    @abc.abstractmethod
    async def finish_dispatches(self, assignment_ids: Sequence[str]) -> None:
        """Forget attempts that were answered (or whose cancellation was carried out)."""

    @abc.abstractmethod
    async def cancel_dispatches(self, assignment_ids: Sequence[str]) -> None:
        """Withdraw attempts: removed when nobody holds them, marked cancelled otherwise."""

    @abc.abstractmethod
    async def cancelled_dispatches(self, replica: str) -> list[str]:
        """Attempts `replica` holds that were cancelled (it stops them and finishes them)."""

    @abc.abstractmethod
    async def post_results(self, items: Sequence[QueuedResult]) -> None:
        """Hand workers' answers to the executions' owners."""

    @abc.abstractmethod
    async def take_results(self, eids: Collection[int], limit: int) -> list[QueuedResult]:
        """Remove and return up to `limit` posted answers for these executions, oldest
        first."""

    # -- schedules ---------------------------------------------------------------------
    @abc.abstractmethod
    async def schedule_states(self) -> dict[str, ScheduleStateRecord]:
        """Every stored schedule state, by launch plan key."""

    @abc.abstractmethod
    async def put_schedule_state(self, state: ScheduleStateRecord) -> None:
        """Store a schedule's state (replacing the one under its key)."""

    # -- logs --------------------------------------------------------------------------
    @abc.abstractmethod
    async def append_logs(self, entries: Sequence[LogEntry]) -> None:
        """Store captured output. Not fenced: any replica a worker talks to may write it."""

    @abc.abstractmethod
    async def logs(
        self, eid: int, node_id: str, attempt: int, after: int, limit: int
    ) -> list[tuple[int, LogEntry]]:
        """Stored output of an execution in write order, as (position, entry), with position >
        `after`; only `node_id`'s when it is not "", only `attempt`'s when it is not 0."""

    # -- cache -------------------------------------------------------------------------
    @abc.abstractmethod
    async def cache_get_many(self, keys: Sequence[str]) -> dict[str, CacheEntry]:
        """Cache entries for the keys that have one."""

    # -- writes ------------------------------------------------------------------------
    @abc.abstractmethod
    async def apply(self, batch: WriteBatch, now: float) -> ApplyResult:
        """Commit a scheduler pass in one transaction.

        Per execution: new node records, node updates, events (numbered after the
        execution's last sequence), specs and the execution's changes, all conditioned on its
        epoch. Engine-wide: cache entries (first writer wins), reservations (taken when free,
        expired at `now`, or already held by the requester), releases.

        Raises:
            OwnershipLost: An execution's epoch is stale or it is gone; nothing was written.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and threads."""
