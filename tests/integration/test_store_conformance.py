"""The store conformance suite: every `Store` implementation must pass it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from plait_engine.errors import AlreadyExists
from plait_engine.store import (
    CacheEntry,
    ExecutionRecord,
    NodeRecord,
    SqliteStore,
    Store,
    TemplateKind,
    WriteBatch,
)


@pytest.fixture(params=["sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = SqliteStore(tmp_path / "plait.db")
    yield s
    s.close()


def _record(name: str, request_id: str = "") -> ExecutionRecord:
    return ExecutionRecord(
        eid=0,
        project="p",
        domain="d",
        name=name,
        workflow_key="p/d/wf/v1",
        launch_plan_key="",
        phase=1,
        closure=b"c",
        workflow=b"w",
        inputs=b"i",
        outputs=b"",
        error=b"",
        created_at=1.0,
        updated_at=1.0,
        request_id=request_id,
        labels={"a": "b"},
    )


def test_templates_are_immutable_and_identical_reregister_is_a_noop(store: Store) -> None:
    assert store.put_templates([(TemplateKind.TASK, "p/d/t/v1", "h1", b"body1")]) == [True]
    assert store.put_templates([(TemplateKind.TASK, "p/d/t/v1", "h1", b"body1")]) == [False]
    with pytest.raises(AlreadyExists, match="immutable"):
        store.put_templates(
            [
                (TemplateKind.TASK, "p/d/t/v2", "h2", b"body2"),
                (TemplateKind.TASK, "p/d/t/v1", "other", b"x"),
            ]
        )
    # Nothing of a refused request is stored.
    assert store.get_template(TemplateKind.TASK, "p/d/t/v2") is None
    assert store.get_template(TemplateKind.TASK, "p/d/t/v1") == b"body1"
    # Same key under another kind is independent.
    assert store.get_template(TemplateKind.WORKFLOW, "p/d/t/v1") is None


def test_latest_and_list_templates(store: Store) -> None:
    for v in ("v1", "v2", "v3"):
        store.put_templates([(TemplateKind.WORKFLOW, f"p/d/wf/{v}", v, v.encode())])
    store.put_templates([(TemplateKind.WORKFLOW, "p/d/wf2/v9", "x", b"x")])
    assert store.latest_template_key(TemplateKind.WORKFLOW, "p/d/wf/") == "p/d/wf/v3"
    assert store.list_templates(TemplateKind.WORKFLOW, "p/d/wf/", 2, 0) == [b"v3", b"v2"]
    assert store.list_templates(TemplateKind.WORKFLOW, "p/d/wf/", 2, 2) == [b"v1"]


def test_create_execution_is_idempotent_by_request_id(store: Store) -> None:
    first = store.create_execution(_record("e1", "req-1"), b"ev1")
    again = store.create_execution(_record("e2", "req-1"), b"ev1")
    assert again.eid == first.eid and again.name == "e1"
    with pytest.raises(AlreadyExists):
        store.create_execution(_record("e1"), b"ev")
    got = store.get_execution("p", "d", "e1")
    assert got is not None and got.labels == {"a": "b"} and got.last_seq == 1
    assert store.events(first.eid, 0, 10) == [(1, b"ev1")]


def test_apply_commits_nodes_events_specs_cache_atomically(store: Store) -> None:
    rec = store.create_execution(_record("e1"), b"ev1")
    rec.phase = 2
    rec.last_seq = 3
    batch = WriteBatch(
        executions=[rec],
        nodes=[NodeRecord(eid=rec.eid, node_id="n0", phase=2, attempt=1, parent_id="")],
        events=[(rec.eid, 2, b"ev2"), (rec.eid, 3, b"ev3")],
        dynamic_specs=[(rec.eid, "n0", b"spec", 1)],
        cache_entries=[CacheEntry("k", b"out", rec.eid, "n0", 1.0)],
    )
    store.apply(batch)
    assert [s for s, _ in store.events(rec.eid, 1, 10)] == [2, 3]
    assert store.dynamic_specs(rec.eid) == {"n0": (b"spec", 1)}
    assert store.cache_get_many(["k", "missing"])["k"].outputs == b"out"
    node = store.get_node(rec.eid, "n0")
    assert node is not None and node.attempt == 1
    # A batch that fails part-way leaves nothing behind (duplicate event sequence).
    bad = WriteBatch(
        nodes=[NodeRecord(eid=rec.eid, node_id="n1", phase=2)],
        events=[(rec.eid, 3, b"dup")],
    )
    with pytest.raises(Exception, match="UNIQUE"):
        store.apply(bad)
    assert store.get_node(rec.eid, "n1") is None
    unfinished = store.unfinished_executions()
    assert [e.name for e in unfinished] == ["e1"] and unfinished[0].last_seq == 3


def test_cache_reservation_has_one_live_owner(store: Store) -> None:
    assert store.cache_reserve("k", "a", now=100.0, ttl=10.0) == "a"
    assert store.cache_reserve("k", "b", now=105.0, ttl=10.0) == "a"
    assert store.cache_reserve("k", "a", now=106.0, ttl=10.0) == "a"  # renewal
    assert store.cache_reserve("k", "b", now=200.0, ttl=10.0) == "b"  # expired: taken over
    store.apply(WriteBatch(released_reservations=["k"]))
    assert store.cache_reserve("k", "c", now=201.0, ttl=10.0) == "c"


def test_schema_is_migrated_once_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "plait.db"
    s = SqliteStore(path)
    rec = s.create_execution(_record("e1"), b"ev")
    version = s.schema_version()
    s.close()
    s2 = SqliteStore(path)
    assert s2.schema_version() == version >= 1
    got = s2.get_execution_by_eid(rec.eid)
    assert got is not None and got.name == "e1"
    s2.close()


def test_a_version_1_database_is_upgraded_in_place(tmp_path: Path) -> None:
    import sqlite3

    from plait_engine.store.sqlite import MIGRATIONS

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
        "last_seq) VALUES ('p', 'd', 'old', 'k', '', 3, x'', x'', x'', x'', x'', 1, 1, NULL, "
        "'{}', 4)"
    )
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    try:
        assert store.schema_version() == len(MIGRATIONS) >= 2
        old = store.get_execution("p", "d", "old")
        assert old is not None and old.last_seq == 4 and old.counts is None
        old.counts = {"total": 3, "succeeded": 3}
        store.apply(WriteBatch(executions=[old]))
        again = store.get_execution("p", "d", "old")
        assert again is not None and again.counts == {"total": 3, "succeeded": 3}
    finally:
        store.close()
