"""Several `plait serve` replicas on one store (a SQLite file on one host, and PostgreSQL):
workers connected to one replica run the executions another owns, a replica that dies has its
executions adopted, a replica frozen past its lease cannot write when it wakes, and a mix of
executions survives replicas being SIGKILLed and restarted."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from plait import Client, RemoteExecution
from plaitidl.core.v1.execution_pb2 import (
    EXECUTION_PHASE_RUNNING,
    EXECUTION_PHASE_SUCCEEDED,
    NODE_PHASE_SUCCEEDED,
)

from tests.support.servers import ROOT, EngineProcess, _spawn, start_worker
from tests.workflows import behaviours as b
from tests.workflows import slow_fan_out

_load = __import__("plait._loader", fromlist=["load_path"]).load_path
merge_sort = _load(str(ROOT / "examples" / "merge_sort.py"))
generate_others = _load(str(ROOT / "examples" / "generate_others.py"))
WORKFLOWS = (
    "examples/merge_sort.py",
    "examples/generate_others.py",
    "tests/workflows/behaviours.py",
    "tests/workflows/slow_fan_out.py",
)
LEASE = 3.0  # short leases: a frozen replica loses its executions within the test


class Cluster:
    """Replicas on one store, and workers; everything stopped at the end."""

    def __init__(self, tmp_path: Path, store: list[str]) -> None:
        self.tmp = tmp_path
        self.data = tmp_path / "shared"  # one blob folder for all (a shared mount in production)
        self.args = ("--cluster", "true", "--execution-lease", str(LEASE), *store)
        self.replicas: list[EngineProcess] = []
        self.workers: list[subprocess.Popen[bytes]] = []
        markers = tmp_path / "markers"
        markers.mkdir(exist_ok=True)
        self._old_markers = os.environ.get("PLAIT_TEST_MARKERS")
        os.environ["PLAIT_TEST_MARKERS"] = str(markers)  # the workers' slow tasks mark runs

    def replica(self) -> EngineProcess:
        n = len(self.replicas)
        r = _spawn(self.data, "127.0.0.1:0", self.args, self.tmp / f"replica{n}.log")
        self.replicas.append(r)
        return r

    def worker(self, replica: EngineProcess | str) -> None:
        """A worker connected to `replica` (or to a gRPC target such as ``ipv4:A,B``)."""
        n = len(self.workers)
        log = self.tmp / f"worker{n}.log"
        target = replica if isinstance(replica, str) else replica.address
        self.workers.append(start_worker(target, *WORKFLOWS, log=log))

    def close(self) -> None:
        for w in self.workers:
            w.kill()
            w.wait(10)
        for r in self.replicas:
            if r.proc.poll() is None:
                os.kill(r.proc.pid, signal.SIGCONT)
            r.kill()
        if self._old_markers is None:
            os.environ.pop("PLAIT_TEST_MARKERS", None)
        else:
            os.environ["PLAIT_TEST_MARKERS"] = self._old_markers


@pytest.fixture(params=["sqlite", "postgres"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    store: list[str] = []
    if request.param == "postgres":
        store = ["--store", request.getfixturevalue("postgres_url")]
    c = Cluster(tmp_path, store)
    try:
        yield c
    finally:
        c.close()


def test_a_worker_on_one_replica_runs_what_another_owns(cluster: Cluster) -> None:
    a, b_ = cluster.replica(), cluster.replica()
    cluster.worker(b_)
    with Client(a.address) as client:
        numbers = [5, 3, 9, 1, 7, 2, 8]
        sort = client.execute(merge_sort.merge_sort, {"numbers": numbers, "numbers_count": 7})
        fan = client.execute(generate_others.fan_out, {"tasks_count": 30})
        assert client.wait(sort, timeout=60) == sorted(numbers)
        assert client.wait(fan, timeout=60) == [i * i for i in range(30)]
    with Client(b_.address) as client:  # watching works from any replica
        assert client.outputs(fan.name) == [i * i for i in range(30)]


def test_a_killed_replica_s_executions_are_adopted(cluster: Cluster) -> None:
    a, b_ = cluster.replica(), cluster.replica()
    cluster.worker(b_)
    with Client(a.address) as client:
        run = client.execute(slow_fan_out.slow_wf, {"n": 40})
    started = time.monotonic()
    a.kill()
    with Client(b_.address) as client:
        assert client.wait(run.name, timeout=90) == [2 * i for i in range(40)]
    print(f"adopted and finished {time.monotonic() - started:.1f} s after the owner's SIGKILL")


def test_callers_given_every_replica_ride_through_the_death_of_theirs(cluster: Cluster) -> None:
    a, b_ = cluster.replica(), cluster.replica()
    target = f"ipv4:{a.address},{b_.address}"  # gRPC connects to the first that answers: a
    cluster.worker(target)
    with Client(target) as client:
        run = client.execute(slow_fan_out.slow_wf, {"n": 40})
        os.kill(a.proc.pid, signal.SIGSTOP)  # a call sent now hangs on a...
        got: list[object] = []
        caller = threading.Thread(target=lambda: got.append(_try(client.get, run.name)))
        caller.start()
        time.sleep(1.0)
        a.kill()  # ...until a dies under it: the call is tried again on b
        caller.join(30)
        assert len(got) == 1 and not isinstance(got[0], Exception), got
        assert client.wait(run.name, timeout=90) == [2 * i for i in range(40)]


def _freeze_until_adopted(a: EngineProcess, b: EngineProcess) -> None:
    """SIGSTOP `a` (partitioned: alive, silent) until `b` adopted its execution.

    A replica frozen inside a database transaction still holds its locks (SQLite's write lock,
    a PostgreSQL row lock), and then nobody can take over until it wakes: such a freeze is
    thawed and tried again at another moment.
    """
    for _ in range(6):
        os.kill(a.proc.pid, signal.SIGSTOP)
        deadline = time.monotonic() + LEASE + 7.0
        while time.monotonic() < deadline:
            if "adopted execution" in Path(b.log).read_text():
                return
            time.sleep(0.1)
        os.kill(a.proc.pid, signal.SIGCONT)
        time.sleep(0.3)
    raise AssertionError(f"{b.log} never adopted the frozen replica's execution")


def _try(call: Any, *args: Any) -> object:
    try:
        return call(*args)
    except Exception as exc:  # the test reports it
        return exc


def test_a_frozen_replica_cannot_write_when_it_wakes(cluster: Cluster) -> None:
    a, b_ = cluster.replica(), cluster.replica()
    cluster.worker(b_)
    with Client(a.address) as client:
        run = client.execute(slow_fan_out.slow_wf, {"n": 60})
    time.sleep(0.5)
    try:
        _freeze_until_adopted(a, b_)
        with Client(b_.address) as client:
            state = client.get(run.name)
            assert state.phase in (2, 3)  # RUNNING or SUCCEEDED under b
    finally:
        os.kill(a.proc.pid, signal.SIGCONT)
    with Client(b_.address) as client:
        assert client.wait(run.name, timeout=90) == [2 * i for i in range(60)]
    time.sleep(LEASE)
    log = Path(a.log).read_text()
    # a woke up, tried to write, and was refused: it stopped driving the execution.
    assert "stopped driving execution" in log, log[-3000:]
    with Client(b_.address) as client:  # events stayed consecutive: no stale write landed
        seqs = [e.sequence for batch in client.watch(run.name) for e in batch.events]
        assert seqs == list(range(1, len(seqs) + 1))


def _mix(rng: random.Random) -> list[tuple[Any, dict[str, Any], Any]]:
    out: list[tuple[Any, dict[str, Any], Any]] = []
    for i in range(13):
        numbers = [rng.randint(-99, 99) for _ in range(rng.randint(2, 30))]
        out.append(
            (merge_sort.merge_sort, {"numbers": numbers, "numbers_count": len(numbers)},
             sorted(numbers))
        )  # fmt: skip
        k = rng.randint(1, 40)
        out.append((generate_others.fan_out, {"tasks_count": k}, [j * j for j in range(k)]))
        x = rng.randint(-20, 20)
        out.append((b.branch_wf, {"x": x}, x * x if x > 0 else -x))
        out.append((b.cached_wf, {"x": i % 3}, (i % 3) * 10))
    return out


def _assert_nothing_ran_after_success(client: Client, run: RemoteExecution) -> None:
    """The event log: gapless, one terminal transition, and no node moves after it succeeded
    (a replica that adopts an execution resumes it; it never runs a finished node again)."""
    succeeded: set[str] = set()
    terminal = 0
    last = 0
    for batch in client.watch(run):
        for ev in batch.events:
            assert ev.sequence == last + 1, (run.name, last, ev.sequence)
            last = ev.sequence
            if ev.HasField("execution"):
                terminal += ev.execution.phase == EXECUTION_PHASE_SUCCEEDED
                continue
            node = ev.node.node_id
            assert node not in succeeded, f"{run.name}: node {node} moved after it succeeded"
            if ev.node.phase == NODE_PHASE_SUCCEEDED:
                succeeded.add(node)
    assert terminal == 1, (run.name, terminal)


def test_many_executions_survive_replicas_killed_and_restarted(cluster: Cluster) -> None:
    replicas = [cluster.replica() for _ in range(3)]
    cluster.worker(replicas[1])
    cluster.worker(replicas[2])
    rng = random.Random(1130)
    mix = _mix(rng)
    started: list[tuple[RemoteExecution, Any]] = []
    kills = 0
    for i, (entity, inputs, want) in enumerate(mix):
        target = replicas[i % 3]
        for _ in range(40):
            try:
                with Client(target.address, timeout=20) as client:
                    started.append((client.execute(entity, inputs, request_id=f"r{i}"), want))
                break
            except Exception:
                target = replicas[(i + 1) % 3]
                time.sleep(0.25)
        if i % 13 == 12:
            victim = replicas[rng.randrange(3)]
            victim.kill()
            kills += 1
            time.sleep(rng.uniform(0.1, 0.8))
            victim.restart()
    survivor = replicas[0]
    with Client(survivor.address, timeout=30) as client:
        for run, want in started:
            assert client.wait(run.name, timeout=180) == want, run.name
            _assert_nothing_ran_after_success(client, run)
        listed = client.list_executions(limit=10_000)
    names = [e.id.name for e in listed]
    assert len(names) == len(set(names)) == len(mix) >= 50
    assert kills >= 3
    print(f"replicas: {len(mix)} executions, {kills} replica SIGKILLs; lost 0, stuck 0, wrong 0")


VERSIONED = """
import plait


@plait.task(name="upgrade.answer")
def answer() -> int:
    return {n}


@plait.workflow
def wf() -> int:
    return answer()
"""


def test_work_no_worker_of_a_replica_serves_goes_to_one_that_does(cluster: Cluster) -> None:
    # A rolling upgrade of workers: the replica that takes an attempt from the shared queue
    # first may have only workers of the old code. It must give it back, not hold it forever.
    paths = []
    for n in (1, 2):
        folder = cluster.tmp / f"v{n}"
        folder.mkdir()
        (folder / "upgrade_flow.py").write_text(VERSIONED.format(n=n))
        paths.append(str(folder / "upgrade_flow.py"))
    new = _load(paths[1])
    a, b_ = cluster.replica(), cluster.replica()
    old_worker = start_worker(a.address, paths[0], log=cluster.tmp / "old-worker.log")
    cluster.workers.append(old_worker)
    with Client(a.address) as client:
        run = client.execute(new.wf, {})
        time.sleep(1.5)  # the old worker's replica has taken the attempt (and given it back)
        assert client.get(run).phase == EXECUTION_PHASE_RUNNING
        cluster.workers.append(start_worker(b_.address, paths[1], log=cluster.tmp / "new.log"))
        assert client.wait(run, timeout=60) == 2


def test_a_schedule_ticks_once_per_tick_across_replicas(cluster: Cluster) -> None:
    from datetime import datetime

    from tests.workflows import scheduled

    a, b_ = cluster.replica(), cluster.replica()
    with Client(a.address) as client:
        client.register(scheduled.every_second)

    def ticked() -> list[str]:
        with Client(b_.address) as client:
            runs = client.list_executions(limit=1000)
        label = "scheduled.every_second"
        return sorted(e.id.name for e in runs if e.labels.get("plait.schedule") == label)

    time.sleep(3.0)
    a.kill()  # the replica that may be starting ticks dies; the other goes on alone
    before = len(ticked())
    deadline = time.monotonic() + 45  # it takes the duty over once a's hold lapsed
    while len(names := ticked()) < before + 5:
        assert time.monotonic() < deadline, f"no replica took the schedule over: {names}"
        time.sleep(0.5)
    assert len(names) >= 4 and len(names) == len(set(names))
    stamps = sorted(datetime.strptime(n[-15:], "%Y%m%dt%H%M%S") for n in names)
    gaps = {(y - x).total_seconds() for x, y in itertools.pairwise(stamps)}
    assert gaps == {1.0}, (gaps, names)  # every tick once: none doubled, none missed
