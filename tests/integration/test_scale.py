"""Scale behaviour of the embedded engine: no 10,000-node ceiling, and nothing on the way out
that grows with the outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
from plait import _embedded, _serialize
from plait_engine.config import EMBEDDED_DEFAULTS, load_config

from tests.workflows import scale


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
