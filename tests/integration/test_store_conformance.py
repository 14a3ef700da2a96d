"""The store conformance suite: every `Store` backend must pass it.

Parametrized by a backend factory; it asserts behaviour and typed errors (`Conflict`,
`OwnershipLost`), never a backend's message text. Ownership is part of the contract: claims,
leases, fencing epochs, a stale owner's writes refused, adoption after expiry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from plait_engine.store import (
    CacheEntry,
    Conflict,
    DynamicSpecRecord,
    ExecutionFilter,
    ExecutionPayload,
    ExecutionRecord,
    LogEntry,
    NodeRecord,
    NodeUpdate,
    OwnershipLost,
    QueuedDispatch,
    QueuedResult,
    Reservation,
    Store,
    TemplateKind,
    WriteBatch,
)
from plait_engine.store import postgres as postgres_module
from plait_engine.store import sqlite as sqlite_module
from plait_engine.store.memory import MemoryStore
from plait_engine.store.postgres import PostgresStore
from plait_engine.store.sqlite import SqliteStore
from plaitidl.core.v1 import events_pb2, execution_pb2

EP = execution_pb2
Factory = Callable[[Path], Awaitable[Store]]


async def _sqlite(tmp: Path) -> Store:
    return SqliteStore(tmp / "plait.db")


async def _memory(tmp: Path) -> Store:
    return MemoryStore()


BACKENDS: dict[str, Factory] = {"sqlite": _sqlite, "memory": _memory}


@pytest.fixture(params=["memory", "postgres", "sqlite"])
def factory(request: pytest.FixtureRequest) -> Factory:
    """A fresh store of each backend; PostgreSQL's in a new database of the session's
    private server (the test fails when that server cannot be started)."""
    if request.param != "postgres":
        return BACKENDS[request.param]
    url: str = request.getfixturevalue("postgres_url")

    async def _postgres(tmp: Path) -> Store:
        store = PostgresStore(url)
        await store.open()
        return store

    return _postgres


def run(factory: Factory, tmp_path: Path, test: Callable[[Store], Awaitable[None]]) -> None:
    """Run `test` against a fresh store of the backend; close it after."""

    async def main() -> None:
        store = await factory(tmp_path)
        try:
            await test(store)
        finally:
            await store.close()

    asyncio.run(main())


def _event(phase: int = EP.EXECUTION_PHASE_RUNNING) -> bytes:
    ev = events_pb2.ExecutionEvent(execution=events_pb2.ExecutionTransition(phase=phase))  # type: ignore[arg-type]
    return ev.SerializeToString()


def _seq(body: bytes) -> int:
    return events_pb2.ExecutionEvent.FromString(body).sequence


def _record(name: str, request_id: str = "", owner: str = "r1", **kw: Any) -> ExecutionRecord:
    return ExecutionRecord(
        eid=0,
        project=kw.pop("project", "p"),
        domain="d",
        name=name,
        workflow_key=kw.pop("workflow_key", "p/d/wf/v1"),
        phase=kw.pop("phase", EP.EXECUTION_PHASE_QUEUED),
        created_at=1.0,
        updated_at=kw.pop("updated_at", 1.0),
        request_id=request_id,
        labels=kw.pop("labels", {"team": "a"}),
        owner=owner,
        epoch=1 if owner else 0,
        lease_expires_at=kw.pop("lease", 100.0) if owner else 0.0,
    )


_PAYLOAD = ExecutionPayload(closure=b"closure", workflow=b"wf", inputs=b"inputs")


async def _create(store: Store, name: str, **kw: Any) -> ExecutionRecord:
    rec, created = await store.create_execution(_record(name, **kw), _PAYLOAD, _event())
    assert created
    return rec


# -- templates ---------------------------------------------------------------------------------
def test_templates_are_immutable_and_identical_reregister_is_a_noop(
    factory: Factory, tmp_path: Path
) -> None:
    async def t(store: Store) -> None:
        assert await store.put_templates([(TemplateKind.TASK, "p/d/t/v1", "h1", b"b1")]) == [True]
        assert await store.put_templates([(TemplateKind.TASK, "p/d/t/v1", "h1", b"b1")]) == [False]
        with pytest.raises(Conflict):
            await store.put_templates(
                [
                    (TemplateKind.TASK, "p/d/t/v2", "h2", b"b2"),
                    (TemplateKind.TASK, "p/d/t/v1", "other", b"x"),
                ]
            )
        # Nothing of a refused call is stored.
        assert await store.get_template(TemplateKind.TASK, "p/d/t/v2") is None
        assert await store.get_template(TemplateKind.TASK, "p/d/t/v1") == b"b1"
        # The same key under another kind is independent.
        assert await store.get_template(TemplateKind.WORKFLOW, "p/d/t/v1") is None

    run(factory, tmp_path, t)


def test_latest_and_list_templates_by_registration_order(factory: Factory, tmp_path: Path) -> None:
    async def t(store: Store) -> None:
        # Registration order decides "newest", not the version's spelling.
        for v in ("v3", "v1", "v2"):
            await store.put_templates([(TemplateKind.WORKFLOW, f"p/d/wf/{v}", v, v.encode())])
        await store.put_templates([(TemplateKind.WORKFLOW, "p/d/wf2/v9", "x", b"x")])
        assert await store.latest_template_key(TemplateKind.WORKFLOW, "p/d/wf/") == "p/d/wf/v2"
        assert await store.latest_template_key(TemplateKind.WORKFLOW, "p/d/none/") is None
        assert await store.list_templates(TemplateKind.WORKFLOW, "p/d/wf/", 2, 0) == [b"v2", b"v1"]
        assert await store.list_templates(TemplateKind.WORKFLOW, "p/d/wf/", 2, 2) == [b"v3"]
        assert len(await store.list_templates(TemplateKind.WORKFLOW, "p/d/", 10, 0)) == 4

    run(factory, tmp_path, t)


# -- executions --------------------------------------------------------------------------------
def test_create_execution_is_idempotent_by_request_id(factory: Factory, tmp_path: Path) -> None:
    async def t(store: Store) -> None:
        first = await _create(store, "e1", request_id="req-1")
        again, created = await store.create_execution(_record("e2", "req-1"), _PAYLOAD, _event())
        assert not created and again.eid == first.eid and again.name == "e1"
        with pytest.raises(Conflict):
            await store.create_execution(_record("e1"), _PAYLOAD, _event())
        got = await store.get_execution("p", "d", "e1")
        assert got is not None and got.labels == {"team": "a"} and got.last_seq == 1
        assert got.owner == "r1" and got.epoch == 1
        assert await store.get_execution("p", "d", "e2") is None
        by_eid = await store.get_execution_by_eid(first.eid)
        assert by_eid is not None and by_eid.name == "e1"
        assert await store.get_execution_by_eid(first.eid + 100) is None
        events = await store.events(first.eid, 0, 10)
        assert [s for s, _ in events] == [1] and _seq(events[0][1]) == 1
        payload = await store.get_payload(first.eid)
        assert payload is not None and payload.closure == b"closure" and payload.outputs == b""
        assert await store.get_payload(first.eid + 100) is None

    run(factory, tmp_path, t)


def test_list_executions_filters_and_pages_newest_first(factory: Factory, tmp_path: Path) -> None:
    async def t(store: Store) -> None:
        a = await _create(store, "a", labels={"team": "x"})
        b = await _create(store, "b", workflow_key="p/d/other/v1")
        c = await _create(store, "c", labels={"team": "x", "env": "prod"})
        await _create(store, "z", project="q")
        assert [r.name for r in await store.list_executions(ExecutionFilter(project="p"), 10)] == [
            "c",
            "b",
            "a",
        ]
        page1 = await store.list_executions(ExecutionFilter(project="p"), 2)
        page2 = await store.list_executions(ExecutionFilter(project="p"), 2, page1[-1].eid)
        assert [r.name for r in page1 + page2] == ["c", "b", "a"]
        by_label = ExecutionFilter(labels=(("team", "x"),))
        assert [r.eid for r in await store.list_executions(by_label, 10)] == [c.eid, a.eid]
        both = ExecutionFilter(labels=(("team", "x"), ("env", "prod")))
        assert [r.eid for r in await store.list_executions(both, 10)] == [c.eid]
        by_wf = ExecutionFilter(workflow="p/d/other/")
        assert [r.eid for r in await store.list_executions(by_wf, 10)] == [b.eid]
        queued = ExecutionFilter(phases=(EP.EXECUTION_PHASE_QUEUED,), project="q")
        assert [r.name for r in await store.list_executions(queued, 10)] == ["z"]
        none = ExecutionFilter(phases=(EP.EXECUTION_PHASE_SUCCEEDED,))
        assert await store.list_executions(none, 10) == []

    run(factory, tmp_path, t)


# -- writes ------------------------------------------------------------------------------------
def _batch(rec: ExecutionRecord, epoch: int | None = None, token: str = "") -> WriteBatch:
    batch = WriteBatch()
    w = batch.of(rec.eid, rec.epoch if epoch is None else epoch, token)
    w.phase = EP.EXECUTION_PHASE_RUNNING
    w.counts = {"total": 1, "succeeded": 0, "running": 1, "failed": 0, "skipped": 0, "cached": 0}
    w.updated_at = 5.0
    w.nodes.append(NodeRecord(rec.eid, "n0", EP.NODE_PHASE_RUNNING, attempt=1, inputs=b"in"))
    w.events += [_event(), _event()]
    w.dynamic_specs.append(DynamicSpecRecord("n0", b"spec", 1))
    batch.cache_entries.append(CacheEntry("k", b"out", rec.eid, "n0", 1.0))
    return batch


def test_apply_commits_nodes_events_specs_and_cache(factory: Factory, tmp_path: Path) -> None:
    async def t(store: Store) -> None:
        rec = await _create(store, "e1")
        result = await store.apply(_batch(rec), now=10.0)
        assert result.last_seq == {rec.eid: 3}
        events = await store.events(rec.eid, 1, 10)
        assert [s for s, _ in events] == [2, 3] and [_seq(b) for _, b in events] == [2, 3]
        assert [s for s, _ in await store.events(rec.eid, 0, 1)] == [1]  # limit
        specs = await store.dynamic_specs(rec.eid)
        assert [(s.node_id, s.closure, s.depth) for s in specs] == [("n0", b"spec", 1)]
        spec = await store.get_dynamic_spec(rec.eid, "n0")
        assert spec is not None and spec.closure == b"spec"
        assert await store.get_dynamic_spec(rec.eid, "n9") is None
        found = await store.cache_get_many(["k", "missing"])
        assert list(found) == ["k"] and found["k"].outputs == b"out"
        node = await store.get_node(rec.eid, "n0")
        assert node is not None and node.attempt == 1 and node.inputs == b"in"
        got = await store.get_execution_by_eid(rec.eid)
        assert got is not None and got.phase == EP.EXECUTION_PHASE_RUNNING
        assert got.last_seq == 3 and got.counts["running"] == 1 and got.updated_at == 5.0

        # Updates change a node's state but never its inputs or identity.
        batch = WriteBatch()
        w = batch.of(rec.eid, rec.epoch)
        w.node_updates.append(
            NodeUpdate("n0", EP.NODE_PHASE_SUCCEEDED, 1, 0, 0, b"out", b"", 0, False, "", 6.0)
        )
        # A second cache entry under the same key keeps the first.
        batch.cache_entries.append(CacheEntry("k", b"other", rec.eid, "n1", 2.0))
        await store.apply(batch, now=11.0)
        node = await store.get_node(rec.eid, "n0")
        assert node is not None and node.phase == EP.NODE_PHASE_SUCCEEDED
        assert node.outputs == b"out" and node.inputs == b"in"
        assert (await store.cache_get_many(["k"]))["k"].outputs == b"out"

    run(factory, tmp_path, t)


def test_events_sharing_fields_come_back_whole_numbered_and_paged(
    factory: Factory, tmp_path: Path
) -> None:
    """A pass's events carry their shared fields once (`ExecutionWrites.event_shared`); every
    reader gets each event whole, with its sequence, in pages of any size."""

    async def t(store: Store) -> None:
        rec = await _create(store, "e1")
        shared = events_pb2.ExecutionEvent()
        shared.execution_id.name = "e1"
        shared.occurred_at.FromNanoseconds(5_000_000_123)
        for first, count in ((2, 300), (302, 3)):
            batch = WriteBatch()
            w = batch.of(rec.eid, rec.epoch, f"pass-{first}")
            w.event_shared = shared.SerializeToString()
            for i in range(count):
                ev = events_pb2.ExecutionEvent()
                ev.node.node_id = f"n{first + i}"
                w.events.append(ev.SerializeToString())
            result = await store.apply(batch, now=1.0)
            assert result.last_seq == {rec.eid: first + count - 1}
        every = await store.events(rec.eid, 0, 1000)
        assert [s for s, _ in every] == list(range(1, 305))
        for seq, body in every[1:]:
            ev = events_pb2.ExecutionEvent.FromString(body)
            assert ev.sequence == seq and ev.node.node_id == f"n{seq}"
            assert ev.execution_id.name == "e1" and ev.occurred_at == shared.occurred_at
        assert [s for s, _ in await store.events(rec.eid, 150, 5)] == [151, 152, 153, 154, 155]
        assert [s for s, _ in await store.events(rec.eid, 300, 100)] == [301, 302, 303, 304]
        assert await store.events(rec.eid, 304, 10) == []
        got = await store.get_execution_by_eid(rec.eid)
        assert got is not None and got.last_seq == 304

    run(factory, tmp_path, t)


def test_the_same_batch_applied_twice_changes_nothing(factory: Factory, tmp_path: Path) -> None:
    """A commit that succeeded but whose caller saw an error is retried as it was."""

    async def t(store: Store) -> None:
        rec = await _create(store, "e1")
        batch = _batch(rec, token="replica#1")
        first = await store.apply(batch, now=10.0)
        again = await store.apply(batch, now=10.0)
        assert first.last_seq == again.last_seq == {rec.eid: 3}
        assert len(await store.events(rec.eid, 0, 100)) == 3

    run(factory, tmp_path, t)


def test_a_node_recorded_and_moved_in_one_batch_ends_in_its_last_state(
    factory: Factory, tmp_path: Path
) -> None:
    """Several transitions of one node in one pass: the last one is its state."""

    async def t(store: Store) -> None:
        rec = await _create(store, "e1")
        first = WriteBatch()
        w = first.of(rec.eid, rec.epoch)
        w.nodes.append(NodeRecord(rec.eid, "old", EP.NODE_PHASE_QUEUED, inputs=b"in0"))
        await store.apply(first, now=1.0)

        def moved(node_id: str, phase: int, attempt: int, at: float) -> NodeUpdate:
            return NodeUpdate(node_id, phase, attempt, 0, 0, b"o%d" % attempt, b"", 0, False,
                              f"d{attempt}", at)  # fmt: skip

        batch = WriteBatch()
        w = batch.of(rec.eid, rec.epoch)
        w.nodes.append(NodeRecord(rec.eid, "new", EP.NODE_PHASE_QUEUED, inputs=b"in1", name="x"))
        w.node_updates += [
            moved("new", EP.NODE_PHASE_RUNNING, 1, 2.0),
            moved("old", EP.NODE_PHASE_RUNNING, 1, 2.0),
            moved("new", EP.NODE_PHASE_SUCCEEDED, 2, 3.0),
            moved("old", EP.NODE_PHASE_FAILED, 3, 4.0),
            moved("ghost", EP.NODE_PHASE_RUNNING, 1, 2.0),  # no record: nothing happens
        ]
        await store.apply(batch, now=5.0)
        new = await store.get_node(rec.eid, "new")
        assert new is not None and (new.phase, new.attempt) == (EP.NODE_PHASE_SUCCEEDED, 2)
        assert (new.outputs, new.detail, new.updated_at) == (b"o2", "d2", 3.0)
        assert (new.inputs, new.name) == (b"in1", "x")
        old = await store.get_node(rec.eid, "old")
        assert old is not None and (old.phase, old.attempt) == (EP.NODE_PHASE_FAILED, 3)
        assert old.inputs == b"in0" and old.updated_at == 4.0
        assert await store.get_node(rec.eid, "ghost") is None

    run(factory, tmp_path, t)


def test_finishing_an_execution_ends_its_open_nodes_and_frees_it(
    factory: Factory, tmp_path: Path
) -> None:
    async def t(store: Store) -> None:
        rec = await _create(store, "e1")
        await store.apply(_batch(rec), now=10.0)
        batch = WriteBatch()
        w = batch.of(rec.eid, rec.epoch)
        w.phase = EP.EXECUTION_PHASE_FAILED
        w.error = b"err"
        w.outputs = b""
        await store.apply(batch, now=11.0)
        node = await store.get_node(rec.eid, "n0")
        assert node is not None and node.phase == EP.NODE_PHASE_ABORTED
        got = await store.get_execution_by_eid(rec.eid)
        assert got is not None and got.error == b"err" and got.owner == ""
        assert await store.unfinished(10) == []
        assert await store.renew("r1", {rec.eid: rec.epoch}, 50.0) == {rec.eid}

    run(factory, tmp_path, t)


def test_list_nodes_pages_by_id_and_parent(factory: Factory, tmp_path: Path) -> None:
    async def t(store: Store) -> None:
        rec = await _create(store, "e1")
        batch = WriteBatch()
        w = batch.of(rec.eid, rec.epoch)
        for nid, parent in (("n0", ""), ("n1", ""), ("n1/a", "n1"), ("n1/b", "n1"), ("n2", "")):
            w.nodes.append(NodeRecord(rec.eid, nid, EP.NODE_PHASE_SUCCEEDED, parent_id=parent))
        await store.apply(batch, now=1.0)
        top = await store.list_nodes(rec.eid, "", 2)
        assert [n.node_id for n in top] == ["n0", "n1"]
        rest = await store.list_nodes(rec.eid, "", 2, top[-1].node_id)
        assert [n.node_id for n in rest] == ["n2"]
        assert [n.node_id for n in await store.list_nodes(rec.eid, "n1", 10)] == ["n1/a", "n1/b"]
        assert len(await store.list_nodes(rec.eid, None, 10)) == 5
        assert len(await store.node_records(rec.eid)) == 5
        assert await store.get_node(rec.eid, "nope") is None

    run(factory, tmp_path, t)


def test_nodes_filter_by_phase_and_name_and_count_per_phase(
    factory: Factory, tmp_path: Path
) -> None:
    async def t(store: Store) -> None:
        rec = await _create(store, "e1")
        batch = WriteBatch()
        w = batch.of(rec.eid, rec.epoch)
        ok, failed, running = EP.NODE_PHASE_SUCCEEDED, EP.NODE_PHASE_FAILED, EP.NODE_PHASE_RUNNING
        rows = [
            ("n0", "", ok, "gen"),
            ("n0/a", "n0", ok, "square"),
            ("n0/b", "n0", failed, "square"),
            ("n0/c", "n0", running, "square"),
            ("n0/d", "n0", ok, "gather"),
            ("n0/c/x", "n0/c", ok, "inner"),
            ("n00", "", running, "other"),  # shares n0's prefix without being inside it
        ]
        for nid, parent, phase, name in rows:
            w.nodes.append(NodeRecord(rec.eid, nid, phase, parent_id=parent, name=name))
        await store.apply(batch, now=1.0)

        async def ids_of(parent: str | None, **kw: Any) -> list[str]:
            return [n.node_id for n in await store.list_nodes(rec.eid, parent, 10, **kw)]

        assert await ids_of("n0", name="square") == ["n0/a", "n0/b", "n0/c"]
        assert await ids_of("n0", name="square", phases=[ok, failed]) == ["n0/a", "n0/b"]
        assert await ids_of("", phases=[running]) == ["n00"]
        assert await ids_of(None, phases=[failed]) == ["n0/b"]
        page = await store.list_nodes(rec.eid, "n0", 1, "n0/a", name="square")
        assert [n.node_id for n in page] == ["n0/b"]

        assert await store.count_nodes(rec.eid) == {ok: 4, failed: 1, running: 2}
        assert await store.count_nodes(rec.eid, "n0") == {ok: 3, failed: 1, running: 1}
        assert await store.count_nodes(rec.eid, "n0/c") == {ok: 1}
        assert await store.count_nodes(rec.eid, "nope") == {}
        assert sorted(await store.count_children(rec.eid, "n0")) == [
            ("gather", ok, 1),
            ("square", running, 1),
            ("square", ok, 1),
            ("square", failed, 1),
        ]
        assert sorted(await store.count_children(rec.eid, "")) == [
            ("gen", ok, 1),
            ("other", running, 1),
        ]

    run(factory, tmp_path, t)


def test_events_of_one_node_in_sequence_order(factory: Factory, tmp_path: Path) -> None:
    def node_event(node_id: str, phase: int) -> bytes:
        t = events_pb2.NodeTransition(node_id=node_id, phase=phase)  # type: ignore[arg-type]
        return events_pb2.ExecutionEvent(node=t).SerializeToString()

    async def t(store: Store) -> None:
        rec = await _create(store, "e1")
        batch = WriteBatch()
        w = batch.of(rec.eid, rec.epoch)
        w.events += [
            node_event("n0", EP.NODE_PHASE_RUNNING),
            node_event("n1", EP.NODE_PHASE_RUNNING),
            node_event("n0", EP.NODE_PHASE_RETRYING),
            _event(),
            node_event("n0", EP.NODE_PHASE_SUCCEEDED),
            node_event("n0/x", EP.NODE_PHASE_RUNNING),
        ]
        await store.apply(batch, now=1.0)
        found = await store.node_events(rec.eid, "n0", 0, 10)
        assert [seq for seq, _ in found] == [2, 4, 6]  # sequence 1 is the creation event
        assert [_seq(b) for _, b in found] == [2, 4, 6]
        phases = [events_pb2.ExecutionEvent.FromString(b).node.phase for _, b in found]
        assert phases == [EP.NODE_PHASE_RUNNING, EP.NODE_PHASE_RETRYING, EP.NODE_PHASE_SUCCEEDED]
        assert [s for s, _ in await store.node_events(rec.eid, "n0", 2, 1)] == [4]
        assert await store.node_events(rec.eid, "n9", 0, 10) == []

    run(factory, tmp_path, t)


def test_events_of_one_node_across_rows_of_one_and_of_many_events(
    factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node's events are found whether its pass made one event (a row of its own) or several
    with shared fields (a row of many), across more rows than one read takes."""
    for module in (sqlite_module, postgres_module):
        monkeypatch.setattr(module, "SCAN_ROWS", 2)
    shared = events_pb2.ExecutionEvent()
    shared.execution_id.name = "e1"

    def part(node_id: str, phase: int) -> bytes:
        return events_pb2.ExecutionEvent(
            node=events_pb2.NodeTransition(node_id=node_id, phase=phase)  # type: ignore[arg-type]
        ).SerializeToString()

    async def t(store: Store) -> None:
        rec = await _create(store, "e1")
        passes = [
            [part("n1", EP.NODE_PHASE_RUNNING)],  # 2
            [part("n10", EP.NODE_PHASE_RUNNING)],  # 3: "n1" is a prefix, not the node
            [part("n10", EP.NODE_PHASE_SUCCEEDED), part("n1", EP.NODE_PHASE_RETRYING)],  # 4, 5
            [part("n2", EP.NODE_PHASE_RUNNING)],  # 6
            [part("n2", EP.NODE_PHASE_SUCCEEDED), part("n3", EP.NODE_PHASE_RUNNING)],  # 7, 8
            [part("n1", EP.NODE_PHASE_SUCCEEDED)],  # 9
        ]
        for i, events in enumerate(passes):
            batch = WriteBatch()
            w = batch.of(rec.eid, rec.epoch, f"pass-{i}")
            w.event_shared = shared.SerializeToString()
            w.events += events
            await store.apply(batch, now=1.0)
        found = await store.node_events(rec.eid, "n1", 0, 10)
        assert [seq for seq, _ in found] == [2, 5, 9]
        for seq, body in found:
            ev = events_pb2.ExecutionEvent.FromString(body)
            assert ev.sequence == seq and ev.node.node_id == "n1"
            assert ev.execution_id.name == "e1"
        assert [s for s, _ in await store.node_events(rec.eid, "n1", 2, 1)] == [5]
        assert [s for s, _ in await store.node_events(rec.eid, "n1", 5, 10)] == [9]
        assert [s for s, _ in await store.node_events(rec.eid, "n10", 0, 10)] == [3, 4]
        assert await store.node_events(rec.eid, "n4", 0, 10) == []

    run(factory, tmp_path, t)


def test_cache_reservations_have_one_live_holder(factory: Factory, tmp_path: Path) -> None:
    async def t(store: Store) -> None:
        async def reserve(holder: str, now: float) -> str:
            batch = WriteBatch(reservations=[Reservation("k", holder, now + 10.0)])
            return (await store.apply(batch, now)).holders["k"]

        assert await reserve("a", 100.0) == "a"
        assert await reserve("b", 105.0) == "a"
        assert await reserve("a", 106.0) == "a"  # renewal by the holder
        assert await reserve("b", 200.0) == "b"  # expired: taken over
        await store.apply(WriteBatch(released=["k"]), 201.0)
        assert await reserve("c", 201.0) == "c"
        # Two requests in one commit: the first wins.
        both = WriteBatch(
            reservations=[Reservation("k2", "x", 310.0), Reservation("k2", "y", 310.0)]
        )
        assert (await store.apply(both, 300.0)).holders["k2"] == "x"

    run(factory, tmp_path, t)


# -- ownership ---------------------------------------------------------------------------------
def test_a_stale_owner_can_no_longer_write(factory: Factory, tmp_path: Path) -> None:
    async def t(store: Store) -> None:
        rec = await _create(store, "e1", owner="r1", lease=100.0)
        # r2 cannot claim while r1's lease lives ...
        assert await store.claim(rec.eid, "r2", now=50.0, until=150.0) is None
        # ... but adopts it once the lease expired, with a new epoch.
        adopted = await store.claim(rec.eid, "r2", now=101.0, until=200.0)
        assert adopted is not None and adopted.owner == "r2" and adopted.epoch == rec.epoch + 1
        # r1 wakes up and writes with its old epoch: refused, nothing written.
        with pytest.raises(OwnershipLost) as lost:
            await store.apply(_batch(rec), now=102.0)
        assert lost.value.eids == {rec.eid}
        assert await store.get_node(rec.eid, "n0") is None
        assert len(await store.events(rec.eid, 0, 10)) == 1
        assert await store.renew("r1", {rec.eid: rec.epoch}, 300.0) == {rec.eid}
        # The new owner writes.
        await store.apply(_batch(adopted), now=103.0)
        assert await store.get_node(rec.eid, "n0") is not None

    run(factory, tmp_path, t)


def test_one_lost_execution_refuses_the_whole_batch(factory: Factory, tmp_path: Path) -> None:
    async def t(store: Store) -> None:
        mine = await _create(store, "mine")
        theirs = await _create(store, "theirs", lease=10.0)
        assert await store.claim(theirs.eid, "r2", now=11.0, until=100.0) is not None
        batch = _batch(mine)
        batch.executions.update(_batch(theirs).executions)
        with pytest.raises(OwnershipLost) as lost:
            await store.apply(batch, now=12.0)
        assert lost.value.eids == {theirs.eid}
        assert await store.get_node(mine.eid, "n0") is None  # all or nothing
        del batch.executions[theirs.eid]
        await store.apply(batch, now=12.0)
        assert await store.get_node(mine.eid, "n0") is not None

    run(factory, tmp_path, t)


def test_two_replicas_racing_to_claim_get_one_owner(factory: Factory, tmp_path: Path) -> None:
    async def t(store: Store) -> None:
        rec = await _create(store, "e1", owner="")
        assert [r.eid for r in await store.claimable(now=1.0, limit=10)] == [rec.eid]
        got = await asyncio.gather(
            *(store.claim(rec.eid, f"r{i}", now=1.0, until=50.0) for i in range(5))
        )
        winners = [g for g in got if g is not None]
        assert len(winners) == 1 and winners[0].epoch == 1
        assert await store.claimable(now=2.0, limit=10) == []
        # The holder claiming again keeps it (a new epoch).
        again = await store.claim(rec.eid, winners[0].owner, now=3.0, until=60.0)
        assert again is not None and again.epoch == 2

    run(factory, tmp_path, t)


def test_leases_renew_expire_and_release(factory: Factory, tmp_path: Path) -> None:
    async def t(store: Store) -> None:
        rec = await _create(store, "e1", lease=10.0)
        other = await _create(store, "e2", lease=10.0)
        assert await store.renew("r1", {rec.eid: 1, other.eid: 1}, until=30.0) == set()
        assert await store.claimable(now=20.0, limit=10) == []  # renewed past 20
        assert {r.eid for r in await store.claimable(now=31.0, limit=10)} == {rec.eid, other.eid}
        await store.release("r1", {rec.eid: 1})
        assert [r.eid for r in await store.claimable(now=1.0, limit=10)] == [rec.eid]
        # A wrong epoch neither renews nor releases.
        assert await store.renew("r1", {other.eid: 7}, until=99.0) == {other.eid}
        # `unfinished` lists them whoever holds them, in eid order.
        assert [r.eid for r in await store.unfinished(10)] == [rec.eid, other.eid]
        assert [r.eid for r in await store.unfinished(10, after_eid=rec.eid)] == [other.eid]

    run(factory, tmp_path, t)


def test_a_takeover_by_epoch_ignores_a_live_lease(factory: Factory, tmp_path: Path) -> None:
    """A replica that knows the owner is dead (same host, process gone) takes over at once."""

    async def t(store: Store) -> None:
        rec = await _create(store, "e1", lease=1000.0)
        assert await store.claim(rec.eid, "r2", now=1.0, until=50.0, expected_epoch=9) is None
        got = await store.claim(rec.eid, "r2", now=1.0, until=50.0, expected_epoch=rec.epoch)
        assert got is not None and got.owner == "r2"

    run(factory, tmp_path, t)


def test_termination_requests_and_deletion(factory: Factory, tmp_path: Path) -> None:
    async def t(store: Store) -> None:
        rec = await _create(store, "e1")
        assert await store.termination_requests([rec.eid]) == {}
        asked = await store.request_termination(rec.eid, "stop it")
        assert asked is not None and asked.terminate_reason == "stop it"
        assert await store.termination_requests([rec.eid, rec.eid + 100]) == {rec.eid: "stop it"}
        again = await store.request_termination(rec.eid, "later")
        assert again is not None and again.terminate_reason == "stop it"  # the first stays
        assert await store.request_termination(rec.eid + 100, "x") is None
        with pytest.raises(Conflict):
            await store.delete_execution(rec.eid)  # not finished
        await store.apply(_batch(rec), now=1.0)
        batch = WriteBatch()
        batch.of(rec.eid, rec.epoch).phase = EP.EXECUTION_PHASE_ABORTED
        await store.apply(batch, now=2.0)
        assert await store.delete_execution(rec.eid)
        assert await store.get_execution_by_eid(rec.eid) is None
        assert await store.node_records(rec.eid) == []
        assert await store.events(rec.eid, 0, 10) == []
        assert await store.dynamic_specs(rec.eid) == []
        assert await store.get_payload(rec.eid) is None
        assert not await store.delete_execution(rec.eid)
        # The name can be used again.
        await _create(store, "e1")

    run(factory, tmp_path, t)


def test_retention_lists_finished_executions_by_age(factory: Factory, tmp_path: Path) -> None:
    async def t(store: Store) -> None:
        old = await _create(store, "old")
        new = await _create(store, "new")
        await _create(store, "running")
        for rec, at in ((old, 10.0), (new, 100.0)):
            batch = WriteBatch()
            w = batch.of(rec.eid, rec.epoch)
            w.phase, w.updated_at = EP.EXECUTION_PHASE_SUCCEEDED, at
            await store.apply(batch, now=at)
        due = await store.list_executions(ExecutionFilter(finished_before=50.0), 10)
        assert [r.name for r in due] == ["old"]

    run(factory, tmp_path, t)


def test_logs_are_appended_and_read_in_order_by_node_and_attempt(
    factory: Factory, tmp_path: Path
) -> None:
    async def t(store: Store) -> None:
        rec = await _create(store, "e1")
        other = await _create(store, "e2")
        await store.append_logs(
            [
                LogEntry(rec.eid, "n0", 1, 1, 1.0, "first"),
                LogEntry(rec.eid, "n1", 1, 2, 2.0, "other node"),
                LogEntry(other.eid, "n0", 1, 1, 2.5, "other execution"),
                LogEntry(rec.eid, "n0", 2, 1, 3.0, "retry"),
            ]
        )
        everything = await store.logs(rec.eid, "", 0, 0, 100)
        assert [e.text for _, e in everything] == ["first", "other node", "retry"]
        positions = [p for p, _ in everything]
        assert positions == sorted(positions)
        n0 = await store.logs(rec.eid, "n0", 0, 0, 100)
        assert [(e.attempt, e.text) for _, e in n0] == [(1, "first"), (2, "retry")]
        second = await store.logs(rec.eid, "n0", 2, 0, 100)
        assert [e.text for _, e in second] == ["retry"]
        rest = await store.logs(rec.eid, "", 0, positions[0], 1)
        assert [e.text for _, e in rest] == ["other node"]
        # Deleting an execution deletes its logs.
        batch = WriteBatch()
        batch.of(rec.eid, rec.epoch).phase = EP.EXECUTION_PHASE_SUCCEEDED
        await store.apply(batch, now=1.0)
        await store.delete_execution(rec.eid)
        assert await store.logs(rec.eid, "", 0, 0, 100) == []
        assert len(await store.logs(other.eid, "", 0, 0, 100)) == 1

    run(factory, tmp_path, t)


def test_named_leases_have_one_holder(factory: Factory, tmp_path: Path) -> None:
    async def t(store: Store) -> None:
        assert await store.acquire_lease("retention", "r1", now=1.0, until=10.0)
        assert not await store.acquire_lease("retention", "r2", now=5.0, until=15.0)
        assert await store.acquire_lease("retention", "r1", now=6.0, until=20.0)  # renewal
        assert await store.acquire_lease("schedules", "r2", now=6.0, until=20.0)  # another name
        assert not await store.acquire_lease("retention", "r2", now=19.0, until=30.0)
        assert await store.acquire_lease("retention", "r2", now=21.0, until=30.0)  # expired
        assert not await store.acquire_lease("retention", "r1", now=22.0, until=40.0)

    run(factory, tmp_path, t)


def test_old_cache_entries_are_deleted_by_age(factory: Factory, tmp_path: Path) -> None:
    async def t(store: Store) -> None:
        rec = await _create(store, "e1")
        batch = WriteBatch()
        for i, at in enumerate((1.0, 5.0, 9.0)):
            batch.cache_entries.append(CacheEntry(f"k{i}", b"out", rec.eid, f"n{i}", at))
        await store.apply(batch, now=10.0)
        assert await store.delete_cache_before(6.0, 10) == ["k0", "k1"]
        assert list(await store.cache_get_many(["k0", "k1", "k2"])) == ["k2"]
        assert await store.delete_cache_before(6.0, 10) == []
        await store.compact()  # gives space back where the backend needs it; never fails
        assert list(await store.cache_get_many(["k2"])) == ["k2"]

    run(factory, tmp_path, t)


def test_the_dispatch_queue_hands_each_attempt_to_one_replica(
    factory: Factory, tmp_path: Path
) -> None:
    async def t(store: Store) -> None:
        def d(aid: str, queue: str, at: float) -> QueuedDispatch:
            return QueuedDispatch(aid, 1, queue, aid.encode(), at)

        await store.enqueue_dispatches(
            [d("1:a:1", "q", 1.0), d("1:b:1", "q", 2.0), d("1:c:1", "gpu", 3.0)]
        )
        first = await store.take_dispatches("r1", {"q": 1, "gpu": 5}, now=10.0, until=20.0)
        assert sorted(x.assignment_id for x in first) == ["1:a:1", "1:c:1"]  # oldest first
        assert first[0].assignment == first[0].assignment_id.encode()
        second = await store.take_dispatches("r2", {"q": 5, "gpu": 5}, now=10.0, until=20.0)
        assert [x.assignment_id for x in second] == ["1:b:1"]  # never one attempt twice
        # "a" and "b" are held on; "c" is not renewed and goes back once its hold expired.
        await store.renew_dispatches("r1", ["1:a:1"], until=40.0)
        await store.renew_dispatches("r2", ["1:b:1"], until=40.0)
        await store.renew_dispatches("r9", ["1:c:1"], until=99.0)  # not its holder: no effect
        again = await store.take_dispatches("r2", {"q": 5, "gpu": 5}, now=25.0, until=50.0)
        assert [x.assignment_id for x in again] == ["1:c:1"]
        # Cancelling: an untaken attempt disappears, a held one is flagged for its holder.
        await store.enqueue_dispatches([d("1:e:1", "q", 4.0)])
        await store.cancel_dispatches(["1:a:1", "1:e:1"])
        assert await store.cancelled_dispatches("r1") == ["1:a:1"]
        assert await store.cancelled_dispatches("r2") == []
        # A cancelled attempt is never handed out again, even once its hold expired.
        later = await store.take_dispatches("r3", {"q": 9}, now=100.0, until=200.0)
        assert [x.assignment_id for x in later] == ["1:b:1"]
        await store.finish_dispatches(["1:a:1", "1:b:1", "1:c:1"])
        assert await store.cancelled_dispatches("r1") == []

    run(factory, tmp_path, t)


def test_results_reach_the_owner_once(factory: Factory, tmp_path: Path) -> None:
    async def t(store: Store) -> None:
        await store.post_results(
            [
                QueuedResult("1:a:1", 1, b"r1", "w1", 1.0),
                QueuedResult("2:a:1", 2, b"r2", "w2", 2.0),
                QueuedResult("1:b:1", 1, b"r3", "w1", 3.0),
            ]
        )
        mine = await store.take_results([1], 10)
        assert [(r.assignment_id, r.result, r.worker_id) for r in mine] == [
            ("1:a:1", b"r1", "w1"),
            ("1:b:1", b"r3", "w1"),
        ]
        assert await store.take_results([1], 10) == []
        assert [r.assignment_id for r in await store.take_results([2, 3], 1)] == ["2:a:1"]
        assert await store.take_results([], 10) == []

    run(factory, tmp_path, t)


# -- the SQLite file ---------------------------------------------------------------------------
def test_schema_is_migrated_once_and_survives_reopen(tmp_path: Path) -> None:
    async def t() -> None:
        path = tmp_path / "plait.db"
        s = SqliteStore(path)
        rec = await _create(s, "e1")
        version = await s.schema_version()
        await s.close()
        s2 = SqliteStore(path)
        try:
            assert await s2.schema_version() == version >= 6
            got = await s2.get_execution_by_eid(rec.eid)
            assert got is not None and got.name == "e1" and got.owner == "r1"
        finally:
            await s2.close()

    asyncio.run(t())


def test_a_version_1_database_is_upgraded_in_place(tmp_path: Path) -> None:
    import sqlite3

    from plait_engine.store.sqlite_schema import MIGRATIONS

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version (version) VALUES (1)")
    conn.execute(
        "INSERT INTO executions (project, domain, name, workflow_key, launch_plan_key, phase, "
        "closure, workflow, inputs, outputs, error, created_at, updated_at, request_id, labels, "
        "last_seq) VALUES ('p', 'd', 'old', 'k', '', 2, x'', x'', x'', x'', x'', 1, 1, NULL, "
        "'{}', 4)"
    )
    conn.commit()
    conn.close()

    async def t() -> None:
        store = SqliteStore(path)
        try:
            assert await store.schema_version() == len(MIGRATIONS) >= 3
            old = await store.get_execution("p", "d", "old")
            assert old is not None and old.last_seq == 4 and old.counts["total"] == 0
            assert old.owner == "" and old.epoch == 0
            # An unowned old execution is claimable, and its events continue from 4.
            claimed = await store.claim(old.eid, "r1", now=1.0, until=10.0)
            assert claimed is not None and claimed.epoch == 1
            batch = WriteBatch()
            batch.of(old.eid, 1).events.append(_event())
            assert (await store.apply(batch, now=2.0)).last_seq == {old.eid: 5}
        finally:
            await store.close()

    asyncio.run(t())
