"""The peer bench's verifier, its statuses and its side-by-side table (no peer installed)."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from benchmarks.__main__ import peer_plan
from benchmarks._peers import ONE_TASK, PEERS, kind_of
from benchmarks._peers._run import PeerOptions, outcome, run_peers, verify
from benchmarks._peers._table import rows, table


def _tree(result: Any, **over: Any) -> dict[str, Any]:
    child = {"workload": "fanout-5", "wall_s": 2.0, "pre_cpu_s": 0.5, "start_s": 1.0,
             "result": result, "version": "9.9"}  # fmt: skip
    tree = {"returncode": 0, "timed_out": False, "process_s": 3.0, "tree_cpu_s": 4.0,
            "peak_pss_bytes": 10 * 1024 * 1024, "child": child, "stderr_tail": []}  # fmt: skip
    return {**tree, **over}


def test_verify_catches_a_wrong_fan_out_chain_and_one_task() -> None:
    assert verify("fanout-5", [1, 2, 3, 4, 5])
    assert not verify("fanout-5", [1, 2, 3, 4, 6])  # the sum is off by one
    assert not verify("fanout-5", [1, 2, 3, 4])  # a task missing
    assert not verify("fanout-5", [2, 1, 3, 4, 5])  # not in the order of the inputs
    assert not verify("fanout-5", None)
    assert verify("chain-200", 200)
    assert not verify("chain-200", 199)
    assert verify(ONE_TASK, "hello x")
    assert not verify(ONE_TASK, "hello y")


def test_outcome_reports_wrong_result_timeout_and_a_crash() -> None:
    ok = outcome("fanout-5", _tree([1, 2, 3, 4, 5]), 300)
    assert ok["ok"] and ok["status"] == "ok" and ok["wall_s"] == 2.0
    wrong = outcome("fanout-5", _tree([1, 2, 3, 4, 5, 6]), 300)
    assert not wrong["ok"] and wrong["status"] == "wrong result"
    slow = outcome("fanout-5", _tree(None, timed_out=True, child=None), 300)
    assert not slow["ok"] and slow["status"] == "> 300 s (timeout)"
    tail = ["Traceback", "ImportError: no ray"]
    crash = outcome("fanout-5", _tree(None, returncode=1, child=None, stderr_tail=tail), 300)
    assert not crash["ok"] and crash["status"].startswith("error (exit 1)")
    assert "ImportError: no ray" in crash["status"]


def test_table_puts_peers_beside_plait_with_ratios() -> None:
    results = [
        {"mode": "embedded", "workload": "fanout-1000", "ok": True, "status": "ok",
         "wall_s": 0.5, "cpu_s": 0.25, "peak_rss_bytes": 40 * 1024 * 1024},
        {"mode": "startup", "workload": "startup", "ok": True, "run_one_task_s": 0.4,
         "run_one_task_cpu_s": 0.3},
    ]  # fmt: skip
    peers = [
        {"mode": "ray", "engine": "ray 2.60.0", "workload": "fanout-1000", "ok": True,
         "status": "ok", "wall_s": 5.0, "cpu_s": 1.0, "requirement": "ray==2.60.0"},
        {"mode": "prefect", "engine": "prefect", "workload": "fanout-1000", "ok": False,
         "status": "not installed: pip install prefect==0: no matching distribution",
         "requirement": "prefect==0"},
        {"mode": "ray", "engine": "ray 2.60.0", "workload": ONE_TASK, "ok": True,
         "status": "ok", "wall_s": 4.0, "cpu_s": 3.0, "requirement": "ray==2.60.0"},
        {"mode": "ray", "engine": "ray 2.60.0", "workload": "mergesort-5000", "ok": False,
         "status": "n/a", "requirement": "ray==2.60.0"},
    ]  # fmt: skip
    got = rows(results, peers)
    by = {(r[0], r[1]): r for r in got}
    assert by[("fanout-1000", "plait embedded")][6:8] == ("1.0", "1.0")
    assert by[("fanout-1000", "ray 2.60.0")][6:8] == ("10.0", "4.0")
    assert by[("fanout-1000", "prefect")][6] == "-"
    assert by[("fanout-1000", "prefect")][-1].startswith("not installed: ")
    assert by[(ONE_TASK, "ray 2.60.0")][6:8] == ("10.0", "10.0")
    assert by[("mergesort-5000", "ray 2.60.0")][-1] == "n/a"
    text = table(results, peers)
    assert text.splitlines()[0].startswith("| workload")
    assert len(text.splitlines()) == 2 + len(got)


def test_every_peer_is_pinned_and_names_its_runner() -> None:
    for peer in PEERS.values():
        assert "==" in peer.requirement
        assert peer.runner.startswith("benchmarks._peers.")
    assert kind_of("fanout-10000") == "fanout"
    assert kind_of(ONE_TASK) == ONE_TASK


def _args(**over: Any) -> argparse.Namespace:
    base = {"no_peers": False, "peers": "prefect,ray,dbos", "peer_workloads": None,
            "workloads": None, "million": False, "quick": False, "no_startup": False}  # fmt: skip
    return argparse.Namespace(**{**base, **over})


def test_peer_plan_defaults_stay_small_and_follow_the_options() -> None:
    names, wls = peer_plan(_args())
    assert names == ["prefect", "ray", "dbos"]
    assert wls == ["fanout-1000", "fanout-10000", "chain-200", ONE_TASK]
    assert peer_plan(_args(quick=True)) == (["prefect", "ray", "dbos"], ["fanout-1000"])
    assert peer_plan(_args(no_peers=True)) == ([], [])
    assert peer_plan(_args(million=True)) == ([], [])
    assert peer_plan(_args(workloads="fanout-20", no_startup=True, peers="ray")) == (
        ["ray"],
        ["fanout-20"],
    )
    assert peer_plan(_args(peer_workloads="mergesort-1000", workloads="fanout-20"))[1] == [
        "mergesort-1000",
        ONE_TASK,
    ]
    with pytest.raises(SystemExit, match="unknown peer 'airflow'"):
        peer_plan(_args(peers="ray,airflow"))


def test_a_given_python_that_is_not_there_means_not_installed() -> None:
    opts = PeerOptions(pythons={"ray": "/nonexistent/bin/python"}, log=lambda _: None)
    got = run_peers(["ray"], ["fanout-10", ONE_TASK], opts)
    assert [r["status"] for r in got] == [
        "not installed: /nonexistent/bin/python: no such Python"
    ] * 2
