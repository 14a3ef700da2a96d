"""An in-memory backend of the store contract, for scheduler unit tests.

It passes the same conformance suite as the durable backends; nothing survives the process.
"""

from __future__ import annotations

import copy
import itertools
from collections import Counter
from collections.abc import Collection, Mapping, Sequence

from plaitidl.core.v1 import execution_pb2

from plait_engine import ids
from plait_engine.store.contract import Store, TemplateItem
from plait_engine.store.errors import Conflict, OwnershipLost
from plait_engine.store.event_rows import sequenced
from plait_engine.store.records import (
    ApplyResult,
    CacheEntry,
    DynamicSpecRecord,
    ExecutionFilter,
    ExecutionPayload,
    ExecutionRecord,
    ExecutionWrites,
    LogEntry,
    NodeRecord,
    QueuedDispatch,
    QueuedResult,
    ScheduleStateRecord,
    TemplateKind,
    WriteBatch,
    event_node,
)


class MemoryStore(Store):
    """The store in dictionaries. Records handed out are copies."""

    def __init__(self) -> None:
        self._templates: dict[tuple[int, str], tuple[str, bytes, int]] = {}
        self._tseq = itertools.count(1)
        self._eids = itertools.count(1)
        self._execs: dict[int, ExecutionRecord] = {}
        self._payloads: dict[int, ExecutionPayload] = {}
        self._nodes: dict[int, dict[str, NodeRecord]] = {}
        self._specs: dict[int, dict[str, DynamicSpecRecord]] = {}
        self._events: dict[int, list[bytes]] = {}
        self._cache: dict[str, CacheEntry] = {}
        self._reservations: dict[str, tuple[str, float]] = {}
        self._tokens: dict[int, str] = {}
        self._logs: list[tuple[int, LogEntry]] = []
        self._leases: dict[str, tuple[str, float]] = {}
        self._schedules: dict[str, ScheduleStateRecord] = {}
        # assignment id -> (dispatch, holder, held until, cancelled)
        self._dispatches: dict[str, tuple[QueuedDispatch, str, float, bool]] = {}
        self._results: list[QueuedResult] = []

    # -- templates ---------------------------------------------------------------------
    async def put_templates(self, items: Sequence[TemplateItem]) -> list[bool]:
        created: list[bool] = []
        new: dict[tuple[int, str], tuple[str, bytes]] = {}
        for kind, key, digest, body in items:
            held = self._templates.get((int(kind), key)) or new.get((int(kind), key))
            if held is None:
                new[(int(kind), key)] = (digest, body)
                created.append(True)
            elif held[0] == digest:
                created.append(False)
            else:
                raise Conflict(f"{kind.name.lower()} {key!r} holds different content")
        for k, (digest, body) in new.items():
            self._templates[k] = (digest, body, next(self._tseq))
        return created

    async def get_template(self, kind: TemplateKind, key: str) -> bytes | None:
        held = self._templates.get((int(kind), key))
        return None if held is None else held[1]

    def _matching(self, kind: TemplateKind, prefix: str) -> list[tuple[int, bytes, str]]:
        found = [
            (seq, body, key)
            for (k, key), (_, body, seq) in self._templates.items()
            if k == int(kind) and key.startswith(prefix)
        ]
        return sorted(found, reverse=True)

    async def latest_template_key(self, kind: TemplateKind, prefix: str) -> str | None:
        found = self._matching(kind, prefix)
        return found[0][2] if found else None

    async def list_templates(
        self, kind: TemplateKind, prefix: str, limit: int, offset: int
    ) -> list[bytes]:
        return [body for _, body, _ in self._matching(kind, prefix)[offset : offset + limit]]

    # -- executions --------------------------------------------------------------------
    async def create_execution(
        self, record: ExecutionRecord, payload: ExecutionPayload, first_event: bytes
    ) -> tuple[ExecutionRecord, bool]:
        if record.request_id:
            for e in self._execs.values():
                if e.request_id == record.request_id:
                    return copy.deepcopy(e), False
        if any(e.key == record.key for e in self._execs.values()):
            raise Conflict(f"execution {record.key} already exists")
        stored = copy.deepcopy(record)
        stored.eid = next(self._eids)
        stored.last_seq = 1
        self._execs[stored.eid] = stored
        self._payloads[stored.eid] = copy.deepcopy(payload)
        self._nodes[stored.eid] = {}
        self._specs[stored.eid] = {}
        self._events[stored.eid] = [sequenced(first_event, 1)]
        return copy.deepcopy(stored), True

    async def get_execution(self, project: str, domain: str, name: str) -> ExecutionRecord | None:
        key = f"{project}/{domain}/{name}"
        for e in self._execs.values():
            if e.key == key:
                return copy.deepcopy(e)
        return None

    async def get_execution_by_eid(self, eid: int) -> ExecutionRecord | None:
        e = self._execs.get(eid)
        return None if e is None else copy.deepcopy(e)

    async def get_payload(self, eid: int) -> ExecutionPayload | None:
        p = self._payloads.get(eid)
        return None if p is None else copy.deepcopy(p)

    async def list_executions(
        self, where: ExecutionFilter, limit: int, before_eid: int = 0
    ) -> list[ExecutionRecord]:
        out: list[ExecutionRecord] = []
        for eid in sorted(self._execs, reverse=True):
            e = self._execs[eid]
            if before_eid and eid >= before_eid:
                continue
            if _matches(e, where):
                out.append(copy.deepcopy(e))
                if len(out) == limit:
                    break
        return out

    async def claimable(self, now: float, limit: int) -> list[ExecutionRecord]:
        found = [
            copy.deepcopy(e)
            for eid, e in sorted(self._execs.items())
            if e.phase in ids.UNFINISHED_EXECUTION_PHASES
            and (not e.owner or e.lease_expires_at < now)
        ]
        return found[:limit]

    async def unfinished(self, limit: int, after_eid: int = 0) -> list[ExecutionRecord]:
        found = [
            copy.deepcopy(e)
            for eid, e in sorted(self._execs.items())
            if eid > after_eid and e.phase in ids.UNFINISHED_EXECUTION_PHASES
        ]
        return found[:limit]

    async def claim(
        self, eid: int, owner: str, now: float, until: float, *, expected_epoch: int | None = None
    ) -> ExecutionRecord | None:
        e = self._execs.get(eid)
        if e is None or e.phase not in ids.UNFINISHED_EXECUTION_PHASES:
            return None
        free = not e.owner or e.lease_expires_at < now or e.owner == owner
        if not free and (expected_epoch is None or e.epoch != expected_epoch):
            return None
        e.owner, e.epoch, e.lease_expires_at = owner, e.epoch + 1, until
        return copy.deepcopy(e)

    async def renew(self, owner: str, epochs: Mapping[int, int], until: float) -> set[int]:
        lost: set[int] = set()
        for eid, epoch in epochs.items():
            e = self._execs.get(eid)
            if (
                e is None
                or e.owner != owner
                or e.epoch != epoch
                or e.phase not in ids.UNFINISHED_EXECUTION_PHASES
            ):
                lost.add(eid)
            else:
                e.lease_expires_at = until
        return lost

    async def release(self, owner: str, epochs: Mapping[int, int]) -> None:
        for eid, epoch in epochs.items():
            e = self._execs.get(eid)
            if e is not None and e.owner == owner and e.epoch == epoch:
                e.lease_expires_at = 0.0

    async def request_termination(self, eid: int, reason: str) -> ExecutionRecord | None:
        e = self._execs.get(eid)
        if e is None:
            return None
        if e.phase in ids.UNFINISHED_EXECUTION_PHASES and not e.terminate_reason:
            e.terminate_reason = reason or "terminated by request"
        return copy.deepcopy(e)

    async def termination_requests(self, eids: Collection[int]) -> dict[int, str]:
        return {
            eid: self._execs[eid].terminate_reason
            for eid in eids
            if eid in self._execs and self._execs[eid].terminate_reason
        }

    async def delete_execution(self, eid: int) -> bool:
        e = self._execs.get(eid)
        if e is None:
            return False
        if e.phase not in ids.TERMINAL_EXECUTION_PHASES:
            raise Conflict(f"execution {eid} has not finished")
        for table in (self._execs, self._payloads, self._nodes, self._specs, self._events):
            table.pop(eid, None)
        self._logs = [(pos, e) for pos, e in self._logs if e.eid != eid]
        return True

    # -- nodes, specs, events ------------------------------------------------------------
    async def node_records(self, eid: int) -> list[NodeRecord]:
        return [copy.copy(n) for n in self._nodes.get(eid, {}).values()]

    async def get_node(self, eid: int, node_id: str) -> NodeRecord | None:
        n = self._nodes.get(eid, {}).get(node_id)
        return None if n is None else copy.copy(n)

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
        nodes = self._nodes.get(eid, {})
        chosen = sorted(
            k
            for k, n in nodes.items()
            if k > after_node_id
            and (parent_id is None or n.parent_id == parent_id)
            and (not phases or n.phase in phases)
            and (name is None or n.name == name)
        )
        return [copy.copy(nodes[k]) for k in chosen[:limit]]

    async def count_nodes(self, eid: int, under: str = "") -> dict[int, int]:
        found = Counter(
            n.phase
            for k, n in self._nodes.get(eid, {}).items()
            if not under or k.startswith(under + "/")
        )
        return dict(found)

    async def count_children(self, eid: int, parent_id: str) -> list[tuple[str, int, int]]:
        found = Counter(
            (n.name, n.phase) for n in self._nodes.get(eid, {}).values() if n.parent_id == parent_id
        )
        return [(name, phase, count) for (name, phase), count in found.items()]

    async def dynamic_specs(self, eid: int) -> list[DynamicSpecRecord]:
        return [copy.copy(s) for s in self._specs.get(eid, {}).values()]

    async def get_dynamic_spec(self, eid: int, node_id: str) -> DynamicSpecRecord | None:
        s = self._specs.get(eid, {}).get(node_id)
        return None if s is None else copy.copy(s)

    async def events(self, eid: int, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        bodies = self._events.get(eid, [])
        return [(i + 1, bodies[i]) for i in range(after_seq, min(len(bodies), after_seq + limit))]

    async def node_events(
        self, eid: int, node_id: str, after_seq: int, limit: int
    ) -> list[tuple[int, bytes]]:
        bodies = self._events.get(eid, [])
        found = [
            (i + 1, bodies[i])
            for i in range(after_seq, len(bodies))
            if event_node(bodies[i]) == node_id
        ]
        return found[:limit]

    # -- named leases ------------------------------------------------------------------
    async def acquire_lease(self, name: str, owner: str, now: float, until: float) -> bool:
        held = self._leases.get(name)
        if held is not None and held[0] != owner and held[1] >= now:
            return False
        self._leases[name] = (owner, until)
        return True

    async def compact(self) -> None:
        """Nothing to give back."""

    async def delete_cache_before(self, before: float, limit: int) -> list[str]:
        old = sorted((e.created_at, k) for k, e in self._cache.items() if e.created_at < before)
        keys = [k for _, k in old[:limit]]
        for k in keys:
            del self._cache[k]
        return keys

    # -- the shared dispatch queue -----------------------------------------------------
    async def enqueue_dispatches(self, items: Sequence[QueuedDispatch]) -> None:
        for d in items:
            self._dispatches[d.assignment_id] = (copy.copy(d), "", 0.0, False)

    async def take_dispatches(
        self, replica: str, wanted: Mapping[str, int], now: float, until: float
    ) -> list[QueuedDispatch]:
        out: list[QueuedDispatch] = []
        ready = sorted(
            (d.created_at, aid)
            for aid, (d, holder, held, cancelled) in self._dispatches.items()
            if not cancelled and (not holder or held < now)
        )
        left = dict(wanted)
        for _, aid in ready:
            d = self._dispatches[aid][0]
            if left.get(d.queue, 0) > 0:
                left[d.queue] -= 1
                self._dispatches[aid] = (d, replica, until, False)
                out.append(copy.copy(d))
        return out

    async def renew_dispatches(
        self, replica: str, assignment_ids: Sequence[str], until: float
    ) -> None:
        for aid in assignment_ids:
            held = self._dispatches.get(aid)
            if held is not None and held[1] == replica:
                self._dispatches[aid] = (held[0], replica, until, held[3])

    async def finish_dispatches(self, assignment_ids: Sequence[str]) -> None:
        for aid in assignment_ids:
            self._dispatches.pop(aid, None)

    async def cancel_dispatches(self, assignment_ids: Sequence[str]) -> None:
        for aid in assignment_ids:
            held = self._dispatches.get(aid)
            if held is None:
                continue
            if not held[1]:
                del self._dispatches[aid]
            else:
                self._dispatches[aid] = (held[0], held[1], held[2], True)

    async def cancelled_dispatches(self, replica: str) -> list[str]:
        return [
            aid
            for aid, (_, holder, _, cancelled) in self._dispatches.items()
            if holder == replica and cancelled
        ]

    async def post_results(self, items: Sequence[QueuedResult]) -> None:
        self._results.extend(copy.copy(r) for r in items)

    async def take_results(self, eids: Collection[int], limit: int) -> list[QueuedResult]:
        wanted = set(eids)
        out = [r for r in self._results if r.eid in wanted][:limit]
        taken = {id(r) for r in out}
        self._results = [r for r in self._results if id(r) not in taken]
        return out

    # -- schedules ---------------------------------------------------------------------
    async def schedule_states(self) -> dict[str, ScheduleStateRecord]:
        return {k: copy.copy(v) for k, v in self._schedules.items()}

    async def put_schedule_state(self, state: ScheduleStateRecord) -> None:
        self._schedules[state.key] = copy.copy(state)

    # -- logs --------------------------------------------------------------------------
    async def append_logs(self, entries: Sequence[LogEntry]) -> None:
        for e in entries:
            self._logs.append((len(self._logs) + 1, copy.copy(e)))

    async def logs(
        self, eid: int, node_id: str, attempt: int, after: int, limit: int
    ) -> list[tuple[int, LogEntry]]:
        found = [
            (pos, copy.copy(e))
            for pos, e in self._logs
            if pos > after
            and e.eid == eid
            and (not node_id or e.node_id == node_id)
            and (not node_id or not attempt or e.attempt == attempt)
        ]
        return found[:limit]

    # -- cache -------------------------------------------------------------------------
    async def cache_get_many(self, keys: Sequence[str]) -> dict[str, CacheEntry]:
        return {k: copy.copy(self._cache[k]) for k in keys if k in self._cache}

    # -- writes ------------------------------------------------------------------------
    async def apply(self, batch: WriteBatch, now: float) -> ApplyResult:
        lost = [
            eid
            for eid, w in batch.executions.items()
            if eid not in self._execs or self._execs[eid].epoch != w.epoch
        ]
        if lost:
            raise OwnershipLost(lost)
        result = ApplyResult()
        for eid, w in batch.executions.items():
            if w.token and self._tokens.get(eid) == w.token:
                result.last_seq[eid] = self._execs[eid].last_seq  # applied before
                continue
            self._tokens[eid] = w.token
            self._apply_one(eid, w, result)
        for entry in batch.cache_entries:
            self._cache.setdefault(entry.key, copy.copy(entry))
        for key in batch.released:
            self._reservations.pop(key, None)
        for r in batch.reservations:
            held = self._reservations.get(r.key)
            if held is None or held[0] == r.holder or held[1] < now:
                self._reservations[r.key] = (r.holder, r.expires_at)
                result.holders[r.key] = r.holder
            else:
                result.holders[r.key] = held[0]
        return result

    def _apply_one(self, eid: int, w: ExecutionWrites, result: ApplyResult) -> None:
        e = self._execs[eid]
        nodes = self._nodes[eid]
        for n in w.nodes:
            nodes[n.node_id] = copy.copy(n)
        for u in w.node_updates:
            held = nodes.get(u.node_id)
            if held is None:
                continue  # like an UPDATE of no row
            n = held
            n.phase, n.attempt = u.phase, u.attempt
            n.user_failures, n.system_failures = u.user_failures, u.system_failures
            n.outputs, n.error, n.cache_status = u.outputs, u.error, u.cache_status
            n.is_dynamic, n.detail, n.updated_at = u.is_dynamic, u.detail, u.updated_at
        for s in w.dynamic_specs:
            self._specs[eid].setdefault(s.node_id, copy.copy(s))
        log = self._events[eid]
        for body in w.events:
            log.append(sequenced(w.event_shared + body, len(log) + 1))
        e.last_seq = len(log)
        result.last_seq[eid] = e.last_seq
        e.updated_at = max(e.updated_at, w.updated_at)
        if w.phase is not None:
            e.phase = w.phase
            if w.phase in ids.TERMINAL_EXECUTION_PHASES:
                e.owner, e.lease_expires_at = "", 0.0
                for n in nodes.values():
                    if n.phase in ids.UNFINISHED_NODE_PHASES:
                        n.phase = execution_pb2.NODE_PHASE_ABORTED
        if w.outputs is not None:
            self._payloads[eid].outputs = w.outputs
        if w.error is not None:
            e.error = w.error
        if w.counts is not None:
            e.counts = dict(w.counts)

    async def close(self) -> None:
        """Nothing to release."""


def _matches(e: ExecutionRecord, where: ExecutionFilter) -> bool:
    checks = (
        not where.project or e.project == where.project,
        not where.domain or e.domain == where.domain,
        not where.phases or e.phase in where.phases,
        not where.workflow or e.workflow_key.startswith(where.workflow),
        all(e.labels.get(k) == v for k, v in where.labels),
        not where.request_id or e.request_id == where.request_id,
        not where.finished_before
        or (e.phase in ids.TERMINAL_EXECUTION_PHASES and e.updated_at < where.finished_before),
    )
    return all(checks)
