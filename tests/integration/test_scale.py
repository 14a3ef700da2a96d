"""Scale behaviour of the embedded engine: no 10,000-node ceiling, and nothing on the way out
that grows with the outputs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from plait import _embedded, _runtime, _serialize
from plait_engine.app import Engine, build_engine
from plait_engine.config import EMBEDDED_DEFAULTS, load_config
from plait_engine.scheduler.nodes.task import RECORD_AFTER
from plait_engine.store import ApplyResult, WriteBatch
from plait_engine.store.sqlite import SqliteStore
from plaitidl.core.v1 import execution_pb2

from tests.support.engines import start, with_engine
from tests.workflows import scale

EP = execution_pb2


def test_the_embedded_default_runs_a_spec_over_10000_nodes(tmp_path: Path) -> None:
    n = 10_001
    result = _embedded.run(scale.fan_out, _embedded.inputs_to_literals(scale.fan_out, {"n": n}),
                           tmp_path)  # fmt: skip
    assert result.phase == "SUCCEEDED", result.error
    assert _serialize.outputs_to_python(scale.fan_out, result.outputs) == list(range(1, n + 1))
    assert result.counts["total"] == n + 1


def test_a_server_keeps_a_protective_default_and_plait_run_the_embedded_one() -> None:
    assert load_config(env={}).max_nodes == 10_000
    assert load_config(env={}, defaults=EMBEDDED_DEFAULTS).max_nodes == 1_000_000
    # The environment and flags still win over the embedded default.
    env = {"PLAIT_MAX_NODES": "50"}
    assert load_config(env=env, defaults=EMBEDDED_DEFAULTS).max_nodes == 50
    assert _embedded.embedded_config(Path("/tmp/x")).max_nodes == 1_000_000


def test_the_result_of_a_run_is_never_repr_ed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Python 3.11's asyncio runner repr()s the finished main task, result included, when it
    # restores the SIGINT handler: with a million outputs that took seconds.
    def refuse(self: object) -> str:
        raise AssertionError("the run's result was repr()ed")

    monkeypatch.setattr(_embedded.RunResult, "__repr__", refuse)
    result = _embedded.run(scale.chain, _embedded.inputs_to_literals(scale.chain, {"n": 3}),
                           tmp_path)  # fmt: skip
    assert result.phase == "SUCCEEDED"


def test_a_pass_stores_its_events_in_one_row(tmp_path: Path) -> None:
    import sqlite3

    n = 500
    result = _embedded.run(scale.fan_out, _embedded.inputs_to_literals(scale.fan_out, {"n": n}),
                           tmp_path)  # fmt: skip
    assert result.phase == "SUCCEEDED"
    db = sqlite3.connect(tmp_path / "plait.db")
    try:
        rows = db.execute("SELECT count(*) FROM events").fetchone()[0]
        (last_seq,) = db.execute("SELECT last_seq FROM executions").fetchone()
    finally:
        db.close()
    # Every node has at least its RUNNING and SUCCEEDED events, in a few rows.
    assert last_seq >= 2 * n
    assert rows * 10 < last_seq


class _CountingStore(SqliteStore):
    """The SQLite store, counting the node rows each commit inserts and updates."""

    inserted: list[str]
    updated: list[str]

    async def apply(self, batch: WriteBatch, now: float) -> ApplyResult:
        for w in batch.executions.values():
            self.inserted += [n.node_id for n in w.nodes]
            self.updated += [u.node_id for u in w.node_updates]
        return await super().apply(batch, now)


def test_an_in_process_task_node_is_written_once(tmp_path: Path) -> None:
    store = _CountingStore(tmp_path / "data" / "plait.db")
    store.inserted, store.updated = [], []
    n = 200

    async def body(engine: Engine) -> None:
        rec = await start(engine, scale.fan_out, n=n)
        final = await engine.executions.wait(rec, timeout=60)
        assert final.phase == EP.EXECUTION_PHASE_SUCCEEDED
        records = await engine.store.node_records(rec.eid)
        tasks = [r for r in records if r.task_key.split("/")[2].endswith(".inc")]
        assert len(tasks) == n and all(r.phase == EP.NODE_PHASE_SUCCEEDED for r in tasks)
        assert all(r.inputs and r.outputs and r.attempt == 1 for r in tasks)

    async def main() -> None:
        engine = build_engine(
            _embedded.embedded_config(tmp_path / "data"), store=store,
            task_runner=_runtime.execute, runner_checks_outputs=True,
        )  # fmt: skip
        await engine.start()
        try:
            await body(engine)
        finally:
            await engine.stop()

    asyncio.run(main())
    task_rows = [p for p in store.inserted if p.startswith("n0/")]
    assert len(task_rows) == n == len(set(task_rows))  # each inserted once, in its final state
    assert not [p for p in store.updated if p.startswith("n0/")]  # and never updated


def test_a_long_in_process_task_is_listed_while_it_runs(tmp_path: Path) -> None:
    async def body(engine: Engine) -> None:
        rec = await start(engine, scale.napping, seconds=RECORD_AFTER + 2.0)
        seen = None
        for _ in range(100):
            await asyncio.sleep(0.05)
            seen = await engine.store.get_node(rec.eid, "n0")
            if seen is not None:
                break
        assert seen is not None and seen.phase == EP.NODE_PHASE_RUNNING and seen.attempt == 1
        final = await engine.executions.wait(rec, timeout=30)
        assert final.phase == EP.EXECUTION_PHASE_SUCCEEDED
        done = await engine.store.get_node(rec.eid, "n0")
        assert done is not None and done.phase == EP.NODE_PHASE_SUCCEEDED

    with_engine(tmp_path, body)
