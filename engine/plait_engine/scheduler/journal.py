"""The journal: every transition becomes records and events in the pass's write batch.

Nothing else writes to the batch of executions: a transition of a node or an execution goes
through here, which keeps its record, its event and the node counts consistent.
"""

from __future__ import annotations

import hashlib
import time

from plaitidl.core.v1 import errors_pb2, events_pb2, execution_pb2, literals_pb2

from plait_engine import ids
from plait_engine.blob import Payloads, PendingBlob
from plait_engine.blob.payloads import deflate
from plait_engine.scheduler import events
from plait_engine.scheduler.state import NodeExec, Run, display_name
from plait_engine.store import (
    CacheEntry,
    DynamicSpecRecord,
    ExecutionWrites,
    NodeRecord,
    NodeUpdate,
    Reservation,
    WriteBatch,
)

_EP = execution_pb2
# Counted as running (`NodeCounts.running`), and of those, as waiting (`NodeCounts.queued`):
# for a worker that serves them, a retry's backoff or another node's cache computation.
_RUNNING = ids.ACTIVE_NODE_PHASES | {_EP.NODE_PHASE_QUEUED}
_WAITING = frozenset({_EP.NODE_PHASE_QUEUED, _EP.NODE_PHASE_RETRYING})


def count(run: Run, old: int, new: int, cache_status: int) -> None:
    """Move a node between the run's counts."""
    c = run.counts
    if old in _RUNNING:
        c["running"] -= 1
    if new in _RUNNING:
        c["running"] += 1
    if old in _WAITING:
        c["queued"] -= 1
    if new in _WAITING:
        c["queued"] += 1
    if old == new:
        return
    if new == _EP.NODE_PHASE_SUCCEEDED:
        c["succeeded"] += 1
        if cache_status == _EP.CACHE_STATUS_HIT:
            c["cached"] += 1
    elif new == _EP.NODE_PHASE_FAILED:
        c["failed"] += 1
    elif new == _EP.NODE_PHASE_SKIPPED:
        c["skipped"] += 1


def safe_parts(path: str) -> list[str]:
    """A node path as blob key parts (node ids are path-safe; array instances are numbers)."""
    return [p.replace(":", "_") or "_" for p in path.split("/")]


class Journal:
    """Collects one pass's writes.

    Args:
        payloads: Packs large payloads into blobs (written just before the commit).
        owner: This replica's id (part of every commit's token).
    """

    def __init__(self, payloads: Payloads, owner: str) -> None:
        self.payloads = payloads
        self._owner = owner
        self._passes = 0
        self.batch = WriteBatch()
        self.blobs: list[PendingBlob] = []
        self.now = time.time()
        self._now_ns = int(self.now * 1e9)
        self._parts = events.EventParts()

    # -- the batch ---------------------------------------------------------------------
    def begin(self) -> None:
        """Start a pass: its transitions share this moment."""
        self.now = time.time()
        self._now_ns = int(self.now * 1e9)

    def writes(self, run: Run) -> ExecutionWrites:
        """The current pass's writes of a run (marks it dirty)."""
        run.dirty = True
        w = self.batch.executions.get(run.eid)
        if w is None:
            w = self.batch.of(run.eid, run.record.epoch, f"{self._owner}#{self._passes}")
            # Events of one pass commit together: they share the pass's moment.
            r = run.record
            w.event_shared = events.shared(r.project, r.domain, r.name, self._now_ns)
        return w

    def take(self, runs: list[Run]) -> tuple[WriteBatch, list[PendingBlob]]:
        """The pass's batch and pending blobs; the journal starts a new pass."""
        for run in runs:
            if run.dirty:
                w = self.writes(run)
                w.counts = dict(run.counts)
                w.updated_at = self.now
        batch, blobs = self.batch, self.blobs
        self.batch = WriteBatch()
        self.blobs = []
        self._passes += 1
        return batch, blobs

    def discard(self, run: Run) -> None:
        """Forget what the pass wrote of a run (its handling failed midway)."""
        self.batch.executions.pop(run.eid, None)

    def pack(self, data: bytes, *key: str) -> bytes:
        """`data` or a pointer to a blob written before the commit."""
        stored, pending = self.payloads.pack(data, *key)
        if pending is not None:
            self.blobs.append(pending)
        return stored

    def _pack_map(self, m: literals_pb2.LiteralMap | None, run: Run, path: str, what: str) -> bytes:
        if m is None:
            return b""
        return self.pack(m.SerializeToString(), *run.blob_key, *safe_parts(path), what)

    def _event(self, run: Run, ev: events_pb2.ExecutionEvent) -> None:
        # Its execution and moment are the pass's shared fields (`ExecutionWrites`).
        self.writes(run).events.append(ev.SerializeToString())

    # -- nodes -------------------------------------------------------------------------
    def node(
        self,
        n: NodeExec,
        phase: int,
        *,
        error: errors_pb2.ExecutionError | None = None,
        dynamic: events_pb2.DynamicInfo | None = None,
        emit: bool = True,
        retry_at: float = 0.0,
        reason: str = "",
        record: bool = True,
    ) -> None:
        """A node's transition: its record (inserted once, then updated) and its event.

        With `record` False (an attempt started in the engine's own process), a node without
        a record yet gets none now: the event and the counts say it runs, and its record is
        written with its next transition, or by `record` if it is still running a while later
        (most such attempts end first: one row per node instead of two)."""
        run = n.frame.run
        old = n.phase
        if old == phase and not emit:
            return
        count(run, old, phase, n.cache_status)
        n.phase = phase
        if not n.created_at:
            n.created_at = self.now
        w = self.writes(run)
        name = display_name(n.node) if old == 0 or not n.persisted else None
        if record or n.persisted:
            self._write_record(n, w, error, name)
        if emit:
            # Once per attempt is enough to tell which task a node runs.
            named = n.task is not None and (phase == _EP.NODE_PHASE_RUNNING or old == 0)
            w.events.append(
                events.node_event(
                    n, phase, name if old == 0 else None,
                    self._parts.task_id(n.task) if named and n.task is not None else b"",
                    error, dynamic, int(retry_at * 1e9) if retry_at else 0, reason,
                )
            )  # fmt: skip

    def record(self, n: NodeExec) -> None:
        """Write the record of a node whose transition was journaled without one."""
        if not n.persisted:
            self._write_record(n, self.writes(n.frame.run), None, display_name(n.node))

    def _write_record(
        self,
        n: NodeExec,
        w: ExecutionWrites,
        error: errors_pb2.ExecutionError | None,
        name: str | None,
    ) -> None:
        run = n.frame.run
        err = error.SerializeToString() if error is not None else b""
        outputs = b""
        if n.outputs is not None or n.out_bytes is not None:
            raw = n.out_bytes
            if raw is None and n.outputs is not None:
                raw = n.outputs.SerializeToString()
                if n.phase == _EP.NODE_PHASE_SUCCEEDED:
                    n.out_bytes = raw  # final: `NodeExec.compact` keeps it
            assert raw is not None
            outputs = self.pack(raw, *run.blob_key, *safe_parts(n.path), "outputs")
        if n.persisted:
            # The record exists: write only what a transition changes (inputs never do).
            w.node_updates.append(
                NodeUpdate(
                    n.path, n.phase, n.attempt, n.user_failures, n.system_failures, outputs,
                    err, n.cache_status, n.is_dynamic, n.detail, self.now,
                )
            )  # fmt: skip
            return
        n.persisted = True
        w.nodes.append(
            NodeRecord(
                run.eid, n.path, n.phase, n.attempt, n.user_failures, n.system_failures,
                self._pack_map(n.inputs, run, n.path, "inputs"), outputs, err,
                n.cache_status, n.frame.prefix, n.task_key, n.is_dynamic, n.detail,
                n.created_at, self.now, name or "",
            )
        )  # fmt: skip

    def skipped(self, parent: NodeExec, local_id: str, name: str = "") -> None:
        """A branch case that was not taken: recorded SKIPPED, never run."""
        run = parent.frame.run
        path = f"{parent.path}/{local_id}"
        run.counts["total"] += 1
        run.counts["skipped"] += 1
        self.writes(run).nodes.append(
            NodeRecord(
                run.eid,
                path,
                _EP.NODE_PHASE_SKIPPED,
                parent_id=parent.path,
                created_at=self.now,
                updated_at=self.now,
                name=name,
            )
        )
        t = events_pb2.NodeTransition(
            node_id=path, phase=_EP.NODE_PHASE_SKIPPED, parent_node_id=parent.path, name=name
        )
        self._event(run, events_pb2.ExecutionEvent(node=t))

    def spec(self, n: NodeExec, closure: bytes, depth: int) -> None:
        """The compiled spec a generator yielded."""
        run = n.frame.run
        stored = self.pack(deflate(closure), *run.blob_key, *safe_parts(n.path), "spec")
        self.writes(run).dynamic_specs.append(DynamicSpecRecord(n.path, stored, depth))

    # -- executions --------------------------------------------------------------------
    def execution(
        self,
        run: Run,
        phase: int,
        *,
        error: errors_pb2.ExecutionError | None = None,
        outputs: literals_pb2.LiteralMap | None = None,
    ) -> None:
        """An execution's transition with its event."""
        run.phase = phase
        w = self.writes(run)
        w.phase = phase
        if error is not None:
            w.error = error.SerializeToString()
        if outputs is not None:
            w.outputs = self.pack(outputs.SerializeToString(), *run.blob_key, "outputs")
        transition = events_pb2.ExecutionTransition(phase=phase)  # type: ignore[arg-type]
        if error is not None:
            transition.error.CopyFrom(error)
        self._event(run, events_pb2.ExecutionEvent(execution=transition))

    # -- cache -------------------------------------------------------------------------
    def cache_entry(self, n: NodeExec, key: str, outputs: literals_pb2.LiteralMap) -> bytes:
        """Store outputs under a cache key; returns what was stored (a pointer when large)."""
        stored = self.pack(outputs.SerializeToString(), "cache", _key_hash(key))
        self.batch.cache_entries.append(CacheEntry(key, stored, n.frame.run.eid, n.path, self.now))
        return stored

    def reserve(self, key: str, holder: str, ttl: float) -> None:
        """Ask for a cache key's serialization reservation (granted or not at commit)."""
        self.batch.reservations.append(Reservation(key, holder, self.now + ttl))

    def release(self, key: str) -> None:
        """Give a cache key's serialization reservation back."""
        self.batch.released.append(key)


def _key_hash(key: str) -> str:
    # The same parts as `service.retention.cache_blob_key`: the entry's blobs go with it.
    return hashlib.sha256(key.encode()).hexdigest()[:32]
