"""plait's peers (Prefect 3, Ray, DBOS Transact) on the same workloads, side by side.

Each peer runs in a virtualenv of its own (they pin dependencies that clash with plait's and
with each other's), made on demand under a cache folder (``.bench-peers/<peer>/``) by pip from
PyPI at the pinned version below. A runner module (``benchmarks/_peers/<peer>_run.py``) runs
one workload in a fresh process of that venv's Python; `_tree` measures the process and every
process it starts; `_run` verifies the result. Nothing here imports plait: the runners import
this package from the peers' venvs.
"""

from __future__ import annotations

from dataclasses import dataclass

ONE_TASK = "one-task"
"""The start-up workload: a one-task run in a fresh process (imports and engine start-up
included), plait's ``plait run benchmarks/hello.py hello --who x``."""
ONE_TASK_RESULT = "hello x"


@dataclass(frozen=True)
class Peer:
    """One peer: how it is installed, which runner runs it, what it runs."""

    name: str
    requirement: str
    """The pinned pip requirement its venv is made with."""
    runner: str
    """The module run by the venv's Python: ``python -m <runner> WORKLOAD``."""
    kinds: frozenset[str]
    """Workload kinds it runs (``fanout``, ``chain``, ``mergesort``, `ONE_TASK`)."""
    config: str
    """How it is run (for the table's notes)."""
    durable: bool = True
    warm_up: bool = False
    """Whether it makes a database schema on first use: an untimed run first makes it, and
    every run starts from a copy (see `_state`)."""
    not_written: str = ""
    """Why the other kinds are n/a for it (shown in the table's notes)."""


PEERS: dict[str, Peer] = {
    p.name: p
    for p in (
        Peer(
            "prefect",
            "prefect==3.9.1",
            "benchmarks._peers.prefect_run",
            frozenset({"fanout", "chain", "mergesort", ONE_TASK}),
            "its default ephemeral API server (a subprocess, SQLite in the run's PREFECT_HOME; "
            "180 s to start), the default ThreadPoolTaskRunner, logging at WARNING; fan-out: "
            "`inc.map(range(n))` in a flow; chain: task calls in a flow; merge sort: the seed's, "
            "a flow calling itself as two subflows (one after the other, as subflow calls run)",
            warm_up=True,
        ),
        Peer(
            "ray",
            "ray==2.60.0",
            "benchmarks._peers.ray_run",
            frozenset({"fanout", "chain", ONE_TASK}),
            "a local cluster started by `ray.init(num_cpus=2, include_dashboard=False)`; "
            "fan-out: `ray.get([inc.remote(i) ...])`; chain: ObjectRefs passed along; not "
            "durable",
            durable=False,
            not_written="merge sort: the seed's recursion as nested tasks blocks a worker "
            "process per waiting level (Ray starts a process for each: about a thousand here; "
            "its docs advise against such fine-grained nesting)",
        ),
        Peer(
            "dbos",
            "dbos==3.4.0",
            "benchmarks._peers.dbos_run",
            frozenset({"fanout", "chain", "mergesort", ONE_TASK}),
            "DBOS Transact on PostgreSQL (a private server with durable settings, as "
            "embedded-pg's, a fresh database per run; SQLite when PostgreSQL is not "
            "installed); fan-out: a workflow starts N steps in the background "
            "(`DBOS.start_workflow`, each a durable child workflow) and gathers their handles; "
            "chain: N steps in one workflow; merge sort: the seed's, a workflow starting itself "
            "twice as child workflows, its tasks as steps",
            warm_up=True,
        ),
    )
}
ALL_PEERS = tuple(PEERS)


def kind_of(workload: str) -> str:
    """The kind of a workload key (``fanout-1000`` -> ``fanout``; `ONE_TASK` is its own)."""
    return workload if workload == ONE_TASK else workload.partition("-")[0]
